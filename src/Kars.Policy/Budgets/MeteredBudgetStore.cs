using System.Collections.Concurrent;
using Kars.Policy.Internal;
using NodaTime;
using NodaTime.Extensions;

namespace Kars.Policy.Budgets;

/// <summary>
/// The store a <see cref="BudgetMeter"/> talks to: forwards every call to the host's store and records
/// <c>kars.policy.budget.tokens</c> (reserved, charged, released) and <c>kars.policy.budget.store.duration</c>.
/// </summary>
/// <remarks>
/// <para>It issues its own leases with the inner store's lease ids, so settling or disposing a lease from a meter's
/// decision passes through here (and is measured) on its way to the inner store. It owns nothing: disposing it does
/// not dispose the inner store, whose owner (the host, or the container) does.</para>
/// <para>Released tokens (hold − charge) need the hold at settlement, which a settle call does not carry: the holds of
/// open leases are remembered in a bounded table (<see cref="MaxTrackedLeases"/>; an entry leaves on settle or
/// abandon, and expired entries are swept when it fills). A lease not tracked still has its charge recorded.</para>
/// </remarks>
internal sealed class MeteredBudgetStore : BudgetStore
{
    /// <summary>How many open holds are remembered for the released figure.</summary>
    internal const int MaxTrackedLeases = 100_000;

    private const string Reserve = "reserve";
    private const string Settle = "settle";
    private const string Abandon = "abandon";
    private const string Status = "status";

    private readonly BudgetStore _inner;
    private readonly KarsPolicyMetrics _metrics;
    private readonly BudgetMode _mode;
    private readonly string _storeType;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<long, Hold> _holds = new();

    public MeteredBudgetStore(BudgetStore inner, KarsPolicyMetrics metrics, BudgetMode mode, TimeProvider time)
    {
        _time = time;
        _inner = inner;
        _metrics = metrics;
        _mode = mode;
        _storeType = inner.GetType().Name;
    }

    /// <summary>Gets how many holds are tracked (tests).</summary>
    internal int TrackedLeases => _holds.Count;

    protected override async ValueTask<BudgetDecision> TryReserveCoreAsync(BudgetRequest request, CancellationToken cancellationToken)
    {
        long start = _metrics.StoreCallStarting();
        BudgetDecision d;
        try
        {
            d = await _inner.TryReserveAsync(request, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            _metrics.StoreCallEnded(Reserve, _storeType, start, ex);
            throw;
        }

        _metrics.StoreCallEnded(Reserve, _storeType, start, null);
        if (!d.Lease.IsValid)
        {
            return d;
        }

        BudgetLease inner = d.Lease;
        _metrics.BudgetTokens(KarsPolicyMetrics.Reserved, inner.Tokens, _mode);
        Track(inner.Id, inner.Tokens, inner.ExpiresAt);
        BudgetLease lease = CreateLease(inner.Id, inner.Tokens, inner.ExpiresAt);
        return new BudgetDecision(d.Reason, d.Tokens, lease, d.RetryAfter, d.At, d.Limits, d.Remaining, d.BlockingWindow, d.IsUnmetered);
    }

    protected override ValueTask<BudgetSettlement> SettleCoreAsync(long leaseId, long actualTokens, Instant? at, CancellationToken cancellationToken)
        => CloseAsync(Settle, leaseId, _inner.SettleAsync(leaseId, actualTokens, at, cancellationToken), _metrics.StoreCallStarting());

    protected override ValueTask<BudgetSettlement> AbandonCoreAsync(long leaseId, Instant? at, CancellationToken cancellationToken)
        => CloseAsync(Abandon, leaseId, _inner.AbandonAsync(leaseId, at, cancellationToken), _metrics.StoreCallStarting());

    protected override async ValueTask<BudgetStatus> GetStatusCoreAsync(BudgetLevel level, BudgetLevel? parent, Instant? at, CancellationToken cancellationToken)
    {
        long start = _metrics.StoreCallStarting();
        try
        {
            BudgetStatus status = await _inner.GetStatusAsync(level, parent, at, cancellationToken).ConfigureAwait(false);
            _metrics.StoreCallEnded(Status, _storeType, start, null);
            return status;
        }
        catch (Exception ex)
        {
            _metrics.StoreCallEnded(Status, _storeType, start, ex);
            throw;
        }
    }

    private async ValueTask<BudgetSettlement> CloseAsync(string operation, long leaseId, ValueTask<BudgetSettlement> pending, long start)
    {
        BudgetSettlement settlement;
        try
        {
            settlement = await pending.ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            _metrics.StoreCallEnded(operation, _storeType, start, ex);
            throw;
        }

        _metrics.StoreCallEnded(operation, _storeType, start, null);
        bool known = _holds.TryRemove(leaseId, out Hold hold);
        if (settlement.Status is BudgetSettlementStatus.Settled or BudgetSettlementStatus.Expired)
        {
            // A repeat settle (AlreadySettled) or an unknown lease charges nothing new.
            _metrics.BudgetTokens(KarsPolicyMetrics.Charged, settlement.Charged, _mode);
            if (known)
            {
                _metrics.BudgetTokens(KarsPolicyMetrics.Released, hold.Tokens - settlement.Charged, _mode);
            }
        }

        return settlement;
    }

    private void Track(long leaseId, long tokens, Instant expiresAt)
    {
        if (_holds.Count >= MaxTrackedLeases)
        {
            // Leases dropped without settle or dispose: forget those already expired (the store charged them).
            Instant now = _time.GetCurrentInstant();
            foreach (var pair in _holds)
            {
                if (pair.Value.ExpiresAt <= now)
                {
                    _holds.TryRemove(pair.Key, out _);
                }
            }

            if (_holds.Count >= MaxTrackedLeases)
            {
                return;
            }
        }

        _holds[leaseId] = new Hold(tokens, expiresAt);
    }

    private readonly record struct Hold(long Tokens, Instant ExpiresAt);
}
