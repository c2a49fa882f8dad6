using NodaTime;

namespace Kars.Policy.Budgets;

/// <summary>
/// Where budget counters live: in memory, in a durable file, or in Redis shared by many replicas.
/// </summary>
/// <remarks>
/// <para>The contract every store keeps (the shared contract test suite checks it):</para>
/// <list type="bullet">
/// <item><description>Admission is atomic across every limited window of the key and its parent, in one
/// operation: admitted iff <c>used + held + tokens ≤ limit</c> everywhere; a rejection changes no counter.</description></item>
/// <item><description>The store decides the current periods from its own clock (the injected <see cref="TimeProvider"/>,
/// or the Redis server time) unless the call passes an explicit instant (<c>at</c>), which replay and tests do.</description></item>
/// <item><description>An admission holds the tokens under a store-assigned lease id until it is settled, abandoned
/// or expires. Settlement replaces the hold with the actual usage in the periods of admission, is idempotent per
/// lease, and charges usage above the hold. Abandonment and expiry charge the full hold.</description></item>
/// <item><description>Token counts are bounded: a request's tokens and a settlement's actual usage are at most
/// <see cref="MaxTokens"/> (2^53, exact in every store including Redis/Lua doubles); larger values throw. Counters
/// (<c>used</c>, <c>held</c>) saturate at <see cref="long.MaxValue"/> instead of wrapping, and a saturated counter
/// never admits; a hold that could not be represented is rejected even in Observe mode.</description></item>
/// <item><description>Failures to reach or persist state throw <see cref="BudgetStoreUnavailableException"/>; bad
/// persisted state throws <see cref="BudgetStateCorruptException"/>. A store never admits because it failed.</description></item>
/// </list>
/// <para>Stores are safe for concurrent use. They are disposable both ways: <see cref="DisposeAsync"/> and
/// <see cref="Dispose()"/> (dependency-injection containers dispose synchronously).</para>
/// </remarks>
public abstract class BudgetStore : IAsyncDisposable, IDisposable
{
    /// <summary>The largest token count of one request or one settlement: 2^53, so every store (including
    /// Redis scripts, whose numbers are doubles) handles it exactly.</summary>
    public const long MaxTokens = 1L << 53;

    /// <summary>log2 of the number of recently closed lease ids remembered, so that disposing a settled lease does not
    /// call the store again.</summary>
    private const int ClosedLeaseBits = 12;

    /// <summary>Recently closed lease ids, direct-mapped by a multiplicative hash of the id (never 0 for a real id).</summary>
    private readonly long[] _closedLeases = new long[1 << ClosedLeaseBits];

    /// <summary>Reserves tokens for a request, or rejects it.</summary>
    /// <param name="request">The request.</param>
    /// <param name="cancellationToken">Cancels the call; a cancelled call admits nothing.</param>
    /// <returns>The decision; when admitted it carries the lease.</returns>
    /// <exception cref="ArgumentOutOfRangeException">The request's tokens are above <see cref="MaxTokens"/>.</exception>
    /// <exception cref="ArgumentException">The request has no level, negative tokens or a non-positive lease duration.</exception>
    /// <exception cref="OperationCanceledException">The call was cancelled.</exception>
    /// <exception cref="BudgetStoreUnavailableException">The store cannot decide durably.</exception>
    public ValueTask<BudgetDecision> TryReserveAsync(BudgetRequest request, CancellationToken cancellationToken = default)
    {
        if (request.Level is null)
        {
            throw new ArgumentException("The request has no budget level (default BudgetRequest).", nameof(request));
        }

        if (request.Tokens < 0)
        {
            throw new ArgumentException("The tokens of a request are zero or more.", nameof(request));
        }

        if (request.Tokens > MaxTokens)
        {
            throw new ArgumentOutOfRangeException(nameof(request), request.Tokens, $"The tokens of a request are at most BudgetStore.MaxTokens ({MaxTokens}).");
        }

        if (request.LeaseDuration <= TimeSpan.Zero)
        {
            throw new ArgumentException("The lease duration of a request is positive.", nameof(request));
        }

        if (request.Parent is not null && string.Equals(request.Parent.Key, request.Level.Key, StringComparison.Ordinal))
        {
            throw new ArgumentException("A budget key cannot be its own parent.", nameof(request));
        }

        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<BudgetDecision>(cancellationToken);
        }

