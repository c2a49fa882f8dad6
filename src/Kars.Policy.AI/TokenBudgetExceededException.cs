using System.Globalization;
using Kars.Policy.Budgets;

namespace Kars.Policy.AI;

/// <summary>
/// Thrown by <see cref="TokenBudgetChatClient"/> when the budget rejects a call: the inner client was not called and
/// no counter changed.
/// </summary>
public sealed class TokenBudgetExceededException : KarsPolicyException
{
    /// <summary>Initializes an exception for a rejection.</summary>
    /// <param name="decision">The rejection.</param>
    /// <exception cref="ArgumentException"><paramref name="decision"/> admitted the call.</exception>
    public TokenBudgetExceededException(BudgetDecision decision)
        : base(Describe(decision))
    {
        Decision = decision;
    }

    /// <summary>Gets the decision: the reason, the tokens asked for, and per limited window the limit, remaining
    /// tokens and reset.</summary>
    public BudgetDecision Decision { get; }

    /// <summary>Gets why the call was rejected: <see cref="BudgetReason.BudgetExceeded"/> or
    /// <see cref="BudgetReason.PerRequestTokensExceeded"/>.</summary>
    public BudgetReason Reason => Decision.Reason;

    /// <summary>Gets how long to wait before the call can fit, or <see langword="null"/> when waiting cannot help (the
    /// call is above the per-request cap or above a whole window limit).</summary>
    public TimeSpan? RetryAfter => Decision.RetryAfter;

    private static string Describe(BudgetDecision decision)
    {
        if (decision.IsAdmitted)
        {
            throw new ArgumentException("The decision admitted the call; only a rejection is an exception.", nameof(decision));
        }

        string reason = decision.Reason == BudgetReason.PerRequestTokensExceeded
            ? "the reservation is above the per-request cap"
            : "the token budget is exhausted";
        string retry = decision.RetryAfter is { } after
            ? string.Create(CultureInfo.InvariantCulture, $"; retry after {(long)Math.Ceiling(after.TotalSeconds)} s")
            : "; not retryable";
        return string.Create(CultureInfo.InvariantCulture, $"The chat call was refused: {reason} ({decision.Tokens} tokens asked){retry}.");
    }
}
