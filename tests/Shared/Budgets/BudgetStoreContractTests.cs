using System.Globalization;
using Kars.Policy.Budgets;
using Microsoft.Extensions.Time.Testing;
using NodaTime;
using Xunit;

namespace Kars.Policy.Tests.Budgets;

/// <summary>
/// The behaviour every <see cref="BudgetStore"/> must have (DESIGN §4). Subclass it once per store and implement
/// <see cref="CreateStoreAsync"/>. Every call passes an explicit instant (<c>at</c>) taken from <see cref="Time"/>, so
/// stores whose own clock cannot be faked (Redis uses the server TIME) run the same suite; keys carry a per-test
/// prefix so a shared server needs no cleanup between tests.
/// </summary>
public abstract partial class BudgetStoreContractTests : IAsyncLifetime
{
    /// <summary>The lease duration the tests use.</summary>
    protected static readonly TimeSpan LeaseDuration = TimeSpan.FromMinutes(5);

    private BudgetStore? _store;

    /// <summary>Gets the fake clock. It starts on Wednesday 2030-01-02 10:15:00Z; tests only move it forward, and every
    /// instant used is in the future of the machines that run them (so a store whose keys expire with their window keeps them).</summary>
    protected FakeTimeProvider Time { get; } = new(new DateTimeOffset(2030, 1, 2, 10, 15, 0, TimeSpan.Zero));

    /// <summary>Gets a prefix unique to this test instance; every key starts with it.</summary>
    protected string Prefix { get; } = "t" + Guid.NewGuid().ToString("N")[..12] + ":";

    /// <summary>Gets the store under test.</summary>
    protected BudgetStore Store => _store ?? throw new InvalidOperationException("InitializeAsync has not run.");

    /// <summary>Gets the fake clock's current instant.</summary>
    protected Instant Now => Instant.FromDateTimeOffset(Time.GetUtcNow());

    /// <inheritdoc/>
    public virtual async Task InitializeAsync() => _store = await CreateStoreAsync(Time);

    /// <inheritdoc/>
    public virtual async Task DisposeAsync()
    {
        if (_store is not null)
        {
            await _store.DisposeAsync();
        }
    }

    /// <summary>Creates a fresh store. Stores that have their own clock get <paramref name="time"/>.</summary>
    /// <param name="time">The fake clock.</param>
    /// <returns>The store.</returns>
    protected abstract ValueTask<BudgetStore> CreateStoreAsync(TimeProvider time);

    /// <summary>Sets the fake clock to an ISO-8601 UTC instant such as <c>2030-01-31T23:59:59Z</c>.</summary>
    /// <param name="iso">The instant.</param>
    protected void SetTime(string iso)
        => Time.SetUtcNow(DateTimeOffset.Parse(iso, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AdjustToUniversal));

    /// <summary>Creates a level whose key carries <see cref="Prefix"/>.</summary>
    /// <param name="name">The key suffix.</param>
    /// <param name="limits">The limits.</param>
    /// <returns>The level.</returns>
    protected BudgetLevel Level(string name, BudgetLimits limits) => new(Prefix + name, limits);

    /// <summary>Reserves at <see cref="Now"/>.</summary>
    protected ValueTask<BudgetDecision> ReserveAsync(BudgetLevel level, long tokens, BudgetLevel? parent = null, BudgetMode mode = BudgetMode.Enforce)
        => Store.TryReserveAsync(new BudgetRequest(level, tokens, LeaseDuration, parent, mode, Now));

    /// <summary>Reads status at <see cref="Now"/>.</summary>
    protected ValueTask<BudgetStatus> StatusAsync(BudgetLevel level, BudgetLevel? parent = null)
        => Store.GetStatusAsync(level, parent, Now);

    /// <summary>Finds a window in a status.</summary>
    protected static BudgetWindowStatus Window(BudgetStatus status, BudgetWindow window)
        => status.Windows.Single(w => w.Window == window);

    private static long Remaining(BudgetDecision decision, BudgetWindow window)
    {
        decision.Remaining.TryGetValue(window, out long value).Should().BeTrue($"{window} is limited");
        return value;
    }

