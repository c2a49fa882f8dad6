namespace Kars.Policy.Budgets;

/// <summary>
/// The lock around the in-memory ledger. <see cref="Default"/> (what the store uses) is <see cref="Lock"/>: the
/// contended benchmark (<c>BudgetContendedBenchmarks</c>, 2/8/64 callers, same and distinct keys, two runs on
/// 2026-11-30) showed no consistent gain for the compare-and-swap spin lock — it was ahead at 8 callers and behind at
/// 64 in both runs, all within the noise of the shared machine — so the store went back to <see cref="Lock"/>, which
/// also blocks instead of spinning when a holder is pre-empted. The spin lock stays only so that the benchmark can
/// repeat the comparison (<see cref="ForSpinLock"/> is used nowhere else).
/// </summary>
internal sealed class BudgetLedgerGate
{
    private readonly Lock? _lock;
    private readonly BudgetSpinLock? _spin;

    private BudgetLedgerGate(bool spin)
    {
        if (spin)
        {
            _spin = new BudgetSpinLock();
        }
        else
        {
            _lock = new Lock();
        }
    }

    /// <summary>Gets a new gate of the kind the store uses.</summary>
    public static BudgetLedgerGate Default => ForLock();

    /// <summary>A gate on <see cref="System.Threading.Lock"/>.</summary>
    public static BudgetLedgerGate ForLock() => new(spin: false);

    /// <summary>A gate on the compare-and-swap <see cref="BudgetSpinLock"/>.</summary>
    public static BudgetLedgerGate ForSpinLock() => new(spin: true);

    public void Enter()
    {
        if (_spin is not null)
        {
            _spin.Enter();
        }
        else
        {
            _lock!.Enter();
        }
    }

    public void Exit()
    {
        if (_spin is not null)
        {
            _spin.Exit();
        }
        else
        {
            _lock!.Exit();
        }
    }
}

/// <summary>
/// A mutual-exclusion lock of one compare-and-swap: <see cref="Enter"/> atomically changes the state from 0 to 1
/// (a full fence, so reads inside the section see every write made before the previous <see cref="Exit"/>), and
/// <see cref="Exit"/> publishes the section's writes with a release store of 0. Not re-entrant, no owner tracking.
/// </summary>
/// <remarks>
/// Under contention the waiter spins with <see cref="SpinWait"/>, which backs off to yielding and sleeping, so a
/// pre-empted holder still gets the processor back.
/// </remarks>
internal sealed class BudgetSpinLock
{
    private int _held;

    /// <summary>Acquires the lock, waiting as long as needed.</summary>
    public void Enter()
    {
        if (Interlocked.CompareExchange(ref _held, 1, 0) != 0)
        {
            EnterContended();
        }
    }

    /// <summary>Releases the lock. Only the thread that entered it may call this, once.</summary>
    public void Exit() => Volatile.Write(ref _held, 0);

    private void EnterContended()
    {
        var spinner = default(SpinWait);
        do
        {
            spinner.SpinOnce();
        }
        while (Volatile.Read(ref _held) != 0 || Interlocked.CompareExchange(ref _held, 1, 0) != 0);
    }
}
