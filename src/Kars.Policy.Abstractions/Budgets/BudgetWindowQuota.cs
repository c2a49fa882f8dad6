using NodaTime;

namespace Kars.Policy.Budgets;

/// <summary>
/// One limited window of a <see cref="BudgetDecision"/>: what an HTTP response reports for it (the limit, what is
/// left and when the window resets). Read it with <see cref="BudgetDecision.TryGetWindow"/>.
/// </summary>
/// <remarks>
/// Maps onto the IETF <c>RateLimit-Policy</c> / <c>RateLimit</c> fields (<c>q</c> = <see cref="Limit"/>,
/// <c>w</c> = the length of <see cref="Period"/>, <c>r</c> = <see cref="Remaining"/>, <c>t</c> =
/// <see cref="ResetAfter"/> in whole seconds, rounded up) and onto <c>x-ratelimit-limit-tokens</c>,
/// <c>x-ratelimit-remaining-tokens</c> and <c>x-ratelimit-reset-tokens</c>.
/// </remarks>
public readonly struct BudgetWindowQuota
{
    internal BudgetWindowQuota(BudgetWindow window, long limit, long remaining, Interval period, Instant at)
    {
        Window = window;
        Limit = limit;
        Remaining = remaining;
        Period = period;
        ResetAfter = period.End > at ? (period.End - at).ToTimeSpan() : TimeSpan.Zero;
    }

    /// <summary>Gets the window.</summary>
    public BudgetWindow Window { get; }

    /// <summary>Gets the limit that binds in this window: of the key and its parent, the limit of the level with the
    /// least room (the smaller limit on a tie).</summary>
    public long Limit { get; }

    /// <summary>Gets the tokens left in this window after the decision: the smallest <c>limit − used − held</c> over
    /// the key and its parent, never negative, at most <see cref="Limit"/>.</summary>
    public long Remaining { get; }

    /// <summary>Gets the current period of the window (UTC, half-open); its end is the reset instant.</summary>
    public Interval Period { get; }

    /// <summary>Gets the instant the window's counters reset (the exclusive end of <see cref="Period"/>).</summary>
    public Instant ResetsAt => Period.End;

    /// <summary>Gets the time from the decision's instant (<see cref="BudgetDecision.At"/>) to <see cref="ResetsAt"/>;
    /// exact, never negative.</summary>
    public TimeSpan ResetAfter { get; }

    /// <inheritdoc/>
    public override string ToString() => $"{Window} limit={Limit} remaining={Remaining} resetsAt={ResetsAt}";
}