    [Fact]
    public async Task TryReserveAsync_WithinLimit_AdmitsAndHolds()
    {
        var level = Level("a", new BudgetLimits(day: 1000));

        var decision = await ReserveAsync(level, 300);

        decision.Reason.Should().Be(BudgetReason.Admitted);
        decision.IsAdmitted.Should().BeTrue();
        decision.WouldReject.Should().BeFalse();
        decision.Lease.IsValid.Should().BeTrue();
        decision.Lease.Tokens.Should().Be(300);
        decision.RetryAfter.Should().BeNull();
        Remaining(decision, BudgetWindow.Day).Should().Be(700);
        var day = Window(await StatusAsync(level), BudgetWindow.Day);
        day.Used.Should().Be(0);
        day.Held.Should().Be(300);
        day.Remaining.Should().Be(700);
        day.Limit.Should().Be(1000);
    }

    [Fact]
    public async Task TryReserveAsync_ExactlyTheRemainder_Admits()
    {
        var level = Level("a", new BudgetLimits(day: 1000));
        (await ReserveAsync(level, 600)).IsAdmitted.Should().BeTrue();

        var decision = await ReserveAsync(level, 400);

        decision.Reason.Should().Be(BudgetReason.Admitted);
        Remaining(decision, BudgetWindow.Day).Should().Be(0);
    }

    [Fact]
    public async Task TryReserveAsync_AboveRemainder_RejectsAndChangesNoCounter()
    {
        var level = Level("a", new BudgetLimits(hour: 5000, day: 1000, month: 50_000));
        (await ReserveAsync(level, 800)).IsAdmitted.Should().BeTrue();

        var decision = await ReserveAsync(level, 201);

        decision.Reason.Should().Be(BudgetReason.BudgetExceeded);
        decision.IsAdmitted.Should().BeFalse();
        decision.Lease.IsValid.Should().BeFalse();
        Remaining(decision, BudgetWindow.Day).Should().Be(200);
        var status = await StatusAsync(level);
        Window(status, BudgetWindow.Hour).Held.Should().Be(800);
        Window(status, BudgetWindow.Day).Held.Should().Be(800);
        Window(status, BudgetWindow.Month).Held.Should().Be(800);
        status.Windows.Sum(w => w.Used).Should().Be(0);
    }

    [Fact]
    public async Task TryReserveAsync_ZeroLimit_RejectsAnyTokens()
    {
        var level = Level("a", new BudgetLimits(week: 0));

        var decision = await ReserveAsync(level, 1);

        decision.Reason.Should().Be(BudgetReason.BudgetExceeded);
        decision.RetryAfter.Should().BeNull("a zero limit never admits a positive request");
        Remaining(decision, BudgetWindow.Week).Should().Be(0);
    }

    [Fact]
    public async Task TryReserveAsync_TokensAboveWholeLimit_RejectsWithoutRetryAfter()
    {
        SetTime("2030-03-14T10:15:00Z");
        var level = Level("a", new BudgetLimits(hour: 100, day: 10_000));

        var decision = await ReserveAsync(level, 101);

        decision.Reason.Should().Be(BudgetReason.BudgetExceeded);
        decision.IsAdmitted.Should().BeFalse();
        decision.RetryAfter.Should().BeNull("no rollover can make 101 tokens fit a 100-token hour");
        Remaining(decision, BudgetWindow.Hour).Should().Be(100);
        Window(await StatusAsync(level), BudgetWindow.Hour).Held.Should().Be(0);
    }

    [Fact]
    public async Task TryReserveAsync_TokensAboveParentWholeLimit_RejectsWithoutRetryAfter()
    {
        SetTime("2030-03-14T10:15:00Z");
        var tenant = Level("tenant", new BudgetLimits(month: 50));
        var a = Level("agent-a", new BudgetLimits(hour: 10, day: 1000));
        (await ReserveAsync(a, 10, tenant)).IsAdmitted.Should().BeTrue();

        var decision = await ReserveAsync(a, 51, tenant);

        decision.Reason.Should().Be(BudgetReason.BudgetExceeded);
        decision.RetryAfter.Should().BeNull("51 tokens never fit the tenant's 50-token month, although the hour rolls over");
    }

    [Fact]
    public async Task TryReserveAsync_ObserveAboveWholeLimit_StillAdmitsAsObserved()
    {
        var level = Level("a", new BudgetLimits(day: 100));

        var decision = await ReserveAsync(level, 101, mode: BudgetMode.Observe);

        decision.Reason.Should().Be(BudgetReason.Observed);
        decision.IsAdmitted.Should().BeTrue();
        decision.RetryAfter.Should().BeNull();
        Window(await StatusAsync(level), BudgetWindow.Day).Held.Should().Be(101);
    }

