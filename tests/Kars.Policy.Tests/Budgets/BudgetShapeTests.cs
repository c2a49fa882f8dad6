using Kars.Policy.Budgets;
using Microsoft.Extensions.Time.Testing;
using NodaTime;

namespace Kars.Policy.Tests.Budgets;

/// <summary>Leases that cost nothing to dispose once settled, decisions that carry the HTTP figures, disposable
/// stores, bounded state (issue 8, Budgets).</summary>
public sealed class BudgetShapeTests
{
    private static readonly Instant Noon = Instant.FromUtc(2030, 4, 1, 12, 0);
    private readonly FakeTimeProvider _time = new(Noon.ToDateTimeOffset());

    // ----- Leases -----

    [Fact]
    public async Task Lease_SettledThenDisposed_CallsTheStoreOnce()
    {
        var store = new CountingStore(new InMemoryBudgetStore(_time));
        BudgetDecision decision = await store.TryReserveAsync(Request(Level("a", day: 100), 10));

        await using (decision.Lease)
        {
            (await decision.Lease.SettleAsync(7)).Status.Should().Be(BudgetSettlementStatus.Settled);
        }

        store.Settles.Should().Be(1);
        store.Abandons.Should().Be(0, "disposing a settled lease must not call the store");
    }

    [Fact]
    public async Task Lease_DisposedUnsettled_AbandonsOnceAcrossCopies()
    {
        var store = new CountingStore(new InMemoryBudgetStore(_time));
        BudgetDecision decision = await store.TryReserveAsync(Request(Level("a", day: 100), 10));
        BudgetLease copy = decision.Lease;

        await decision.Lease.DisposeAsync();
        await copy.DisposeAsync();

        store.Abandons.Should().Be(1);
        (await store.GetStatusAsync(Level("a", day: 100))).Windows.Single().Used.Should().Be(10, "an unsettled lease is charged its hold");
    }

    [Fact]
    public async Task Lease_SettledByIdThroughTheStore_DisposeCallsNothing()
    {
        var store = new CountingStore(new InMemoryBudgetStore(_time));
        BudgetDecision decision = await store.TryReserveAsync(Request(Level("a", day: 100), 10));

        await store.SettleAsync(decision.Lease.Id, 3);
        await decision.Lease.DisposeAsync();

        store.Abandons.Should().Be(0);
    }

    [Fact]
    public async Task Lease_SettlementCancelledBeforeTheStore_DisposeStillCharges()
    {
        var store = new CountingStore(new InMemoryBudgetStore(_time));
        BudgetDecision decision = await store.TryReserveAsync(Request(Level("a", day: 100), 10));
        using var cancelled = new CancellationTokenSource();
        await cancelled.CancelAsync();

        var settle = async () => await decision.Lease.SettleAsync(3, cancelled.Token);
        await settle.Should().ThrowAsync<OperationCanceledException>();
        await decision.Lease.DisposeAsync();

        store.Abandons.Should().Be(1, "a settlement that never reached the store does not close the lease");
    }

    [Fact]
    public async Task Lease_Default_DisposeDoesNothing()
    {
        await default(BudgetLease).DisposeAsync();
        default(BudgetLease).IsValid.Should().BeFalse();
    }

    [Fact]
    public void Lease_HasNoPublicConstructor_OnlyStoresCreateThem()
    {
        typeof(BudgetLease).GetConstructors().Should().BeEmpty("a lease cannot be forged from public constructors");
        typeof(BudgetStore).GetMethod("CreateLease", System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.NonPublic)!
            .IsFamily.Should().BeTrue("only BudgetStore subclasses create leases, and only for themselves");
    }

    // ----- Decisions -----

    [Fact]
    public async Task Decision_Admitted_CarriesBindingLimitRemainingAndResetPerWindow()
    {
        var store = new InMemoryBudgetStore(_time);
        var tenant = Level("tenant", day: 50);
        var agent = new BudgetLevel("agent", new BudgetLimits(hour: 100, day: 1000));

        BudgetDecision decision = await store.TryReserveAsync(new BudgetRequest(agent, 30, TimeSpan.FromMinutes(5), tenant));

        decision.At.Should().Be(Noon);
        decision.Limits.Should().Be(default(BudgetWindowValues).With(BudgetWindow.Hour, 100).With(BudgetWindow.Day, 50));
        decision.Remaining.Should().Be(default(BudgetWindowValues).With(BudgetWindow.Hour, 70).With(BudgetWindow.Day, 20));
        decision.BlockingWindow.Should().BeNull();
        decision.IsUnmetered.Should().BeFalse();
        decision.TryGetWindow(BudgetWindow.Hour, out BudgetWindowQuota hour).Should().BeTrue();
        hour.Limit.Should().Be(100);
        hour.Remaining.Should().Be(70);
        hour.Period.Should().Be(new Interval(Noon, Noon + Duration.FromHours(1)));
        hour.ResetAfter.Should().Be(TimeSpan.FromHours(1));
        decision.TryGetWindow(BudgetWindow.Week, out _).Should().BeFalse();
        decision.TryGetTightestWindow(out BudgetWindowQuota tightest).Should().BeTrue();
        tightest.Window.Should().Be(BudgetWindow.Day);
        tightest.ResetsAt.Should().Be(Instant.FromUtc(2030, 4, 2, 0, 0));
    }

