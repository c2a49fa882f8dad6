namespace Kars.Policy.Budgets;

/// <summary>A UTC calendar period over which tokens are counted. Every window is half-open, <c>[start, end)</c>.</summary>
public enum BudgetWindow
{
    /// <summary>A UTC clock hour, <c>hh:00:00</c> to the next hour.</summary>
    Hour = 0,

    /// <summary>A UTC calendar day, 00:00 to the next 00:00.</summary>
    Day = 1,

    /// <summary>An ISO-8601 week: Monday 00:00 UTC to the next Monday 00:00 UTC.</summary>
    Week = 2,

    /// <summary>A UTC calendar month: the 1st 00:00 to the 1st of the next month.</summary>
    Month = 3,

    /// <summary>A UTC calendar year: 1 January 00:00 to the next 1 January.</summary>
    Year = 4,
}

/// <summary>What a budget does when a request does not fit.</summary>
public enum BudgetMode
{
    /// <summary>Reject requests that do not fit (the default, fail-closed value).</summary>
    Enforce = 0,

    /// <summary>Admit and count every request, and report the ones that would have been rejected.</summary>
    Observe = 1,
}

/// <summary>Why a budget decision came out the way it did. The default value is a rejection.</summary>
public enum BudgetReason
{
    /// <summary>Rejected: at least one limited window, at the key or its parent, has no room. Retryable after <see cref="BudgetDecision.RetryAfter"/>.</summary>
    BudgetExceeded = 0,

    /// <summary>Admitted: the request fits every limited window at every level.</summary>
    Admitted = 1,

    /// <summary>Admitted in <see cref="BudgetMode.Observe"/> mode although it would have been rejected.</summary>
    Observed = 2,

    /// <summary>Rejected: the request alone is above the per-request cap. Not retryable.</summary>
    PerRequestTokensExceeded = 3,
}

/// <summary>The outcome of settling or abandoning a lease.</summary>
public enum BudgetSettlementStatus
{
    /// <summary>No lease with that id is known (never issued, or forgotten after compaction).</summary>
    UnknownLease = 0,

    /// <summary>This call settled the lease.</summary>
    Settled = 1,

    /// <summary>The lease was already settled or abandoned; nothing changed (settlement is idempotent per lease).</summary>
    AlreadySettled = 2,

    /// <summary>The lease had expired and was charged its full hold; nothing changed.</summary>
    Expired = 3,
}