    [Fact]
    public async Task TryReserveAsync_NoLimits_AdmitsWithEmptyRemaining()
    {
        var level = Level("free", BudgetLimits.None);

        var decision = await ReserveAsync(level, 1_000_000_000_000);

        decision.Reason.Should().Be(BudgetReason.Admitted);
        decision.Remaining.IsEmpty.Should().BeTrue();
        (await StatusAsync(level)).Windows.Should().BeEmpty();
    }

    [Fact]
    public async Task TryReserveAsync_CountersAbove32Bits_AreExact()
    {
        long big = 3L * int.MaxValue;
        var level = Level("a", new BudgetLimits(year: big + 10));

        (await ReserveAsync(level, big)).IsAdmitted.Should().BeTrue();
        var decision = await ReserveAsync(level, 11);

        decision.Reason.Should().Be(BudgetReason.BudgetExceeded);
        Remaining(decision, BudgetWindow.Year).Should().Be(10);
    }

    [Fact]
    public async Task TryReserveAsync_AboveMaxTokens_ThrowsAndHoldsNothing()
    {
        var level = Level("a", BudgetLimits.None);
        var limited = Level("b", new BudgetLimits(day: 1000));

        var above = async () => await Store.TryReserveAsync(new BudgetRequest(level, BudgetStore.MaxTokens + 1, LeaseDuration, at: Now));
        var huge = async () => await Store.TryReserveAsync(new BudgetRequest(limited, long.MaxValue, LeaseDuration, mode: BudgetMode.Observe, at: Now));

        await above.Should().ThrowAsync<ArgumentOutOfRangeException>();
        await huge.Should().ThrowAsync<ArgumentOutOfRangeException>();
        Window(await StatusAsync(limited), BudgetWindow.Day).Held.Should().Be(0);
        (await ReserveAsync(level, BudgetStore.MaxTokens)).Reason.Should().Be(BudgetReason.Admitted);
    }

    [Fact]
    public async Task SettleAsync_AboveMaxTokens_ThrowsAndChargesNothing()
    {
        var level = Level("a", new BudgetLimits(day: 1000));
        var a = await ReserveAsync(level, 10);
        (await ReserveAsync(level, 10)).IsAdmitted.Should().BeTrue();

        var wrap = async () => await Store.SettleAsync(a.Lease.Id, long.MaxValue, Now);
        var above = async () => await Store.SettleAsync(a.Lease.Id, BudgetStore.MaxTokens + 1, Now);

        await wrap.Should().ThrowAsync<ArgumentOutOfRangeException>();
        await above.Should().ThrowAsync<ArgumentOutOfRangeException>();
        var day = Window(await StatusAsync(level), BudgetWindow.Day);
        day.Used.Should().Be(0);
        day.Held.Should().Be(20);
        (await ReserveAsync(level, 981)).Reason.Should().Be(BudgetReason.BudgetExceeded);
        (await ReserveAsync(level, 980)).Reason.Should().Be(BudgetReason.Admitted);
    }

    [Fact]
    public async Task SettleAsync_ManySettlementsAtMaxTokens_SaturateAndNeverAdmit()
    {
        var level = Level("a", new BudgetLimits(day: 1000));
        var tenant = Level("tenant", BudgetLimits.None);
        const int Batch = 64;
        const int Batches = 17; // 1088 × 2^53 > long.MaxValue: the counters would wrap without saturation

        for (int b = 0; b < Batches; b++)
        {
            var decisions = await Task.WhenAll(Enumerable.Range(0, Batch).Select(
                _ => Store.TryReserveAsync(new BudgetRequest(level, 0, LeaseDuration, tenant, BudgetMode.Observe, Now)).AsTask()));
            await Task.WhenAll(decisions.Select(d => Store.SettleAsync(d.Lease.Id, BudgetStore.MaxTokens, Now).AsTask()));
        }

        var decision = await ReserveAsync(level, 1, tenant);
        var zero = await ReserveAsync(level, 0, tenant);

        decision.Reason.Should().Be(BudgetReason.BudgetExceeded);
        zero.Reason.Should().Be(BudgetReason.BudgetExceeded);
        Remaining(decision, BudgetWindow.Day).Should().Be(0);
        var day = Window(await StatusAsync(level, tenant), BudgetWindow.Day);
        day.Used.Should().Be(long.MaxValue);
        day.Remaining.Should().Be(0);
        (await Store.GetStatusAsync(new BudgetLevel(tenant.Key, new BudgetLimits(day: long.MaxValue)), at: Now)).Windows.Single().Used.Should().Be(long.MaxValue);
    }