    [Fact]
    public async Task Decision_Rejected_NamesTheBlockingWindowAndRetryAfterIsItsReset()
    {
        var store = new InMemoryBudgetStore(_time);
        var level = new BudgetLevel("a", new BudgetLimits(hour: 10, day: 15, month: 1000));
        await store.TryReserveAsync(Request(level, 10));
        _time.Advance(TimeSpan.FromMinutes(15));

        BudgetDecision rejected = await store.TryReserveAsync(Request(level, 6));

        rejected.Reason.Should().Be(BudgetReason.BudgetExceeded);
        rejected.BlockingWindow.Should().Be(BudgetWindow.Day, "hour and day both block; the day ends last");
        rejected.TryGetTightestWindow(out BudgetWindowQuota quota).Should().BeTrue();
        quota.Window.Should().Be(BudgetWindow.Day);
        quota.Remaining.Should().Be(5);
        rejected.RetryAfter.Should().Be(quota.ResetAfter);
        rejected.RetryAfter.Should().Be(TimeSpan.FromHours(11.75));
    }

    [Fact]
    public async Task Decision_ObserveWouldReject_StillNamesTheBlockingWindow()
    {
        var store = new InMemoryBudgetStore(_time);
        var level = Level("a", day: 5);

        BudgetDecision decision = await store.TryReserveAsync(new BudgetRequest(level, 6, TimeSpan.FromMinutes(5), mode: BudgetMode.Observe));

        decision.Reason.Should().Be(BudgetReason.Observed);
        decision.BlockingWindow.Should().Be(BudgetWindow.Day);
        await decision.Lease.SettleAsync(6);
    }

    [Fact]
    public void Decision_Constructor_RejectsMismatchedWindows()
    {
        var limits = default(BudgetWindowValues).With(BudgetWindow.Day, 10);
        var mismatched = () => new BudgetDecision(BudgetReason.BudgetExceeded, 1, default, null, Noon, limits, default);
        var blocking = () => new BudgetDecision(BudgetReason.BudgetExceeded, 1, default, null, Noon, limits, limits, BudgetWindow.Hour);

        mismatched.Should().Throw<ArgumentException>().WithParameterName("remaining");
        blocking.Should().Throw<ArgumentException>().WithParameterName("blockingWindow");
    }

    [Fact]
    public async Task Meter_PerRequestCapRejection_ReportsRemainingWithoutHolding()
    {
        var store = new CountingStore(new InMemoryBudgetStore(_time));
        var policy = new BudgetPolicy(
            new BudgetLimits(day: 1000),
            new Dictionary<string, BudgetKeyPolicy> { ["t"] = new(new BudgetLimits(day: 400)), ["a"] = new(new BudgetLimits(hour: 900, day: 1000), "t") },
            perRequestTokens: 300);
        var meter = new BudgetMeter(store, policy);
        await meter.TryReserveAsync("a", 100);

        BudgetDecision decision = await meter.TryReserveAsync("a", 301);

        decision.Reason.Should().Be(BudgetReason.PerRequestTokensExceeded);
        decision.RetryAfter.Should().BeNull();
        decision.Lease.IsValid.Should().BeFalse();
        decision.Remaining.Should().Be(default(BudgetWindowValues).With(BudgetWindow.Hour, 800).With(BudgetWindow.Day, 300));
        decision.Limits.Should().Be(default(BudgetWindowValues).With(BudgetWindow.Hour, 900).With(BudgetWindow.Day, 400), "the tenant's day limit binds");
        decision.At.Should().Be(Noon);
        store.Reserves.Should().Be(1, "the cap rejection holds nothing");
    }

    [Fact]
    public async Task Meter_PerRequestCapRejection_StoreUnreadable_StillRejects()
    {
        var store = new CountingStore(new InMemoryBudgetStore(_time)) { FailStatus = true };
        var meter = new BudgetMeter(store, new BudgetPolicy(new BudgetLimits(day: 1000), perRequestTokens: 10), timeProvider: _time);

        BudgetDecision decision = await meter.TryReserveAsync("a", 11);

        decision.Reason.Should().Be(BudgetReason.PerRequestTokensExceeded);
        decision.Limits.IsEmpty.Should().BeTrue();
        decision.At.Should().Be(Noon);
    }

