using Kars.Policy.Budgets;
using Microsoft.Extensions.Time.Testing;
using NodaTime;

namespace Kars.Policy.Tests.Budgets;

public sealed class BudgetMeterTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2030, 4, 1, 9, 30, 0, TimeSpan.Zero));

    private static BudgetPolicy Policy(BudgetMode mode = BudgetMode.Enforce) => new(
        new BudgetLimits(day: 1000),
        new Dictionary<string, BudgetKeyPolicy>
        {
            ["tenant"] = new(new BudgetLimits(day: 500)),
            ["agent"] = new(new BudgetLimits(hour: 400), "tenant"),
        },
        mode,
        perRequestTokens: 300);

    [Fact]
    public async Task TryReserveAsync_AbovePerRequestCap_RejectsNotRetryableWithoutTouchingTheStore()
    {
        var store = new InMemoryBudgetStore(_time);
        var meter = new BudgetMeter(store, Policy());

        var decision = await meter.TryReserveAsync("agent", 301);

        decision.Reason.Should().Be(BudgetReason.PerRequestTokensExceeded);
        decision.RetryAfter.Should().BeNull();
        decision.IsAdmitted.Should().BeFalse();
        (await meter.GetStatusAsync("agent")).Windows.Should().OnlyContain(w => w.Held == 0 && w.Used == 0);
    }

    [Fact]
    public async Task TryReserveAsync_AtPerRequestCap_Admits()
    {
        var meter = new BudgetMeter(new InMemoryBudgetStore(_time), Policy());

        (await meter.TryReserveAsync("agent", 300)).Reason.Should().Be(BudgetReason.Admitted);
    }

    [Fact]
    public async Task TryReserveAsync_ListedKey_AppliesOwnAndParentLimits()
    {
        var meter = new BudgetMeter(new InMemoryBudgetStore(_time), Policy());

        var decision = await meter.TryReserveAsync("agent", 250);

        decision.Remaining.TryGetValue(BudgetWindow.Hour, out long hour).Should().BeTrue();
        hour.Should().Be(150);
        decision.Remaining.TryGetValue(BudgetWindow.Day, out long day).Should().BeTrue();
        day.Should().Be(250);
        (await meter.TryReserveAsync("agent", 200)).Reason.Should().Be(BudgetReason.BudgetExceeded);
    }

    [Fact]
    public async Task TryReserveAsync_UnlistedKeys_EachGetTheDefaultLimits()
    {
        var meter = new BudgetMeter(new InMemoryBudgetStore(_time), Policy());

        for (int i = 0; i < 3; i++)
        {
            (await meter.TryReserveAsync("a", 300)).IsAdmitted.Should().BeTrue();
        }

        (await meter.TryReserveAsync("a", 200)).Reason.Should().Be(BudgetReason.BudgetExceeded);
        (await meter.TryReserveAsync("b", 300)).Reason.Should().Be(BudgetReason.Admitted);
    }

    [Fact]
    public async Task TryReserveAsync_ObserveAboveCap_AdmitsAsObserved()
    {
        var meter = new BudgetMeter(new InMemoryBudgetStore(_time), Policy(BudgetMode.Observe));

        var decision = await meter.TryReserveAsync("x", 301);

        decision.Reason.Should().Be(BudgetReason.Observed);
        decision.Lease.IsValid.Should().BeTrue();
    }

    [Fact]
    public async Task TryReserveAsync_AboveMaxTokens_ThrowsWithoutTouchingTheStore()
    {
        var store = new InMemoryBudgetStore(_time);
        var meter = new BudgetMeter(store, new BudgetPolicy(new BudgetLimits(day: 10)));

        var act = async () => await meter.TryReserveAsync("k", BudgetStore.MaxTokens + 1);
        var agentControlled = await meter.TryReserveAsync("k", BudgetReservation.Compute(10, long.MaxValue, null, null, 0));

        await act.Should().ThrowAsync<ArgumentOutOfRangeException>();
        agentControlled.Reason.Should().Be(BudgetReason.BudgetExceeded);
        agentControlled.RetryAfter.Should().BeNull();
        (await meter.GetStatusAsync("k")).Windows.Single().Held.Should().Be(0);
    }

    [Fact]
    public async Task TryReserveAsync_ObserveAboveCapWhenStoreCannotHold_StaysRejected()
    {
        var policy = new BudgetPolicy(new BudgetLimits(day: 10), mode: BudgetMode.Observe, perRequestTokens: 5);
        var meter = new BudgetMeter(new InMemoryBudgetStore(_time), policy);
        for (int i = 0; i < 1023; i++)
        {
            (await meter.TryReserveAsync("k", BudgetStore.MaxTokens)).Reason.Should().Be(BudgetReason.Observed);
        }

        var decision = await meter.TryReserveAsync("k", BudgetStore.MaxTokens);

        decision.Reason.Should().Be(BudgetReason.BudgetExceeded);
        decision.IsAdmitted.Should().BeFalse();
        decision.Lease.IsValid.Should().BeFalse();
    }

    [Fact]
    public async Task TryReserveAsync_StoreClock_UsesInjectedTimeProvider()
    {
        var meter = new BudgetMeter(new InMemoryBudgetStore(_time), new BudgetPolicy(new BudgetLimits(hour: 10)));
        (await meter.TryReserveAsync("k", 10)).IsAdmitted.Should().BeTrue();

        var rejected = await meter.TryReserveAsync("k", 1);
        _time.Advance(TimeSpan.FromMinutes(30));
        var next = await meter.TryReserveAsync("k", 10);

        rejected.RetryAfter.Should().Be(TimeSpan.FromMinutes(30));
        next.Reason.Should().Be(BudgetReason.Admitted);
        (await meter.GetStatusAsync("k")).At.Should().Be(Instant.FromDateTimeOffset(_time.GetUtcNow()));
    }

    [Fact]
    public async Task Policy_Reloaded_NewMeterOverSameStoreKeepsCounters()
    {
        var store = new InMemoryBudgetStore(_time);
        var meter = new BudgetMeter(store, new BudgetPolicy(new BudgetLimits(day: 30)));
        (await meter.TryReserveAsync("k", 20)).IsAdmitted.Should().BeTrue();
        (await meter.TryReserveAsync("k", 20)).IsAdmitted.Should().BeFalse();

        // Reload = a new meter over the same store: the new limits apply to the existing counters.
        var reloaded = new BudgetMeter(store, new BudgetPolicy(new BudgetLimits(day: 100)));

        BudgetDecision next = await reloaded.TryReserveAsync("k", 20);
        next.IsAdmitted.Should().BeTrue();
        next.Remaining.TryGetValue(BudgetWindow.Day, out long left).Should().BeTrue();
        left.Should().Be(60);
        meter.Policy.Should().NotBeSameAs(reloaded.Policy);
    }

    [Fact]
    public void BudgetPolicy_InvalidParents_Throw()
    {
        var unknown = () => new BudgetPolicy(keys: new Dictionary<string, BudgetKeyPolicy> { ["a"] = new(BudgetLimits.None, "missing") });
        var self = () => new BudgetPolicy(keys: new Dictionary<string, BudgetKeyPolicy> { ["a"] = new(BudgetLimits.None, "a") });
        var deep = () => new BudgetPolicy(keys: new Dictionary<string, BudgetKeyPolicy>
        {
            ["a"] = new(BudgetLimits.None, "b"),
            ["b"] = new(BudgetLimits.None, "c"),
            ["c"] = new(BudgetLimits.None),
        });

        unknown.Should().Throw<ArgumentException>().WithMessage("*not listed*");
        self.Should().Throw<ArgumentException>().WithMessage("*itself*");
        deep.Should().Throw<ArgumentException>().WithMessage("*one level*");
    }
}