    [Fact]
    public async Task TryReserveAsync_ObserveHoldsNearLongMax_RejectsInsteadOfWrapping()
    {
        var level = Level("a", new BudgetLimits(day: 1000));
        const int Fit = 1023; // 1023 × 2^53 = long.MaxValue + 1 − 2^53: one more maximal hold would wrap

        var decisions = await Task.WhenAll(Enumerable.Range(0, Fit).Select(
            _ => Store.TryReserveAsync(new BudgetRequest(level, BudgetStore.MaxTokens, LeaseDuration, mode: BudgetMode.Observe, at: Now)).AsTask()));
        var overflow = await ReserveAsync(level, BudgetStore.MaxTokens, mode: BudgetMode.Observe);

        decisions.Should().OnlyContain(d => d.Reason == BudgetReason.Observed);
        overflow.Reason.Should().Be(BudgetReason.BudgetExceeded);
        overflow.IsAdmitted.Should().BeFalse();
        var day = Window(await StatusAsync(level), BudgetWindow.Day);
        day.Held.Should().Be(Fit * BudgetStore.MaxTokens);
        day.Remaining.Should().Be(0);
        (await ReserveAsync(level, 0)).Reason.Should().Be(BudgetReason.BudgetExceeded);
    }

    [Fact]
    public async Task SettleAsync_BelowHold_ReplacesHoldWithActual()
    {
        var level = Level("a", new BudgetLimits(day: 1000));
        var decision = await ReserveAsync(level, 500);

        var settlement = await Store.SettleAsync(decision.Lease.Id, 200, Now);

        settlement.Status.Should().Be(BudgetSettlementStatus.Settled);
        settlement.Charged.Should().Be(200);
        var day = Window(await StatusAsync(level), BudgetWindow.Day);
        day.Used.Should().Be(200);
        day.Held.Should().Be(0);
        day.Remaining.Should().Be(800);
    }

    [Fact]
    public async Task SettleAsync_Twice_IsIdempotent()
    {
        var level = Level("a", new BudgetLimits(day: 1000));
        var decision = await ReserveAsync(level, 500);
        await Store.SettleAsync(decision.Lease.Id, 200, Now);

        var second = await Store.SettleAsync(decision.Lease.Id, 900, Now);
        var abandon = await Store.AbandonAsync(decision.Lease.Id, Now);

        second.Status.Should().Be(BudgetSettlementStatus.AlreadySettled);
        abandon.Status.Should().Be(BudgetSettlementStatus.AlreadySettled);
        var day = Window(await StatusAsync(level), BudgetWindow.Day);
        day.Used.Should().Be(200);
        day.Held.Should().Be(0);
    }

    [Fact]
    public async Task SettleAsync_AboveHold_ChargesExcessAndRemainingNeverNegative()
    {
        var level = Level("a", new BudgetLimits(day: 1000));
        var decision = await ReserveAsync(level, 900);

        var settlement = await Store.SettleAsync(decision.Lease.Id, 1500, Now);

        settlement.Charged.Should().Be(1500);
        var day = Window(await StatusAsync(level), BudgetWindow.Day);
        day.Used.Should().Be(1500);
        day.Remaining.Should().Be(0);
        var next = await ReserveAsync(level, 1);
        next.Reason.Should().Be(BudgetReason.BudgetExceeded);
        Remaining(next, BudgetWindow.Day).Should().Be(0);
    }

    [Fact]
    public async Task SettleAsync_UnknownLease_ReportsUnknown()
    {
        var settlement = await Store.SettleAsync(987_654_321, 10, Now);

        settlement.Status.Should().Be(BudgetSettlementStatus.UnknownLease);
        settlement.Charged.Should().Be(0);
    }

    [Fact]
    public async Task AbandonAsync_OpenLease_ChargesFullHold()
    {
        var level = Level("a", new BudgetLimits(day: 1000));
        var decision = await ReserveAsync(level, 450);

        var settlement = await Store.AbandonAsync(decision.Lease.Id, Now);

        settlement.Status.Should().Be(BudgetSettlementStatus.Settled);
        settlement.Charged.Should().Be(450);
        var day = Window(await StatusAsync(level), BudgetWindow.Day);
        day.Used.Should().Be(450);
        day.Held.Should().Be(0);
        (await Store.SettleAsync(decision.Lease.Id, 10, Now)).Status.Should().Be(BudgetSettlementStatus.AlreadySettled);
    }

    [Fact]
    public async Task LeaseDisposeAsync_Unsettled_ChargesFullHold()
    {
        var level = Level("a", new BudgetLimits(day: 1000));
        var decision = await ReserveAsync(level, 333);

        await using (decision.Lease)
        {
        }

        var day = Window(await StatusAsync(level), BudgetWindow.Day);
        day.Used.Should().Be(333);
        day.Held.Should().Be(0);
    }