    [Fact]
    public async Task InMemory_ReserveSettleDisposeAndHeaders_AllocateNothing()
    {
        var store = new InMemoryBudgetStore(_time);
        var tenant = Level("tenant", day: long.MaxValue / 2);
        var request = new BudgetRequest(new BudgetLevel("agent", new BudgetLimits(hour: long.MaxValue / 2, day: long.MaxValue / 2, week: long.MaxValue / 2, month: long.MaxValue / 2, year: long.MaxValue / 2)), 10, TimeSpan.FromMinutes(5), tenant);
        for (int i = 0; i < 2_000; i++)
        {
            await CycleAsync(store, request);
        }

        // Steady state (SteadyStateAllocation): one measured loop could catch a one-off allocation of the runtime while
        // the JIT swaps tiers, which happens on a wall-clock delay and so more often on a loaded machine. Every cycle
        // completes synchronously (a cycle that did not would allocate its state machine box and fail here).
        long allocated = SteadyStateAllocation.Measure(() =>
        {
            for (int i = 0; i < 1_000; i++)
            {
                CycleAsync(store, request).GetAwaiter().GetResult();
            }
        });

        allocated.Should().Be(0);

        static async ValueTask CycleAsync(BudgetStore store, BudgetRequest request)
        {
            BudgetDecision decision = store.TryReserveAsync(request).GetAwaiter().GetResult();
            decision.TryGetTightestWindow(out _);
            decision.TryGetWindow(BudgetWindow.Month, out _);
            await using (decision.Lease)
            {
                decision.Lease.SettleAsync(5).GetAwaiter().GetResult();
            }
        }
    }

    // ----- Disposal -----

    [Fact]
    public async Task FileStore_SynchronousDispose_FlushesAndReleasesTheDirectory()
    {
        var fs = new System.IO.Abstractions.TestingHelpers.MockFileSystem();
        var level = Level("a", day: 100);
        using (FileBudgetStore store = await FileBudgetStore.OpenAsync("/b", options: null, fs, _time))
        {
            await (await store.TryReserveAsync(Request(level, 10))).Lease.SettleAsync(4);
        }

        await using FileBudgetStore reopened = await FileBudgetStore.OpenAsync("/b", options: null, fs, _time);
        (await reopened.GetStatusAsync(level)).Windows.Single().Used.Should().Be(4);
    }

    [Fact]
    public async Task Stores_DisposeBothWays_Twice_DoNotThrow()
    {
        var memory = new InMemoryBudgetStore(_time);
        memory.Dispose();
        await memory.DisposeAsync();
        var file = await FileBudgetStore.OpenAsync("/c", options: null, new System.IO.Abstractions.TestingHelpers.MockFileSystem(), _time);
        await file.DisposeAsync();
        file.Dispose();

        var act = async () => await file.TryReserveAsync(Request(Level("a", day: 1), 1));
        await act.Should().ThrowAsync<ObjectDisposedException>();
    }

    [Fact]
    public async Task FileStoreOptions_Invalid_Throw()
    {
        var act = async () => await FileBudgetStore.OpenAsync("/d", new FileBudgetStoreOptions { CompactAfterRecords = 0 }, new System.IO.Abstractions.TestingHelpers.MockFileSystem(), _time);
        var meter = () => new BudgetMeter(new InMemoryBudgetStore(_time), new BudgetPolicy(), new BudgetMeterOptions { MaxCachedKeys = -1 });

        await act.Should().ThrowAsync<ArgumentException>().WithMessage("*CompactAfterRecords*");
        meter.Should().Throw<ArgumentException>().WithMessage("*MaxCachedKeys*");
    }

    // ----- Bounded state -----

    [Fact]
    public async Task InMemory_IdleKeys_EvictedOnceEveryCountedWindowEnded()
    {
        var store = new InMemoryBudgetStore(_time);
        for (int i = 0; i < 100; i++)
        {
            BudgetDecision d = await store.TryReserveAsync(Request(Level("day-" + i, day: 100), 5));
            await d.Lease.SettleAsync(5);
        }

        BudgetDecision yearly = await store.TryReserveAsync(Request(new BudgetLevel("year", new BudgetLimits(year: 100)), 5));
        await yearly.Lease.SettleAsync(5);
        BudgetDecision open = await store.TryReserveAsync(new BudgetRequest(Level("open", day: 100), 5, TimeSpan.FromDays(3)));
        store.KeyCount.Should().Be(102);

        // 01:00: the day ended an hour ago, still kept for status reads of the day that just ended.
        _time.Advance(TimeSpan.FromHours(13));
        await store.TryReserveAsync(Request(Level("day-0", day: 100), 1));
        store.KeyCount.Should().Be(102);
        (await store.GetStatusAsync(Level("day-1", day: 100), at: Noon)).Windows.Single().Used.Should().Be(5);

        // 02:00: evicted.
        _time.Advance(TimeSpan.FromHours(1));
        await store.TryReserveAsync(Request(Level("day-0", day: 100), 1));
        store.KeyCount.Should().Be(3, "day-0 (active again), the yearly key and the key with an open lease remain");
        (await store.GetStatusAsync(Level("day-1", day: 100))).Windows.Single().Used.Should().Be(0);
        (await store.GetStatusAsync(new BudgetLevel("year", new BudgetLimits(year: 100)))).Windows.Single().Used.Should().Be(5);
        (await open.Lease.SettleAsync(2)).Status.Should().Be(BudgetSettlementStatus.Settled);
    }

