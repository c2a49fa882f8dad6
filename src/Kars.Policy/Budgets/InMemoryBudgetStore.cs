using NodaTime;
using NodaTime.Extensions;

namespace Kars.Policy.Budgets;

/// <summary>
/// A <see cref="BudgetStore"/> that keeps every counter in process memory. Fast (no allocation on the admission
/// path once a key's periods exist) and exact under concurrency, but forgets everything when the process ends:
/// use it for one replica that may lose its counters on restart, for tests, and for replays.
/// </summary>
/// <remarks>
/// Periods come from the injected <see cref="TimeProvider"/> unless a call passes an explicit instant. One lock
/// (<see cref="Lock"/>) guards the state, so admission is atomic across every window and level; the clock is read
/// before entering it.
/// Keys that have no open lease and whose every counted window has ended are evicted (checked when the hour of
/// the store's clock changes), so memory follows the active keys, not every key ever seen. Safe for concurrent use.
/// </remarks>
public sealed class InMemoryBudgetStore : BudgetStore, IBudgetLeaseIssuer
{
    private readonly BudgetLedgerGate _gate;
    private readonly BudgetLedger _ledger = new();
    private readonly TimeProvider _time;

    /// <summary>Initializes a store.</summary>
    /// <param name="timeProvider">The clock; <see cref="TimeProvider.System"/> when <see langword="null"/>.</param>
    public InMemoryBudgetStore(TimeProvider? timeProvider = null)
        : this(timeProvider, BudgetLedgerGate.Default)
    {
    }

    /// <summary>Initializes a store with a chosen lock (the contended benchmark compares them).</summary>
    internal InMemoryBudgetStore(TimeProvider? timeProvider, BudgetLedgerGate gate)
    {
        _time = timeProvider ?? TimeProvider.System;
        _gate = gate;
    }

    /// <summary>Gets the number of keys in memory (tests).</summary>
    internal int KeyCount
    {
        get
        {
            _gate.Enter();
            try
            {
                return _ledger.Keys.Count;
            }
            finally
            {
                _gate.Exit();
            }
        }
    }

    /// <inheritdoc/>
    BudgetLease IBudgetLeaseIssuer.Issue(long leaseId, long tokens, Instant expiresAt) => CreateLease(leaseId, tokens, expiresAt);

    /// <inheritdoc/>
    protected override ValueTask<BudgetDecision> TryReserveCoreAsync(BudgetRequest request, CancellationToken cancellationToken)
    {
        Instant now = request.At ?? _time.GetCurrentInstant();
        _gate.Enter();
        try
        {
            return new ValueTask<BudgetDecision>(_ledger.Reserve(this, request, now));
        }
        finally
        {
            _gate.Exit();
        }
    }

    /// <inheritdoc/>
    protected override ValueTask<BudgetSettlement> SettleCoreAsync(long leaseId, long actualTokens, Instant? at, CancellationToken cancellationToken)
    {
        Instant now = at ?? _time.GetCurrentInstant();
        _gate.Enter();
        try
        {
            return new ValueTask<BudgetSettlement>(_ledger.Settle(leaseId, actualTokens, now));
        }
        finally
        {
            _gate.Exit();
        }
    }

    /// <inheritdoc/>
    protected override ValueTask<BudgetSettlement> AbandonCoreAsync(long leaseId, Instant? at, CancellationToken cancellationToken)
    {
        Instant now = at ?? _time.GetCurrentInstant();
        _gate.Enter();
        try
        {
            return new ValueTask<BudgetSettlement>(_ledger.Abandon(leaseId, now));
        }
        finally
        {
            _gate.Exit();
        }
    }

    /// <inheritdoc/>
    protected override ValueTask<BudgetStatus> GetStatusCoreAsync(BudgetLevel level, BudgetLevel? parent, Instant? at, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(level);
        Instant now = at ?? _time.GetCurrentInstant();
        _gate.Enter();
        try
        {
            return new ValueTask<BudgetStatus>(_ledger.Status(level, parent, now));
        }
        finally
        {
            _gate.Exit();
        }
    }
}