    [Fact]
    public async Task LeaseDisposeAsync_AfterSettle_ChangesNothing()
    {
        var level = Level("a", new BudgetLimits(day: 1000));
        var decision = await ReserveAsync(level, 333);
        await Store.SettleAsync(decision.Lease.Id, 3, Now);

        await decision.Lease.DisposeAsync();

        Window(await StatusAsync(level), BudgetWindow.Day).Used.Should().Be(3);
    }

    [Fact]
    public async Task Lease_NotSettledBeforeExpiry_IsChargedFullHold()
    {
        var level = Level("a", new BudgetLimits(day: 1000));
        var decision = await ReserveAsync(level, 400);
        decision.Lease.ExpiresAt.Should().Be(Now + Duration.FromTimeSpan(LeaseDuration));

        Time.Advance(LeaseDuration + TimeSpan.FromSeconds(1));
        var day = Window(await StatusAsync(level), BudgetWindow.Day);
        var late = await Store.SettleAsync(decision.Lease.Id, 100, Now);

        day.Used.Should().Be(400);
        day.Held.Should().Be(0);
        late.Status.Should().Be(BudgetSettlementStatus.Expired);
        late.Charged.Should().Be(400);
        Window(await StatusAsync(level), BudgetWindow.Day).Used.Should().Be(400);
    }

    [Fact]
    public async Task Lease_ExpiredHold_DoesNotBlockAfterCharge()
    {
        var level = Level("a", new BudgetLimits(day: 1000));
        (await ReserveAsync(level, 700)).IsAdmitted.Should().BeTrue();
        Time.Advance(LeaseDuration + TimeSpan.FromSeconds(1));

        var decision = await ReserveAsync(level, 300);

        decision.Reason.Should().Be(BudgetReason.Admitted);
        Remaining(decision, BudgetWindow.Day).Should().Be(0);
    }

    [Fact]
    public async Task SettleAsync_AfterMidnight_ChargesTheDayOfAdmission()
    {
        SetTime("2030-03-14T23:59:58Z");
        var level = Level("a", new BudgetLimits(day: 1000, month: 100_000));
        var admittedAt = Now;
        var decision = await ReserveAsync(level, 500);

        SetTime("2030-03-15T00:00:03Z");
        await Store.SettleAsync(decision.Lease.Id, 700, Now);

        var today = await StatusAsync(level);
        Window(today, BudgetWindow.Day).Used.Should().Be(0);
        Window(today, BudgetWindow.Day).Held.Should().Be(0);
        Window(today, BudgetWindow.Month).Used.Should().Be(700);
        var yesterday = await Store.GetStatusAsync(level, null, admittedAt);
        Window(yesterday, BudgetWindow.Day).Used.Should().Be(700);
        Window(yesterday, BudgetWindow.Day).Held.Should().Be(0);
    }

    [Theory]
    [InlineData("2030-03-14T23:59:59Z", "2030-03-15T00:00:00Z", BudgetWindow.Day)]
    [InlineData("2030-03-14T10:59:59.999Z", "2030-03-14T11:00:00Z", BudgetWindow.Hour)]
    [InlineData("2030-01-31T23:59:59Z", "2030-02-01T00:00:00Z", BudgetWindow.Month)]
    [InlineData("2032-02-28T23:59:59Z", "2032-02-29T00:00:00Z", BudgetWindow.Day)]
    [InlineData("2032-02-29T23:59:59Z", "2032-03-01T00:00:00Z", BudgetWindow.Month)]
    [InlineData("2030-12-31T23:59:59Z", "2031-01-01T00:00:00Z", BudgetWindow.Year)]
    [InlineData("2030-03-17T23:59:59Z", "2030-03-18T00:00:00Z", BudgetWindow.Week)]
    [InlineData("2032-12-31T12:00:00Z", "2033-01-03T00:00:00Z", BudgetWindow.Week)]
    public async Task TryReserveAsync_AfterRollover_StartsAFreshPeriod(string before, string after, BudgetWindow window)
    {
        var limits = window switch
        {
            BudgetWindow.Hour => new BudgetLimits(hour: 100),
            BudgetWindow.Day => new BudgetLimits(day: 100),
            BudgetWindow.Week => new BudgetLimits(week: 100),
            BudgetWindow.Month => new BudgetLimits(month: 100),
            _ => new BudgetLimits(year: 100),
        };
        var level = Level("a", limits);
        SetTime(before);
        (await ReserveAsync(level, 100)).IsAdmitted.Should().BeTrue();
        (await ReserveAsync(level, 1)).IsAdmitted.Should().BeFalse();

        SetTime(after);
        var decision = await ReserveAsync(level, 100);

        decision.Reason.Should().Be(BudgetReason.Admitted);
        var status = Window(await StatusAsync(level), window);
        status.Start.Should().Be(Instant.FromDateTimeOffset(DateTimeOffset.Parse(after, CultureInfo.InvariantCulture)));
        status.Held.Should().Be(100);
    }

