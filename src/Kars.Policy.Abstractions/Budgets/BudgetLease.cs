using NodaTime;

namespace Kars.Policy.Budgets;

/// <summary>
/// A hold on tokens, issued by a <see cref="BudgetStore"/> when it admits a request. Settle it with the actual
/// usage; disposing it unsettled charges the full hold.
/// </summary>
/// <remarks>
/// A lease is a small value: copies refer to the same hold, and settlement is idempotent per lease id in the
/// store, so settling or disposing a copy twice changes nothing the second time. A lease not settled before
/// <see cref="ExpiresAt"/> is charged its full hold by the store.
/// </remarks>
public readonly struct BudgetLease : IAsyncDisposable
{
    /// <summary>Initializes a lease. Stores create leases; hosts only use them.</summary>
    /// <param name="store">The issuing store.</param>
    /// <param name="id">The store-assigned lease id (positive).</param>
    /// <param name="tokens">The tokens held.</param>
    /// <param name="expiresAt">When the hold is charged in full if not settled.</param>
    public BudgetLease(BudgetStore store, long id, long tokens, Instant expiresAt)
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

    /// <summary>Abandons the lease if it is still open (the full hold is charged); no-op when settled or empty.</summary>
    /// <returns>A task that completes when the store has recorded it.</returns>
    public async ValueTask DisposeAsync()
    {
        if (IsValid)
        {
            await Store!.AbandonAsync(Id, at: null, CancellationToken.None).ConfigureAwait(false);
        }
    }

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
