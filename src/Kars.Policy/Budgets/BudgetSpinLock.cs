namespace Kars.Policy.Budgets;

/// <summary>
/// A mutual-exclusion lock of one compare-and-swap: <see cref="Enter"/> atomically changes the state from 0 to 1
/// (a full fence, so reads inside the section see every write made before the previous <see cref="Exit"/>), and
/// <see cref="Exit"/> publishes the section's writes with a release store of 0. Not re-entrant, no owner tracking.
/// </summary>
/// <remarks>
/// Cheaper than <see cref="Lock"/> for the in-memory store's sections, which are short, bounded and never block
/// (no I/O, no awaits, no allocation in steady state, no callbacks into host code). Under contention the waiter
/// spins with <see cref="SpinWait"/>, which backs off to yielding and sleeping, so a pre-empted holder still gets
/// the processor back.
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
