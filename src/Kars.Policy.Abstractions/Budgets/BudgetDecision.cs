using System.Globalization;
using NodaTime;

namespace Kars.Policy.Budgets;

/// <summary>
/// The result of a reservation: admitted with a lease, or rejected with a reason and a retry delay; and, for every
/// window limited at the key or its parent, what an HTTP response needs (limit, remaining, reset instant), without
/// another store call. The default value is a rejection (fail closed). Producing one allocates nothing.
/// </summary>
/// <remarks>
/// <para>For headers: <see cref="TryGetWindow"/> for each window (IETF <c>RateLimit-Policy</c>/<c>RateLimit</c>,
/// one item per window), or <see cref="TryGetTightestWindow"/> for single-valued headers
/// (<c>x-ratelimit-limit-tokens</c>, <c>x-ratelimit-remaining-tokens</c>, <c>x-ratelimit-reset-tokens</c>);
/// <see cref="RetryAfter"/> for <c>Retry-After</c>. Reset times are relative to <see cref="At"/>, the instant the
/// store decided at (its own clock, e.g. the Redis server's), not the host's clock.</para>
/// </remarks>
public readonly struct BudgetDecision
{
    private const sbyte NoWindow = -1;
    private readonly sbyte _blocking;

    /// <summary>Initializes a decision. Stores and meters create decisions; hosts read them (tests may build them).</summary>
    /// <param name="reason">Why.</param>
    /// <param name="tokens">The tokens requested.</param>
    /// <param name="lease">The lease when admitted; the default lease when rejected.</param>
    /// <param name="retryAfter">For <see cref="BudgetReason.BudgetExceeded"/>: whole seconds, at least 1, until every blocking window rolls over; <see langword="null"/> when not retryable.</param>
    /// <param name="at">The instant the decision describes (the store's clock or the request's explicit instant).</param>
    /// <param name="limits">For every window limited at the key or its parent: the limit of the level with the least room.</param>
    /// <param name="remaining">For the same windows: the smallest <c>limit − used − held</c> over the levels, after this decision, never negative.</param>
    /// <param name="blockingWindow">The window that blocked the request (or would have, in Observe mode): of the windows without room, the one whose period ends last (the longer on a tie); <see langword="null"/> when none did.</param>
    /// <param name="isUnmetered">Whether the store admitted without counting (a store failing open).</param>
    /// <exception cref="ArgumentException"><paramref name="remaining"/> does not name exactly the windows of <paramref name="limits"/>, or <paramref name="blockingWindow"/> is not one of them.</exception>
    public BudgetDecision(BudgetReason reason, long tokens, BudgetLease lease, TimeSpan? retryAfter, Instant at, BudgetWindowValues limits, BudgetWindowValues remaining, BudgetWindow? blockingWindow = null, bool isUnmetered = false)
    {
        if (limits.Mask != remaining.Mask)
        {
            throw new ArgumentException("The remaining tokens name exactly the limited windows.", nameof(remaining));
        }

        if (blockingWindow is { } blocking && !limits.Contains(blocking))
        {
            throw new ArgumentException("The blocking window is one of the limited windows.", nameof(blockingWindow));
        }

        Reason = reason;
        Tokens = tokens;
        Lease = lease;
        RetryAfter = retryAfter;
        At = at;
        Limits = limits;
        Remaining = remaining;
        _blocking = blockingWindow is { } b ? (sbyte)b : NoWindow;
        IsUnmetered = isUnmetered;
    }

    /// <summary>Gets why.</summary>
    public BudgetReason Reason { get; }

    /// <summary>Gets a value indicating whether the request may proceed (admitted or observed).</summary>
    public bool IsAdmitted => Reason is BudgetReason.Admitted or BudgetReason.Observed;

    /// <summary>Gets a value indicating whether Enforce mode would have rejected the request.</summary>
    public bool WouldReject => Reason is not BudgetReason.Admitted;

    /// <summary>Gets the tokens requested.</summary>
    public long Tokens { get; }

    /// <summary>Gets the lease when admitted (settle or dispose it); the default lease otherwise.</summary>
    public BudgetLease Lease { get; }

    /// <summary>Gets the delay until a retry can fit, for a budget rejection; <see langword="null"/> when admitted or not retryable.
    /// When set, it is the time to the end of <see cref="BlockingWindow"/>'s period, rounded up to whole seconds.</summary>
    public TimeSpan? RetryAfter { get; }

    /// <summary>Gets the instant the decision describes: the store's clock (for Redis, the server's), or the request's explicit instant.</summary>
    public Instant At { get; }

    /// <summary>Gets, for every window limited at the key or its parent, the limit of the level with the least room.</summary>
    public BudgetWindowValues Limits { get; }

    /// <summary>Gets the remaining tokens of every limited window of the key (its own and its parent's limits), never negative.</summary>
    public BudgetWindowValues Remaining { get; }

    /// <summary>Gets the window that blocked the request (or would have, in Observe mode), or <see langword="null"/>.</summary>
    public BudgetWindow? BlockingWindow => _blocking == NoWindow ? null : (BudgetWindow)_blocking;

    /// <summary>Gets a value indicating whether the request was admitted without being counted, because the store
    /// could not be reached and is configured to fail open. <see cref="Remaining"/> then reports the limits.</summary>
    public bool IsUnmetered { get; }

    /// <summary>Gets what an HTTP response reports for one window.</summary>
    /// <param name="window">The window.</param>
    /// <param name="quota">The window's limit, remaining tokens and period, when it is limited.</param>
    /// <returns><see langword="true"/> when the window is limited at the key or its parent.</returns>
    public bool TryGetWindow(BudgetWindow window, out BudgetWindowQuota quota)
    {
        if (!Limits.TryGetValue(window, out long limit))
        {
            quota = default;
            return false;
        }

        Remaining.TryGetValue(window, out long remaining);
        quota = new BudgetWindowQuota(window, limit, remaining, window.PeriodContaining(At), At);
        return true;
    }

    /// <summary>Gets the one window a single-valued header should show: the blocking window when there is one,
    /// else the window with the fewest remaining tokens (on a tie, the one that resets last).</summary>
    /// <param name="quota">The window.</param>
    /// <returns><see langword="false"/> when no window is limited.</returns>
    public bool TryGetTightestWindow(out BudgetWindowQuota quota)
    {
        if (BlockingWindow is { } blocking)
        {
            return TryGetWindow(blocking, out quota);
        }

        quota = default;
        bool found = false;
        for (var w = BudgetWindow.Hour; w <= BudgetWindow.Year; w++)
        {
            if (!Remaining.TryGetValue(w, out long remaining) || (found && remaining > quota.Remaining))
            {
                continue;
            }

            // A week can end after its month: on a tie compare the reset instants, not the window lengths.
            TryGetWindow(w, out BudgetWindowQuota candidate);
            if (!found || remaining < quota.Remaining || candidate.ResetsAt >= quota.ResetsAt)
            {
                quota = candidate;
                found = true;
            }
        }

        return found;
    }

    /// <inheritdoc/>
    public override string ToString()
        => string.Create(CultureInfo.InvariantCulture, $"{Reason} tokens={Tokens} lease={Lease.Id} retryAfter={RetryAfter?.TotalSeconds} remaining={Remaining}{(BlockingWindow is { } b ? " blocking=" + b : "")}{(IsUnmetered ? " unmetered" : "")}");
}