    [Fact]
    public async Task TryReserveAsync_DayRollover_KeepsMonthCounting()
    {
        SetTime("2030-03-14T23:59:59Z");
        var level = Level("a", new BudgetLimits(day: 100, month: 150));
        (await ReserveAsync(level, 100)).IsAdmitted.Should().BeTrue();

        SetTime("2030-03-15T00:00:00Z");
        var decision = await ReserveAsync(level, 60);

        decision.Reason.Should().Be(BudgetReason.BudgetExceeded);
        Remaining(decision, BudgetWindow.Day).Should().Be(100);
        Remaining(decision, BudgetWindow.Month).Should().Be(50);
    }

    [Fact]
    public async Task GetStatusAsync_WindowBounds_AreUtcCalendarPeriods()
    {
        SetTime("2032-12-29T13:45:10Z"); // Wednesday of ISO week 53 of 2032
        var level = Level("a", new BudgetLimits(hour: 1, day: 1, week: 1, month: 1, year: 1));

        var status = await StatusAsync(level);

        string Bounds(BudgetWindow w) => $"{Window(status, w).Start}/{Window(status, w).End}";
        Bounds(BudgetWindow.Hour).Should().Be("2032-12-29T13:00:00Z/2032-12-29T14:00:00Z");
        Bounds(BudgetWindow.Day).Should().Be("2032-12-29T00:00:00Z/2032-12-30T00:00:00Z");
        Bounds(BudgetWindow.Week).Should().Be("2032-12-27T00:00:00Z/2033-01-03T00:00:00Z");
        Bounds(BudgetWindow.Month).Should().Be("2032-12-01T00:00:00Z/2033-01-01T00:00:00Z");
        Bounds(BudgetWindow.Year).Should().Be("2032-01-01T00:00:00Z/2033-01-01T00:00:00Z");
        status.Windows.Select(w => w.Window).Should().Equal(BudgetWindow.Hour, BudgetWindow.Day, BudgetWindow.Week, BudgetWindow.Month, BudgetWindow.Year);
    }

    [Fact]
    public async Task TryReserveAsync_ParentExhausted_RejectsChildWithRoom()
    {
        var tenant = Level("tenant", new BudgetLimits(day: 1000));
        var a = Level("agent-a", new BudgetLimits(day: 800));
        var b = Level("agent-b", new BudgetLimits(day: 800));
        (await ReserveAsync(a, 700, tenant)).IsAdmitted.Should().BeTrue();

        var rejected = await ReserveAsync(b, 400, tenant);
        var admitted = await ReserveAsync(b, 300, tenant);

        rejected.Reason.Should().Be(BudgetReason.BudgetExceeded);
        Remaining(rejected, BudgetWindow.Day).Should().Be(300);
        admitted.Reason.Should().Be(BudgetReason.Admitted);
        Window(await StatusAsync(b, tenant), BudgetWindow.Day).Held.Should().Be(300);
        Window(await StatusAsync(tenant), BudgetWindow.Day).Held.Should().Be(1000);
    }

    [Fact]
    public async Task TryReserveAsync_ChildExhausted_LeavesParentUntouched()
    {
        var tenant = Level("tenant", new BudgetLimits(day: 1000));
        var a = Level("agent-a", new BudgetLimits(day: 100));

        var decision = await ReserveAsync(a, 101, tenant);

        decision.Reason.Should().Be(BudgetReason.BudgetExceeded);
        Window(await StatusAsync(tenant), BudgetWindow.Day).Held.Should().Be(0);
    }

    [Fact]
    public async Task TryReserveAsync_ParentLimitsOtherWindow_ReportsBoth()
    {
        var tenant = Level("tenant", new BudgetLimits(month: 5000));
        var a = Level("agent-a", new BudgetLimits(day: 1000));

        var decision = await ReserveAsync(a, 100, tenant);

        Remaining(decision, BudgetWindow.Day).Should().Be(900);
        Remaining(decision, BudgetWindow.Month).Should().Be(4900);
        decision.Remaining.Count.Should().Be(2);
        var status = await StatusAsync(a, tenant);
        status.Windows.Select(w => w.Window).Should().Equal(BudgetWindow.Day, BudgetWindow.Month);
        Window(status, BudgetWindow.Month).Limit.Should().BeNull();
        Window(status, BudgetWindow.Month).Remaining.Should().Be(4900);
    }

