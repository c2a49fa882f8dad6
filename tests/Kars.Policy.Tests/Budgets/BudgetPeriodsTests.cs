using System.Globalization;
using Kars.Policy.Budgets;
using NodaTime;
using NodaTime.Text;

namespace Kars.Policy.Tests.Budgets;

public sealed class BudgetPeriodsTests
{
    private static Instant I(string text) => InstantPattern.ExtendedIso.Parse(text).GetValueOrThrow();

    [Theory]
    [InlineData(BudgetWindow.Hour, "2030-06-15T13:59:59.999Z", "2030-06-15T13:00:00Z", "2030-06-15T14:00:00Z")]
    [InlineData(BudgetWindow.Day, "2030-06-15T00:00:00Z", "2030-06-15T00:00:00Z", "2030-06-16T00:00:00Z")]
    [InlineData(BudgetWindow.Day, "2032-02-29T12:00:00Z", "2032-02-29T00:00:00Z", "2032-03-01T00:00:00Z")]
    [InlineData(BudgetWindow.Week, "2030-06-16T23:59:59Z", "2030-06-10T00:00:00Z", "2030-06-17T00:00:00Z")]
    [InlineData(BudgetWindow.Week, "2030-06-17T00:00:00Z", "2030-06-17T00:00:00Z", "2030-06-24T00:00:00Z")]
    [InlineData(BudgetWindow.Week, "2027-01-01T00:00:00Z", "2026-12-28T00:00:00Z", "2027-01-04T00:00:00Z")]
    [InlineData(BudgetWindow.Week, "2021-01-03T12:00:00Z", "2020-12-28T00:00:00Z", "2021-01-04T00:00:00Z")]
    [InlineData(BudgetWindow.Month, "2030-01-31T23:59:59Z", "2030-01-01T00:00:00Z", "2030-02-01T00:00:00Z")]
    [InlineData(BudgetWindow.Month, "2031-02-10T00:00:00Z", "2031-02-01T00:00:00Z", "2031-03-01T00:00:00Z")]
    [InlineData(BudgetWindow.Month, "2032-02-10T00:00:00Z", "2032-02-01T00:00:00Z", "2032-03-01T00:00:00Z")]
    [InlineData(BudgetWindow.Month, "2030-12-31T23:59:59Z", "2030-12-01T00:00:00Z", "2031-01-01T00:00:00Z")]
    [InlineData(BudgetWindow.Year, "2030-12-31T23:59:59.9999999Z", "2030-01-01T00:00:00Z", "2031-01-01T00:00:00Z")]
    [InlineData(BudgetWindow.Year, "2031-01-01T00:00:00Z", "2031-01-01T00:00:00Z", "2032-01-01T00:00:00Z")]
    public void Get_Instant_ReturnsHalfOpenUtcPeriod(BudgetWindow window, string at, string start, string end)
    {
        var (s, e) = BudgetPeriods.Get(window, I(at));

        s.Should().Be(I(start));
        e.Should().Be(I(end));
        I(at).Should().BeGreaterThanOrEqualTo(s).And.BeLessThan(e);
    }

    [Fact]
    public void PeriodSet_AnyInstantOfAnHour_MatchesPerWindowComputation()
    {
        Instant at = I("2032-12-31T23:17:00Z");
        var set = BudgetPeriodSet.For(at);

        for (int w = 0; w < BudgetPeriods.WindowCount; w++)
        {
            var (s, e) = BudgetPeriods.Get((BudgetWindow)w, at + Duration.FromMinutes(42));
            set.Start(w).Should().Be(s);
            set.End(w).Should().Be(e);
        }

        set.Contains(I("2032-12-31T23:59:59Z")).Should().BeTrue();
        set.Contains(I("2033-01-01T00:00:00Z")).Should().BeFalse();
    }

    [Theory]
    [InlineData("2030-01-01T00:00:00Z", "2030-01-01T00:00:00Z", 1)]
    [InlineData("2030-01-01T00:00:00Z", "2030-01-01T00:00:00.0000001Z", 1)]
    [InlineData("2030-01-01T00:00:00Z", "2030-01-01T00:00:01Z", 1)]
    [InlineData("2030-01-01T00:00:00Z", "2030-01-01T00:00:01.0000001Z", 2)]
    [InlineData("2030-01-01T00:00:00Z", "2030-02-01T00:00:00Z", 2678400)]
    public void RetryAfter_RoundsUpToWholeSecondsAtLeastOne(string now, string until, int seconds)
    {
        BudgetPeriods.RetryAfter(I(now), I(until)).Should().Be(TimeSpan.FromSeconds(seconds));
    }

    [Fact]
    public void Get_DoesNotDependOnTheHostTimeZone()
    {
        // Periods come from Instant.InUtc only; a culture or local zone cannot shift them.
        var before = CultureInfo.CurrentCulture;
        try
        {
            CultureInfo.CurrentCulture = new CultureInfo("th-TH");
            BudgetPeriods.Get(BudgetWindow.Day, I("2030-06-15T23:30:00Z")).Start.Should().Be(I("2030-06-15T00:00:00Z"));
        }
        finally
        {
            CultureInfo.CurrentCulture = before;
        }
    }
}
