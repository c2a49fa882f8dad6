using NodaTime;

namespace Kars.Policy.Budgets;

/// <summary>The UTC calendar periods of the budget windows.</summary>
public static class BudgetWindowPeriods
{
    /// <summary>Returns the period of <paramref name="window"/> that contains <paramref name="instant"/>: half-open,
    /// <c>[start, end)</c>, in UTC, computed with the ISO calendar (weeks start on Monday 00:00 UTC). The end is the
    /// instant the window's counters reset.</summary>
    /// <param name="window">The window.</param>
    /// <param name="instant">The instant.</param>
    /// <returns>The period; <see cref="Interval.End"/> is exclusive.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="window"/> is not a defined window.</exception>
    public static Interval PeriodContaining(this BudgetWindow window, Instant instant)
    {
        LocalDateTime utc = instant.InUtc().LocalDateTime;
        LocalDate date = utc.Date;
        switch (window)
        {
            case BudgetWindow.Hour:
                Instant hour = Midnight(date) + Duration.FromHours(utc.Hour);
                return new Interval(hour, hour + Duration.FromHours(1));
            case BudgetWindow.Day:
                return new Interval(Midnight(date), Midnight(date.PlusDays(1)));
            case BudgetWindow.Week:
                // IsoDayOfWeek: Monday = 1 … Sunday = 7. (DateAdjusters.PreviousOrSame would allocate a delegate per call.)
                LocalDate monday = date.PlusDays(1 - (int)date.DayOfWeek);
                return new Interval(Midnight(monday), Midnight(monday.PlusWeeks(1)));
            case BudgetWindow.Month:
                var first = new LocalDate(date.Year, date.Month, 1);
                return new Interval(Midnight(first), Midnight(first.PlusMonths(1)));
            case BudgetWindow.Year:
                var jan1 = new LocalDate(date.Year, 1, 1);
                return new Interval(Midnight(jan1), Midnight(jan1.PlusYears(1)));
            default:
                throw new ArgumentOutOfRangeException(nameof(window), window, "Unknown budget window.");
        }
    }

    private static Instant Midnight(LocalDate date) => date.AtMidnight().InUtc().ToInstant();
}
