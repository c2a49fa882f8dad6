using Kars.Policy.Budgets;
using NodaTime;
using Xunit;

namespace Kars.Policy.Tests.Budgets;

/// <summary>Issue 7: bad requests change nothing, a limit of 0 admits nothing, RetryAfter rounds up to the nanosecond.</summary>
public abstract partial class BudgetStoreContractTests
{
    [Fact]
    public async Task TryReserveAsync_LeaseDurationOfThreeMillionDays_ThrowsNamingTheParameterAndHoldsNothing()
    {
        var level = Level("a", new BudgetLimits(day: 1000));

        for (int i = 0; i < 3; i++)
        {
            var act = async () => await Store.TryReserveAsync(new BudgetRequest(level, 100, TimeSpan.FromDays(3_000_000), at: Now));
            (await act.Should().ThrowAsync<ArgumentOutOfRangeException>()).Which.ParamName.Should().Be("leaseDuration");
        }

        var day = Window(await StatusAsync(level), BudgetWindow.Day);
        day.Held.Should().Be(0, "a request that fails validation never reaches the counters");
        day.Used.Should().Be(0);
        (await ReserveAsync(level, 1000)).Reason.Should().Be(BudgetReason.Admitted);
    }

    [Fact]
    public async Task TryReserveAsync_LongestLeaseAtTheLastAcceptedInstant_Admits()
    {
        var level = Level("a", new BudgetLimits(year: 1000));

        var decision = await Store.TryReserveAsync(new BudgetRequest(level, 10, BudgetRequest.MaxLeaseDuration, at: BudgetRequest.MaxAt));

        decision.Reason.Should().Be(BudgetReason.Admitted);
        decision.Lease.ExpiresAt.Should().Be(BudgetRequest.MaxAt + Duration.FromDays(365));
    }

    [Fact]
    public void BudgetRequest_OutOfRangeArguments_ThrowNamingTheParameter()
    {
        var level = Level("a", new BudgetLimits(day: 1000));
        Instant year9999 = Instant.FromUtc(9999, 6, 1, 0, 0);

        var mode = () => new BudgetRequest(level, 1, LeaseDuration, mode: (BudgetMode)7);
        var at = () => new BudgetRequest(level, 1, LeaseDuration, at: year9999);
        var tokens = () => new BudgetRequest(level, -1, LeaseDuration);
        var lease = () => new BudgetRequest(level, 1, BudgetRequest.MaxLeaseDuration + TimeSpan.FromTicks(1));

        mode.Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be("mode");
        at.Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be("at");
        tokens.Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be("tokens");
        lease.Should().Throw<ArgumentOutOfRangeException>().Which.ParamName.Should().Be("leaseDuration");
    }

    [Fact]
    public async Task SettleAbandonStatus_InstantOutOfRange_ThrowNamingAt()
    {
        var level = Level("a", new BudgetLimits(day: 1000));
        var lease = (await ReserveAsync(level, 10)).Lease;
        Instant year9999 = Instant.FromUtc(9999, 12, 31, 0, 0);

        var settle = async () => await Store.SettleAsync(lease.Id, 5, year9999);
        var abandon = async () => await Store.AbandonAsync(lease.Id, year9999);
        var status = async () => await Store.GetStatusAsync(level, at: year9999);

        (await settle.Should().ThrowAsync<ArgumentOutOfRangeException>()).Which.ParamName.Should().Be("at");
        (await abandon.Should().ThrowAsync<ArgumentOutOfRangeException>()).Which.ParamName.Should().Be("at");
        (await status.Should().ThrowAsync<ArgumentOutOfRangeException>()).Which.ParamName.Should().Be("at");
        Window(await StatusAsync(level), BudgetWindow.Day).Held.Should().Be(10);
    }

    [Fact]
    public async Task TryReserveAsync_ZeroTokensAtZeroLimit_RejectsNotRetryable()
    {
        var level = Level("a", new BudgetLimits(day: 0));
        var parent = Level("p", new BudgetLimits(hour: 0));
        var child = Level("c", new BudgetLimits(day: 10));

        var own = await ReserveAsync(level, 0);
        var inherited = await ReserveAsync(child, 0, parent);

        own.Reason.Should().Be(BudgetReason.BudgetExceeded, "docs/budgets.md: a limit of 0 admits nothing");
        own.RetryAfter.Should().BeNull("no rollover makes a limit of 0 admit");
        inherited.Reason.Should().Be(BudgetReason.BudgetExceeded);
        inherited.RetryAfter.Should().BeNull();
        (await ReserveAsync(level, 0, mode: BudgetMode.Observe)).Reason.Should().Be(BudgetReason.Observed);
    }

    [Fact]
    public async Task TryReserveAsync_ZeroTokensAtExhaustedPositiveLimit_StillAdmits()
    {
        var level = Level("a", new BudgetLimits(day: 10));
        (await ReserveAsync(level, 10)).IsAdmitted.Should().BeTrue();

        (await ReserveAsync(level, 0)).Reason.Should().Be(BudgetReason.Admitted, "used + held + 0 ≤ limit");
    }

    [Theory]
    [InlineData("2030-03-14T10:14:59.999999999Z", 2701)]
    [InlineData("2030-03-14T10:14:59.99999999Z", 2701)]
    [InlineData("2030-03-14T10:15:00Z", 2700)]
    [InlineData("2030-03-14T10:15:00.000000050Z", 2700)]
    [InlineData("2030-03-14T10:15:00.999999999Z", 2700)]
    public async Task TryReserveAsync_RetryAfter_RoundsUpToTheNanosecond(string at, int expected)
    {
        Instant now = NodaTime.Text.InstantPattern.ExtendedIso.Parse(at).Value;
        var level = Level("a", new BudgetLimits(hour: 100, day: 10_000));
        (await Store.TryReserveAsync(new BudgetRequest(level, 100, LeaseDuration, at: now))).IsAdmitted.Should().BeTrue();

        var decision = await Store.TryReserveAsync(new BudgetRequest(level, 1, LeaseDuration, at: now));

        decision.Reason.Should().Be(BudgetReason.BudgetExceeded);
        decision.RetryAfter.Should().Be(TimeSpan.FromSeconds(expected));
    }
}