    [Fact]
    public async Task InMemory_EvictedParent_OpenLeaseOfChildKeepsIt()
    {
        var store = new InMemoryBudgetStore(_time);
        var tenant = Level("tenant", day: 100);
        BudgetDecision open = await store.TryReserveAsync(new BudgetRequest(Level("agent", day: 100), 40, TimeSpan.FromDays(3), tenant));

        _time.Advance(TimeSpan.FromHours(14));
        await store.TryReserveAsync(Request(Level("other", day: 1), 1));
        await open.Lease.SettleAsync(30);

        // The settlement was charged to the admission day, kept alive by the open lease.
        (await store.GetStatusAsync(tenant, at: Noon)).Windows.Single().Used.Should().Be(30);
    }

    [Fact]
    public void LedgerImage_IsACopy_LaterChangesDoNotShowInIt()
    {
        var ledger = new BudgetLedger();
        var issuer = new InMemoryBudgetStore(_time);
        ledger.Reserve(issuer, Request(Level("a", day: 100), 10), Noon);

        BudgetLedgerImage image = BudgetLedgerImage.Capture(ledger, 7);
        ledger.Reserve(issuer, Request(Level("a", day: 100), 20), Noon);

        image.Sequence.Should().Be(7);
        image.Counters.Should().ContainSingle().Which.Held.Should().Be(10);
        image.OpenLeases.Should().ContainSingle();
    }

    [Fact]
    public async Task Meter_KeyCache_IsBounded()
    {
        var meter = new BudgetMeter(new InMemoryBudgetStore(_time), new BudgetPolicy(new BudgetLimits(day: 10)), new BudgetMeterOptions { MaxCachedKeys = 8 });

        for (int i = 0; i < 100; i++)
        {
            (await meter.TryReserveAsync("k" + i, 10)).IsAdmitted.Should().BeTrue();
        }

        meter.CachedKeys.Should().Be(8);
        (await meter.TryReserveAsync("k99", 1)).Reason.Should().Be(BudgetReason.BudgetExceeded, "uncached keys are still metered");
    }

    private static BudgetLevel Level(string key, long day) => new(key, new BudgetLimits(day: day));

    private static BudgetRequest Request(BudgetLevel level, long tokens) => new(level, tokens, TimeSpan.FromMinutes(5));

    /// <summary>A store that counts the calls that reach it, issuing its own leases over an inner store.</summary>
    private sealed class CountingStore(BudgetStore inner) : BudgetStore
    {
        public int Reserves { get; private set; }

        public int Settles { get; private set; }

        public int Abandons { get; private set; }

        public bool FailStatus { get; init; }

        protected override async ValueTask<BudgetDecision> TryReserveCoreAsync(BudgetRequest request, CancellationToken cancellationToken)
        {
            Reserves++;
            BudgetDecision d = await inner.TryReserveAsync(request, cancellationToken);
            BudgetLease lease = d.Lease.IsValid ? CreateLease(d.Lease.Id, d.Lease.Tokens, d.Lease.ExpiresAt) : default;
            return new BudgetDecision(d.Reason, d.Tokens, lease, d.RetryAfter, d.At, d.Limits, d.Remaining, d.BlockingWindow, d.IsUnmetered);
        }

        protected override ValueTask<BudgetSettlement> SettleCoreAsync(long leaseId, long actualTokens, Instant? at, CancellationToken cancellationToken)
        {
            Settles++;
            return inner.SettleAsync(leaseId, actualTokens, at, cancellationToken);
        }

        protected override ValueTask<BudgetSettlement> AbandonCoreAsync(long leaseId, Instant? at, CancellationToken cancellationToken)
        {
            Abandons++;
            return inner.AbandonAsync(leaseId, at, cancellationToken);
        }

        protected override ValueTask<BudgetStatus> GetStatusCoreAsync(BudgetLevel level, BudgetLevel? parent, Instant? at, CancellationToken cancellationToken)
            => FailStatus ? throw new BudgetStoreUnavailableException("down") : inner.GetStatusAsync(level, parent, at, cancellationToken);
    }
}
