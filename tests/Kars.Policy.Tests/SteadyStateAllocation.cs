namespace Kars.Policy.Tests;

/// <summary>Measures what a piece of code allocates once the runtime has settled, deterministically.</summary>
/// <remarks>
/// <para>A single measured loop is not deterministic: tiered compilation re-jits hot methods in the background (after
/// a call-count threshold and a delay measured in wall-clock time), on-stack replacement swaps loops mid-run, and
/// one-time runtime work (type loading, static constructors, tier-0 helpers that allocate) can land inside the loop.
/// Those allocations happen once; an allocation made by the code under test happens on every call.</para>
/// <para>So the round runs once to warm up, then up to <see cref="MaxRounds"/> more times, and the result is the
/// smallest count of bytes any round allocated on this thread. A real per-call allocation shows in every round (at
/// least one byte per call, so never 0); a one-time runtime allocation shows in at most a few. No timing is
/// involved, and the answer does not depend on how fast the machine is.</para>
/// </remarks>
internal static class SteadyStateAllocation
{
    /// <summary>How many measured rounds at most.</summary>
    public const int MaxRounds = 20;

    /// <summary>Returns the fewest bytes allocated on this thread by one call of <paramref name="round"/>.</summary>
    /// <param name="round">The work; it must do the same thing on every call.</param>
    /// <returns>0 when some round allocated nothing.</returns>
    public static long Measure(Action round)
    {
        round();
        long fewest = long.MaxValue;
        for (int r = 0; r < MaxRounds && fewest > 0; r++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            round();
            fewest = Math.Min(fewest, GC.GetAllocatedBytesForCurrentThread() - before);
        }

        return fewest;
    }
}
