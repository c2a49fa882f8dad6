using Microsoft.Extensions.Logging;

namespace Kars.Policy.AspNetCore;

/// <summary>Log messages of the token-budget gate. Event ids 5300–5399 are reserved for it and never reused.
/// Messages carry reasons and token counts, never the budget key, a header, the body or a query string.</summary>
internal static partial class TokenBudgetLog
{
    [LoggerMessage(5300, LogLevel.Warning, "Token budget gate refused a request: the key resolver returned no budget key", EventName = "TokenBudgetKeyMissing")]
    public static partial void KeyMissing(ILogger logger);

    [LoggerMessage(5301, LogLevel.Information, "Token budget gate rejected a request for {Tokens} tokens: {Reason}", EventName = "TokenBudgetRejected")]
    public static partial void Rejected(ILogger logger, long tokens, string reason);

    // The store's exception is not attached: a store client's message may name the budget key or the server (see
    // docs/telemetry.md); the store logs its own failure with what is safe to log. Only the type names are given.
    [LoggerMessage(5302, LogLevel.Error, "Token budget store unavailable ({ErrorType}); the request was answered 503", EventName = "TokenBudgetStoreUnavailable")]
    public static partial void StoreUnavailable(ILogger logger, string errorType);

    [LoggerMessage(5303, LogLevel.Debug, "Token budget settled: held {Held} tokens, used {Used}", EventName = "TokenBudgetSettled")]
    public static partial void Settled(ILogger logger, long held, long used);

    [LoggerMessage(5304, LogLevel.Information, "Token budget charged the whole hold of {Held} tokens: {Why}", EventName = "TokenBudgetHoldCharged")]
    public static partial void HoldCharged(ILogger logger, long held, string why);

    [LoggerMessage(5305, LogLevel.Warning, "Token budget could not record a settlement ({ErrorType}); the store charges the whole hold when the lease expires", EventName = "TokenBudgetSettlementFailed")]
    public static partial void SettlementFailed(ILogger logger, string errorType);

    [LoggerMessage(5306, LogLevel.Information, "Token budget gate refused a request body: {Why}", EventName = "TokenBudgetBodyRefused")]
    public static partial void BodyRefused(ILogger logger, string why);

    [LoggerMessage(5307, LogLevel.Information, "Token budget in Observe mode admitted a request for {Tokens} tokens that Enforce mode would reject", EventName = "TokenBudgetObserved")]
    public static partial void Observed(ILogger logger, long tokens);

    [LoggerMessage(5308, LogLevel.Warning, "Token budget gate refused a request: the key resolver returned an invalid budget key", EventName = "TokenBudgetKeyInvalid")]
    public static partial void KeyInvalid(ILogger logger);

    [LoggerMessage(5309, LogLevel.Information, "Token budget charged {Charged} tokens, the usage the upstream reported before the response ended, above the hold of {Held} tokens: {Why}", EventName = "TokenBudgetObservedUsageCharged")]
    public static partial void ObservedCharged(ILogger logger, long charged, long held, string why);

    /// <summary>The exception's type name and its inner exception's, for example
    /// <c>BudgetStoreUnavailableException/RedisConnectionException</c>: never the messages.</summary>
    public static string TypeNames(Exception exception)
        => exception.InnerException is { } inner ? exception.GetType().Name + "/" + inner.GetType().Name : exception.GetType().Name;
}