    [Fact]
    public async Task SettleAsync_WithParent_ChargesBothLevels()
    {
        var tenant = Level("tenant", new BudgetLimits(day: 1000));
        var a = Level("agent-a", new BudgetLimits(day: 1000));
        var decision = await ReserveAsync(a, 500, tenant);

        await Store.SettleAsync(decision.Lease.Id, 120, Now);

        Window(await StatusAsync(a, tenant), BudgetWindow.Day).Used.Should().Be(120);
        var parent = Window(await StatusAsync(tenant), BudgetWindow.Day);
        parent.Used.Should().Be(120);
        parent.Held.Should().Be(0);
    }

    [Fact]
    public async Task TryReserveAsync_ObserveOverLimit_AdmitsCountsAndReportsObserved()
    {
        var level = Level("a", new BudgetLimits(day: 100));

        var decision = await ReserveAsync(level, 150, mode: BudgetMode.Observe);

        decision.Reason.Should().Be(BudgetReason.Observed);
        decision.IsAdmitted.Should().BeTrue();
        decision.WouldReject.Should().BeTrue();
        decision.Lease.IsValid.Should().BeTrue();
        Remaining(decision, BudgetWindow.Day).Should().Be(0);
        var day = Window(await StatusAsync(level), BudgetWindow.Day);
        day.Held.Should().Be(150);
        day.Remaining.Should().Be(0);
    }

    [Fact]
    public async Task TryReserveAsync_ObserveWithinLimit_ReportsAdmitted()
    {
        var level = Level("a", new BudgetLimits(day: 100));

        var decision = await ReserveAsync(level, 50, mode: BudgetMode.Observe);

        decision.Reason.Should().Be(BudgetReason.Admitted);
        decision.WouldReject.Should().BeFalse();
    }

    [Theory]
    [InlineData("2030-03-14T23:59:30.200Z", 30)]
    [InlineData("2030-03-14T23:59:59.999Z", 1)]
    [InlineData("2030-03-14T22:00:00Z", 7200)]
    public async Task TryReserveAsync_DayBlocked_RetryAfterIsWholeSecondsToMidnight(string at, int expectedSeconds)
    {
        SetTime(at);
        var level = Level("a", new BudgetLimits(hour: 1_000_000, day: 10));
        (await ReserveAsync(level, 5)).IsAdmitted.Should().BeTrue();

        var decision = await ReserveAsync(level, 6);

        decision.Reason.Should().Be(BudgetReason.BudgetExceeded);
        decision.RetryAfter.Should().Be(TimeSpan.FromSeconds(expectedSeconds));
    }

    [Fact]
    public async Task TryReserveAsync_OnlyHourBlocks_RetryAfterIsNextHour()
    {
        SetTime("2030-03-14T10:15:00Z");
        var level = Level("a", new BudgetLimits(hour: 100, day: 10_000));
        (await ReserveAsync(level, 90)).IsAdmitted.Should().BeTrue();

        var decision = await ReserveAsync(level, 20);

        decision.RetryAfter.Should().Be(TimeSpan.FromMinutes(45));
    }

    [Fact]
    public async Task TryReserveAsync_HourAndMonthBlock_RetryAfterWaitsForBoth()
    {
        SetTime("2030-03-31T10:00:00Z");
        var early = Level("early", new BudgetLimits(hour: 100, month: 100));
        (await ReserveAsync(early, 100)).IsAdmitted.Should().BeTrue();
        var earlyDecision = await ReserveAsync(early, 1);
        SetTime("2030-03-31T23:30:00Z");
        var late = Level("late", new BudgetLimits(hour: 100, month: 100));
        (await ReserveAsync(late, 100)).IsAdmitted.Should().BeTrue();

        var lateDecision = await ReserveAsync(late, 1);

        earlyDecision.RetryAfter.Should().Be(TimeSpan.FromHours(14));
        lateDecision.RetryAfter.Should().Be(TimeSpan.FromMinutes(30));
    }