        return TryReserveCoreAsync(request, cancellationToken);
    }

    /// <summary>Replaces a lease's hold with the actual usage, in the periods in which it was admitted.</summary>
    /// <param name="leaseId">The lease id.</param>
    /// <param name="actualTokens">The tokens actually used (0 to <see cref="MaxTokens"/>; above the hold is charged too).</param>
    /// <param name="at">The instant of settlement (decides whether the lease has expired); <see langword="null"/> for the store's clock.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The settlement; idempotent per lease.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="leaseId"/> is not positive, or <paramref name="actualTokens"/> is negative or above <see cref="MaxTokens"/>, or <paramref name="at"/> is outside <see cref="BudgetRequest.MinAt"/>..<see cref="BudgetRequest.MaxAt"/>.</exception>
    /// <exception cref="OperationCanceledException">The call was cancelled.</exception>
    /// <exception cref="BudgetStoreUnavailableException">The store cannot record it durably.</exception>
    public ValueTask<BudgetSettlement> SettleAsync(long leaseId, long actualTokens, Instant? at = null, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(leaseId);
        ArgumentOutOfRangeException.ThrowIfNegative(actualTokens);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(actualTokens, MaxTokens);
        BudgetRequest.ThrowIfOutOfRange(at, nameof(at));
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<BudgetSettlement>(cancellationToken);
        }

        return RememberClosed(SettleCoreAsync(leaseId, actualTokens, at, cancellationToken), leaseId);
    }

    /// <summary>Gives a lease up with unknown usage: its full hold is charged in the periods of admission.</summary>
    /// <param name="leaseId">The lease id.</param>
    /// <param name="at">The instant of the call; <see langword="null"/> for the store's clock.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The settlement; idempotent per lease.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="leaseId"/> is not positive, or <paramref name="at"/> is outside <see cref="BudgetRequest.MinAt"/>..<see cref="BudgetRequest.MaxAt"/>.</exception>
    /// <exception cref="OperationCanceledException">The call was cancelled.</exception>
    /// <exception cref="BudgetStoreUnavailableException">The store cannot record it durably.</exception>
    public ValueTask<BudgetSettlement> AbandonAsync(long leaseId, Instant? at = null, CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(leaseId);
        BudgetRequest.ThrowIfOutOfRange(at, nameof(at));
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<BudgetSettlement>(cancellationToken);
        }

        return RememberClosed(AbandonCoreAsync(leaseId, at, cancellationToken), leaseId);
    }

    /// <summary>Reads a key's counters in every window limited at the key or its parent.</summary>
    /// <param name="level">The key and its limits.</param>
    /// <param name="parent">The parent level, or <see langword="null"/>.</param>
    /// <param name="at">The instant to describe; <see langword="null"/> for the store's clock.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The status.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="level"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="at"/> is outside <see cref="BudgetRequest.MinAt"/>..<see cref="BudgetRequest.MaxAt"/>.</exception>
    /// <exception cref="OperationCanceledException">The call was cancelled.</exception>
    /// <exception cref="BudgetStoreUnavailableException">The store cannot be read.</exception>
    public ValueTask<BudgetStatus> GetStatusAsync(BudgetLevel level, BudgetLevel? parent = null, Instant? at = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(level);
        BudgetRequest.ThrowIfOutOfRange(at, nameof(at));
        if (cancellationToken.IsCancellationRequested)
        {
            return ValueTask.FromCanceled<BudgetStatus>(cancellationToken);
        }

        return GetStatusCoreAsync(level, parent, at, cancellationToken);
    }

    /// <summary>Releases the store (flushes and closes files, connections).</summary>
    /// <returns>A task that completes when released.</returns>
    public async ValueTask DisposeAsync()
    {
        await DisposeAsyncCore().ConfigureAwait(false);
        Dispose(disposing: false);
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases the store synchronously (flushes and closes files, connections), for hosts and containers
    /// that dispose synchronously. Prefer <see cref="DisposeAsync"/> where possible.</summary>
    public void Dispose()
    {
        Dispose(disposing: true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Creates the lease of an admission this store made. Only stores create leases: the lease names this
    /// store, and settling or disposing it calls this store.</summary>
    /// <param name="leaseId">The store-assigned lease id (positive, unique within this store).</param>
    /// <param name="tokens">The tokens held (0 to <see cref="MaxTokens"/>).</param>
    /// <param name="expiresAt">When the hold is charged in full if not settled.</param>
    /// <returns>The lease.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="leaseId"/> is not positive or <paramref name="tokens"/> is out of range.</exception>
    protected BudgetLease CreateLease(long leaseId, long tokens, Instant expiresAt)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(leaseId);
        ArgumentOutOfRangeException.ThrowIfNegative(tokens);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(tokens, MaxTokens);
        return new BudgetLease(this, leaseId, tokens, expiresAt);
    }

    /// <summary>Whether the lease was recently settled or abandoned through this store (so disposing it needs no call).</summary>
    internal bool IsKnownClosed(long leaseId) => Volatile.Read(ref _closedLeases[Slot(leaseId)]) == leaseId;

    /// <summary>Fibonacci hashing: sequential ids (in-memory, file) and random ids (Redis) both spread over the table.</summary>
    private static int Slot(long leaseId) => (int)(((ulong)leaseId * 0x9E3779B97F4A7C15UL) >> (64 - ClosedLeaseBits));

    private ValueTask<BudgetSettlement> RememberClosed(ValueTask<BudgetSettlement> pending, long leaseId)
    {
        if (pending.IsCompletedSuccessfully)
        {
            // Any answer means nothing is open under this id any more (settled now, before, expired or unknown).
            Volatile.Write(ref _closedLeases[Slot(leaseId)], leaseId);
            return pending;
        }

        return RememberClosedAsync(pending, leaseId);
    }

    private async ValueTask<BudgetSettlement> RememberClosedAsync(ValueTask<BudgetSettlement> pending, long leaseId)
    {
        BudgetSettlement settlement = await pending.ConfigureAwait(false);
        Volatile.Write(ref _closedLeases[Slot(leaseId)], leaseId);
        return settlement;
    }

    /// <summary>Reserves tokens; arguments are already validated.</summary>
    /// <param name="request">The request.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The decision.</returns>
    protected abstract ValueTask<BudgetDecision> TryReserveCoreAsync(BudgetRequest request, CancellationToken cancellationToken);

    /// <summary>Settles a lease; arguments are already validated.</summary>
    /// <param name="leaseId">The lease id.</param>
    /// <param name="actualTokens">The actual usage.</param>
    /// <param name="at">The explicit instant, or <see langword="null"/>.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The settlement.</returns>
    protected abstract ValueTask<BudgetSettlement> SettleCoreAsync(long leaseId, long actualTokens, Instant? at, CancellationToken cancellationToken);

    /// <summary>Abandons a lease; arguments are already validated.</summary>
    /// <param name="leaseId">The lease id.</param>
    /// <param name="at">The explicit instant, or <see langword="null"/>.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The settlement.</returns>
    protected abstract ValueTask<BudgetSettlement> AbandonCoreAsync(long leaseId, Instant? at, CancellationToken cancellationToken);

    /// <summary>Reads a key's status; arguments are already validated.</summary>
    /// <param name="level">The key and its limits.</param>
    /// <param name="parent">The parent level, or <see langword="null"/>.</param>
    /// <param name="at">The explicit instant, or <see langword="null"/>.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <returns>The status.</returns>
    protected abstract ValueTask<BudgetStatus> GetStatusCoreAsync(BudgetLevel level, BudgetLevel? parent, Instant? at, CancellationToken cancellationToken);

    /// <summary>Releases resources asynchronously. The default calls <see cref="Dispose(bool)"/> with <see langword="true"/>.</summary>
    /// <returns>A task that completes when released.</returns>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Performance", "CA1849:Call async methods when in an async method", Justification = "This is the asynchronous path's default: it delegates to the synchronous Dispose(bool); calling DisposeAsync here would recurse.")]
    protected virtual ValueTask DisposeAsyncCore()
    {
        Dispose(disposing: true);
        return default;
    }

    /// <summary>Releases resources synchronously. The default does nothing. Called with <see langword="true"/> by
    /// <see cref="Dispose()"/>, and with <see langword="false"/> after <see cref="DisposeAsyncCore"/> (when only
    /// unmanaged resources are left to release). Must be safe to call more than once.</summary>
    /// <param name="disposing"><see langword="true"/> to release managed resources too.</param>
    protected virtual void Dispose(bool disposing)
    {
    }
}
