using NodaTime;

namespace Kars.Policy.Budgets;

/// <summary>
/// UTC calendar periods of the five windows (DESIGN §4): half-open, computed with NodaTime, independent of the
/// host time zone. ISO weeks start on Monday 00:00 UTC.
/// </summary>
internal static class BudgetPeriods
{
    /// <summary>The number of windows.</summary>
    public const int WindowCount = 5;

    /// <summary>Returns the period of <paramref name="window"/> that contains <paramref name="at"/>.</summary>
    public static (Instant Start, Instant End) Get(BudgetWindow window, Instant at)
    {
        Interval period = window.PeriodContaining(at);
        return (period.Start, period.End);
    }

    /// <summary>Whole seconds from <paramref name="now"/> to <paramref name="until"/>, rounded up, at least 1.</summary>
    public static TimeSpan RetryAfter(Instant now, Instant until)
    {
        // Exact to the nanosecond: BclCompatibleTicks would drop the sub-100 ns part and round a delay of
        // 2,700 s + 1 ns down to 2,700 s. The periods are at most a year, so the nanoseconds fit a long.
        long nanos = (until - now).ToInt64Nanoseconds();
        long seconds = nanos <= 0 ? 1 : (nanos / NodaConstants.NanosecondsPerSecond) + (nanos % NodaConstants.NanosecondsPerSecond == 0 ? 0 : 1);
        return TimeSpan.FromSeconds(Math.Max(1, seconds));
    }
}

/// <summary>
/// The five periods that contain one UTC hour. Every window boundary is an hour boundary in UTC, so the set is
/// valid for the whole hour and the hot path reuses it instead of doing calendar arithmetic per request.
/// </summary>
internal sealed class BudgetPeriodSet
{
    private readonly Instant[] _starts = new Instant[BudgetPeriods.WindowCount];
    private readonly Instant[] _ends = new Instant[BudgetPeriods.WindowCount];

    private BudgetPeriodSet(Instant at)
    {
        for (int w = 0; w < BudgetPeriods.WindowCount; w++)
        {
            (_starts[w], _ends[w]) = BudgetPeriods.Get((BudgetWindow)w, at);
        }
    }

    /// <summary>Gets the start of the hour this set describes.</summary>
    public Instant HourStart => _starts[0];

    /// <summary>Gets the end of the hour this set describes.</summary>
    public Instant HourEnd => _ends[0];

    /// <summary>Computes the set for the hour containing <paramref name="at"/>.</summary>
    public static BudgetPeriodSet For(Instant at) => new(at);

    /// <summary>Whether <paramref name="at"/> falls in this set's hour.</summary>
    public bool Contains(Instant at) => at >= _starts[0] && at < _ends[0];

    /// <summary>The start of the period of a window.</summary>
    public Instant Start(int window) => _starts[window];

    /// <summary>The end of the period of a window.</summary>
    public Instant End(int window) => _ends[window];
}