    [Fact]
    public async Task TryReserveAsync_ParentBlocks_RetryAfterUsesParentWindow()
    {
        SetTime("2030-03-14T10:15:00Z");
        var tenant = Level("tenant", new BudgetLimits(hour: 10));
        var a = Level("agent-a", new BudgetLimits(day: 1000));
        (await ReserveAsync(a, 6, tenant)).IsAdmitted.Should().BeTrue();

        var decision = await ReserveAsync(a, 5, tenant);

        decision.RetryAfter.Should().Be(TimeSpan.FromMinutes(45));
    }

    [Fact]
    public async Task TryReserveAsync_Cancelled_ThrowsAndReservesNothing()
    {
        var level = Level("a", new BudgetLimits(day: 1000));
        using var cts = new CancellationTokenSource();
        await cts.CancelAsync();

        var act = async () => await Store.TryReserveAsync(new BudgetRequest(level, 10, LeaseDuration, at: Now), cts.Token);

        await act.Should().ThrowAsync<OperationCanceledException>();
        Window(await StatusAsync(level), BudgetWindow.Day).Held.Should().Be(0);
    }

    [Fact]
    public async Task TryReserveAsync_InvalidRequest_Throws()
    {
        var level = Level("a", new BudgetLimits(day: 1000));

        var negative = async () => await Store.TryReserveAsync(new BudgetRequest(level, -1, LeaseDuration, at: Now));
        var noLease = async () => await Store.TryReserveAsync(new BudgetRequest(level, 1, TimeSpan.Zero, at: Now));
        var empty = async () => await Store.TryReserveAsync(default);
        var selfParent = async () => await Store.TryReserveAsync(new BudgetRequest(level, 1, LeaseDuration, level, at: Now));

        await negative.Should().ThrowAsync<ArgumentException>();
        await noLease.Should().ThrowAsync<ArgumentException>();
        await empty.Should().ThrowAsync<ArgumentException>();
        await selfParent.Should().ThrowAsync<ArgumentException>();
    }

    [Fact]
    public async Task LeaseIds_AreUniqueAndPositive()
    {
        var level = Level("a", BudgetLimits.None);
        var ids = new HashSet<long>();

        for (int i = 0; i < 50; i++)
        {
            var decision = await ReserveAsync(level, 1);
            decision.Lease.Id.Should().BePositive();
            ids.Add(decision.Lease.Id).Should().BeTrue();
        }
    }

    [Fact]
    public async Task TryReserveAsync_64ConcurrentCallers_NeverOverspend()
    {
        var level = Level("hot", new BudgetLimits(hour: 1_000_000, day: 1000, month: 1_000_000));
        var now = Now;
        int admitted = 0;

        var callers = Enumerable.Range(0, 64).Select(_ => Task.Run(async () =>
        {
            for (int i = 0; i < 10; i++)
            {
                var decision = await Store.TryReserveAsync(new BudgetRequest(level, 7, LeaseDuration, at: now));
                if (decision.IsAdmitted)
                {
                    Interlocked.Increment(ref admitted);
                }
            }
        }));
        await Task.WhenAll(callers);

        admitted.Should().Be(1000 / 7);
        var day = Window(await StatusAsync(level), BudgetWindow.Day);
        day.Held.Should().Be(admitted * 7L);
        day.Held.Should().BeLessThanOrEqualTo(1000);
    }

    [Fact]
    public async Task TryReserveAsync_64ConcurrentCallersSharingAParent_NeverOverspendTheParent()
    {
        var tenant = Level("tenant", new BudgetLimits(day: 500));
        var children = Enumerable.Range(0, 8).Select(i => Level("agent-" + i, new BudgetLimits(day: 100))).ToArray();
        var now = Now;
        int admitted = 0;

        var callers = Enumerable.Range(0, 64).Select(c => Task.Run(async () =>
        {
            for (int i = 0; i < 10; i++)
            {
                var decision = await Store.TryReserveAsync(new BudgetRequest(children[c % 8], 5, LeaseDuration, tenant, at: now));
                if (decision.IsAdmitted)
                {
                    Interlocked.Increment(ref admitted);
                    if (i % 2 == 0)
                    {
                        await Store.SettleAsync(decision.Lease.Id, 5, now);
                    }
                }
            }
        }));
        await Task.WhenAll(callers);

        admitted.Should().Be(100);
        var parent = Window(await StatusAsync(tenant), BudgetWindow.Day);
        (parent.Used + parent.Held).Should().Be(500);
        foreach (var child in children)
        {
            var day = Window(await StatusAsync(child, tenant), BudgetWindow.Day);
            (day.Used + day.Held).Should().BeLessThanOrEqualTo(100);
        }
    }
}
