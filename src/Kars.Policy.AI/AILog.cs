using Microsoft.Extensions.Logging;

namespace Kars.Policy.AI;

/// <summary>Log messages of the Microsoft.Extensions.AI integration. Event ids 5400–5499 are reserved for it and never
/// reused. Messages never carry a budget key, prompt, response, model output or host name.</summary>
internal static partial class AILog
{
    [LoggerMessage(5400, LogLevel.Information, "Chat call refused by the token budget: {Reason} ({Tokens} tokens asked)", EventName = "ChatBudgetRejected")]
    public static partial void Rejected(ILogger logger, Kars.Policy.Budgets.BudgetReason reason, long tokens);

    [LoggerMessage(5401, LogLevel.Warning, "Chat call ended without usage evidence ({Outcome}); charged the whole hold of {Tokens} tokens", EventName = "ChatBudgetChargedHold")]
    public static partial void ChargedHold(ILogger logger, string outcome, long tokens);

    [LoggerMessage(5403, LogLevel.Warning, "Chat stream ended early after the provider reported {Tokens} tokens, above the hold of {Held}; charged the reported usage", EventName = "ChatBudgetChargedObserved")]
    public static partial void ChargedObserved(ILogger logger, long tokens, long held);

    [LoggerMessage(5402, LogLevel.Warning, "Settling a chat call's budget failed ({Error}); the store charges the whole hold when the lease expires", EventName = "ChatBudgetSettleFailed")]
    public static partial void SettleFailed(ILogger logger, string error);
}
