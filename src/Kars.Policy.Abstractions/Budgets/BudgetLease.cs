using NodaTime;

namespace Kars.Policy.Budgets;

/// <summary>
/// A hold on tokens, issued by a <see cref="BudgetStore"/> when it admits a request. Settle it with the actual
/// usage; disposing it unsettled charges the full hold. Only stores create leases
/// (<see cref="BudgetStore.CreateLease"/>); a lease names its store, so it cannot be forged for another store.
/// </summary>
/// <remarks>
/// <para>A lease is a small value: copies refer to the same hold, and settlement is idempotent per lease id in the
/// store, so settling or disposing a copy twice changes nothing the second time. A lease not settled before
/// <see cref="ExpiresAt"/> is charged its full hold by the store.</para>
/// <para>Disposing a lease that was already settled or abandoned (through this lease, a copy, or
/// <see cref="BudgetStore.SettleAsync"/>/<see cref="BudgetStore.AbandonAsync"/> with its id) does not call the store:
/// <c>await using</c> plus <see cref="SettleAsync"/> costs one store operation, not two. The store remembers the
/// ids of recently closed leases in a fixed table (4,096 entries); only when thousands of other leases close
/// between a settlement and the dispose can the dispose fall back to one idempotent call that changes nothing.</para>
/// </remarks>
public readonly struct BudgetLease : IAsyncDisposable
{
    internal BudgetLease(BudgetStore store, long id, long tokens, Instant expiresAt)
    {
        Store = store;
        Id = id;
        Tokens = tokens;
        ExpiresAt = expiresAt;
    }

    /// <summary>Gets the issuing store, or <see langword="null"/> for the default (empty) lease.</summary>
    public BudgetStore? Store { get; }

    /// <summary>Gets the store-assigned lease id; 0 for the default (empty) lease.</summary>
    public long Id { get; }

    /// <summary>Gets the tokens held.</summary>
    public long Tokens { get; }

    /// <summary>Gets when the hold is charged in full if not settled.</summary>
    public Instant ExpiresAt { get; }

    /// <summary>Gets a value indicating whether this is a real lease (not the default value).</summary>
    public bool IsValid => Store is not null && Id > 0;

    /// <summary>Replaces the hold with the actual usage, in the windows of admission.</summary>
    /// <param name="actualTokens">The tokens actually used (may exceed the hold: the excess is charged too).</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The settlement.</returns>
    /// <exception cref="InvalidOperationException">This is the default (empty) lease.</exception>
    /// <exception cref="BudgetStoreUnavailableException">The store cannot be reached.</exception>
    public ValueTask<BudgetSettlement> SettleAsync(long actualTokens, CancellationToken cancellationToken = default)
        => RequireStore().SettleAsync(Id, actualTokens, at: null, cancellationToken);

    /// <summary>Gives the lease up with unknown usage: the full hold is charged.</summary>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The settlement.</returns>
    /// <exception cref="InvalidOperationException">This is the default (empty) lease.</exception>
    /// <exception cref="BudgetStoreUnavailableException">The store cannot be reached.</exception>
    public ValueTask<BudgetSettlement> AbandonAsync(CancellationToken cancellationToken = default)
        => RequireStore().AbandonAsync(Id, at: null, cancellationToken);

    /// <summary>Abandons the lease if it is still open (the full hold is charged). Does not call the store when the
    /// lease is the default (empty) lease or was already settled or abandoned.</summary>
    /// <returns>A task that completes when the store has recorded it.</returns>
    public ValueTask DisposeAsync()
    {
        if (!IsValid || Store!.IsKnownClosed(Id))
        {
            return default;
        }

        return AbandonOnDisposeAsync(Store, Id);
    }

    private static async ValueTask AbandonOnDisposeAsync(BudgetStore store, long id)
        => await store.AbandonAsync(id, at: null, CancellationToken.None).ConfigureAwait(false);

    private BudgetStore RequireStore()
        => IsValid ? Store! : throw new InvalidOperationException("The default BudgetLease holds nothing; only admitted decisions carry a lease.");
}

/// <summary>The outcome of settling or abandoning a lease.</summary>
public readonly struct BudgetSettlement
{
    /// <summary>Initializes a settlement.</summary>
    /// <param name="status">What happened.</param>
    /// <param name="charged">The tokens charged for the lease (the actual usage, or the hold when abandoned or expired).</param>
    public BudgetSettlement(BudgetSettlementStatus status, long charged)
    {
        Status = status;
        Charged = charged;
    }

    /// <summary>Gets what happened.</summary>
    public BudgetSettlementStatus Status { get; }

    /// <summary>Gets the tokens charged for the lease; for an already settled lease, what was charged then (0 if unknown).</summary>
    public long Charged { get; }
}
