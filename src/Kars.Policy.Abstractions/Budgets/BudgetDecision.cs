namespace Kars.Policy.Budgets;

/// <summary>
/// The result of a reservation: admitted with a lease, or rejected with a reason and a retry delay.
/// The default value is a rejection (fail closed). Producing one allocates nothing.
/// </summary>
public readonly struct BudgetDecision
{
    /// <summary>Initializes a decision. Stores and meters create decisions; hosts only read them.</summary>
    /// <param name="reason">Why.</param>
    /// <param name="tokens">The tokens requested.</param>
    /// <param name="lease">The lease when admitted; the default lease when rejected.</param>
    /// <param name="retryAfter">For <see cref="BudgetReason.BudgetExceeded"/>: whole seconds, at least 1, until every blocking window rolls over.</param>
    /// <param name="remaining">For every window limited at the key or its parent: the smallest <c>limit − used − held</c> over the levels, after this decision, never negative.</param>
    public BudgetDecision(BudgetReason reason, long tokens, BudgetLease lease, TimeSpan? retryAfter, BudgetWindowValues remaining)
    {
        Reason = reason;
        Tokens = tokens;
        Lease = lease;
        RetryAfter = retryAfter;
        Remaining = remaining;
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

    /// <summary>Gets the delay until a retry can fit, for a budget rejection; <see langword="null"/> when admitted or not retryable.</summary>
    public TimeSpan? RetryAfter { get; }

    /// <summary>Gets the remaining tokens of every limited window of the key (its own and its parent's limits), never negative.</summary>
    public BudgetWindowValues Remaining { get; }

    /// <inheritdoc/>
    public override string ToString() => $"{Reason} tokens={Tokens} lease={Lease.Id} retryAfter={RetryAfter?.TotalSeconds} remaining={Remaining}";
}
