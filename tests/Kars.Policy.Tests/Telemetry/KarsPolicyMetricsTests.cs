using System.Diagnostics.Metrics;
using System.Net;
using Kars.Policy.Budgets;
using Kars.Policy.Egress;
using Kars.Policy.Internal;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Time.Testing;
using static Kars.Policy.Tests.Egress.EgressTestHelpers;
using Kars.Policy.Tests.Egress;

namespace Kars.Policy.Tests.Telemetry;

/// <summary>The <c>Kars.Policy</c> meter: instrument names, tags (never a host), and recording through the public entry points.</summary>
public sealed class KarsPolicyMetricsTests
{
    private static readonly FakeTimeProvider Time = new(Start);

    [Fact]
    public void MonitorEvaluate_EveryOverload_CountsDecisionByVerdictReasonAndModeWithoutHost()
    {
        using var factory = new TestMeterFactory();
        using var decisions = new DecisionListener(factory);
        var source = new InMemoryEgressPolicySource(Bytes(Doc("""{ "host": "api.example.com" }""")));
        using var monitor = new EgressPolicyMonitor(source, timeProvider: Time, meterFactory: factory);

        monitor.Evaluate("api.example.com", 443, "s").IsAllowed.Should().BeTrue();
        monitor.Evaluate("https://evil.example.net/x?secret=1", "s").IsAllowed.Should().BeFalse();
        monitor.Evaluate(new Uri("https://api.example.com/"), "s").IsAllowed.Should().BeTrue();
        monitor.Evaluate(EgressTestHelpers.DnsTarget("other.example.org", 443), "s").IsAllowed.Should().BeFalse();
        monitor.EvaluateResolvedAddress(IPAddress.Parse("10.0.0.1"), 443, "s").IsAllowed.Should().BeFalse();

        var all = Observe(decisions);
        all.Sum(m => m.Value).Should().Be(5);
        all.Should().OnlyContain(m => m.Tags.Count == 3);
        all.Where(m => m.ContainsTags(new KeyValuePair<string, object?>("kars.policy.egress.verdict", "allow"), new KeyValuePair<string, object?>("kars.policy.egress.reason", "allowlisted"))).Sum(m => m.Value).Should().Be(2);
        all.Where(m => m.ContainsTags(new KeyValuePair<string, object?>("kars.policy.egress.verdict", "deny"), new KeyValuePair<string, object?>("kars.policy.egress.reason", "notAllowlisted"))).Sum(m => m.Value).Should().Be(2);
        all.Where(m => m.ContainsTags(new KeyValuePair<string, object?>("kars.policy.egress.reason", "nonPublicAddress"))).Sum(m => m.Value).Should().Be(1);
        all.Should().OnlyContain(m => (string?)m.Tags["kars.policy.mode"] == "strict");
        all.SelectMany(m => m.Tags.Values).Select(v => v?.ToString() ?? string.Empty)
            .Should().NotContain(v => v.Contains("example", StringComparison.Ordinal) || v.Contains("10.0.0.1", StringComparison.Ordinal) || v.Contains("secret", StringComparison.Ordinal));
    }

    [Fact]
    public void MonitorEvaluate_NoPolicyAndLearnMode_TaggedWithReasonAndMode()
    {
        using var factory = new TestMeterFactory();
        using var decisions = new DecisionListener(factory);
        using var broken = new EgressPolicyMonitor(new InMemoryEgressPolicySource(Bytes("{ not json")), timeProvider: Time, meterFactory: factory);
        using var learn = new EgressPolicyMonitor(new InMemoryEgressPolicySource(Bytes(Doc("""{ "host": "api.example.com" }""")), options: new KarsEgressOptions { Mode = EgressMode.Learn }), timeProvider: Time, meterFactory: factory);

        broken.Evaluate("api.example.com", 443, null).Reason.Should().Be(EgressReason.NoPolicy);
        learn.Evaluate("new.example.com", 443, "s").Reason.Should().Be(EgressReason.Learned);

        var all = Observe(decisions);
        all.Should().ContainSingle(m => (string?)m.Tags["kars.policy.egress.reason"] == "noPolicy" && (string?)m.Tags["kars.policy.egress.verdict"] == "deny");
        all.Should().ContainSingle(m => (string?)m.Tags["kars.policy.egress.reason"] == "learned" && (string?)m.Tags["kars.policy.mode"] == "learn" && (string?)m.Tags["kars.policy.egress.verdict"] == "allow");
    }

    [Fact]
    public void MonitorReload_SuccessAndFailure_Counted()
    {
        using var factory = new TestMeterFactory();
        using var reloads = new MetricCollector<long>(factory, KarsPolicyMetrics.MeterName, "kars.policy.egress.reloads");
        var source = new InMemoryEgressPolicySource(Bytes(Doc("""{ "host": "api.example.com" }""")));
        using var monitor = new EgressPolicyMonitor(source, new KarsEgressOptions { ReloadDelay = TimeSpan.Zero }, Time, meterFactory: factory);

        monitor.Reload().Should().BeTrue();
        source.Update(Bytes("{ broken"));
        monitor.Reload().Should().BeFalse();

        var all = reloads.GetMeasurementSnapshot();
        all.Count(m => (string?)m.Tags["kars.policy.egress.reload.result"] == "success").Should().BeGreaterThanOrEqualTo(1);
        all.Count(m => (string?)m.Tags["kars.policy.egress.reload.result"] == "failure").Should().BeGreaterThanOrEqualTo(1);
    }

    [Fact]
    public void EgressPolicyFacade_Evaluate_RecordedOnItsFactoryMeter()
    {
        using var factory = new TestMeterFactory();
        using var decisions = new DecisionListener(factory);
        var policy = EgressPolicy.Load(PolicyPath, fileSystem: FileSystemWith(Doc("""{ "host": "api.example.com" }""")), timeProvider: Time, meterFactory: factory);

        policy.Evaluate("api.example.com").IsAllowed.Should().BeTrue();

        Observe(decisions).Should().ContainSingle().Which.Value.Should().Be(1);
    }

    [Fact]
    public void Metrics_SameFactory_OneMeterWithStableNamesAndUnits()
    {
        using var factory = new TestMeterFactory();
        KarsPolicyMetrics.Get(factory).Should().BeSameAs(KarsPolicyMetrics.Get(factory));
        var meter = KarsPolicyMetrics.Get(factory).Meter;
        meter.Name.Should().Be("Kars.Policy");
        meter.Scope.Should().BeSameAs(factory);
        KarsPolicyMetrics.Get(null).Should().BeSameAs(KarsPolicyMetrics.Get(null));
        KarsPolicyMetrics.Get(null).Should().NotBeSameAs(KarsPolicyMetrics.Get(factory));
    }

    [Fact]
    public async Task BudgetMeter_ReserveSettleAbandon_TokensReservedChargedReleasedAndStoreDurations()
    {
        using var factory = new TestMeterFactory();
        using var tokens = new MetricCollector<long>(factory, KarsPolicyMetrics.MeterName, "kars.policy.budget.tokens");
        using var duration = new MetricCollector<double>(factory, KarsPolicyMetrics.MeterName, "kars.policy.budget.store.duration");
        using var store = new InMemoryBudgetStore(Time);
        var meter = new BudgetMeter(store, new BudgetPolicy(new BudgetLimits(day: 1000)), timeProvider: Time, meterFactory: factory);

        var first = await meter.TryReserveAsync("agent-a", 100);
        (await first.Lease.SettleAsync(30)).Charged.Should().Be(30);
        await first.Lease.DisposeAsync(); // settled: no store call, nothing counted again
        var second = await meter.TryReserveAsync("agent-a", 50);
        await second.Lease.DisposeAsync(); // unsettled: the hold is charged
        (await meter.TryReserveAsync("agent-a", 5000)).IsAdmitted.Should().BeFalse();
        _ = await meter.GetStatusAsync("agent-a");

        long Sum(string action) => tokens.GetMeasurementSnapshot().Where(m => (string?)m.Tags["kars.policy.budget.token.action"] == action).Sum(m => m.Value);
        Sum("reserved").Should().Be(150);
        Sum("charged").Should().Be(80);
        Sum("released").Should().Be(70);
        tokens.GetMeasurementSnapshot().Should().OnlyContain(m => (string?)m.Tags["kars.policy.mode"] == "enforce" && m.Tags.Count == 2);
        tokens.GetMeasurementSnapshot().SelectMany(m => m.Tags.Values).Should().NotContain("agent-a");

        var calls = duration.GetMeasurementSnapshot();
        calls.Should().OnlyContain(m => m.Value >= 0 && (string?)m.Tags["kars.policy.budget.store.type"] == nameof(InMemoryBudgetStore));
        calls.Count(m => (string?)m.Tags["kars.policy.budget.store.operation"] == "reserve").Should().Be(3);
        calls.Count(m => (string?)m.Tags["kars.policy.budget.store.operation"] == "settle").Should().Be(1);
        calls.Count(m => (string?)m.Tags["kars.policy.budget.store.operation"] == "abandon").Should().Be(1);
        calls.Count(m => (string?)m.Tags["kars.policy.budget.store.operation"] == "status").Should().Be(1);
        ((MeteredBudgetStore)typeof(BudgetMeter).GetField("_store", System.Reflection.BindingFlags.NonPublic | System.Reflection.BindingFlags.Instance)!.GetValue(meter)!).TrackedLeases.Should().Be(0);
    }

    [Fact]
    public async Task BudgetMeter_StoreUnavailable_DurationTaggedWithErrorTypeAndNothingReserved()
    {
        using var factory = new TestMeterFactory();
        using var tokens = new MetricCollector<long>(factory, KarsPolicyMetrics.MeterName, "kars.policy.budget.tokens");
        using var duration = new MetricCollector<double>(factory, KarsPolicyMetrics.MeterName, "kars.policy.budget.store.duration");
        var meter = new BudgetMeter(new FailingStore(), new BudgetPolicy(new BudgetLimits(day: 1000)), timeProvider: Time, meterFactory: factory);

        var act = async () => await meter.TryReserveAsync("agent-a", 10);

        await act.Should().ThrowAsync<BudgetStoreUnavailableException>();
        tokens.GetMeasurementSnapshot().Should().BeEmpty();
        duration.GetMeasurementSnapshot().Should().ContainSingle().Which.Tags["error.type"].Should().Be(typeof(BudgetStoreUnavailableException).FullName);
    }

    [Fact]
    public async Task BudgetMeter_ObserveMode_TokensTaggedObserve()
    {
        using var factory = new TestMeterFactory();
        using var tokens = new MetricCollector<long>(factory, KarsPolicyMetrics.MeterName, "kars.policy.budget.tokens");
        using var store = new InMemoryBudgetStore(Time);
        var meter = new BudgetMeter(store, new BudgetPolicy(new BudgetLimits(day: 10), mode: BudgetMode.Observe), timeProvider: Time, meterFactory: factory);

        var d = await meter.TryReserveAsync("k", 20);
        await d.Lease.SettleAsync(20);

        tokens.GetMeasurementSnapshot().Should().OnlyContain(m => (string?)m.Tags["kars.policy.mode"] == "observe");
    }

    [Fact]
    public void MonitorEvaluate_ListenerAttached_AllocatesNothing()
    {
        using var factory = new TestMeterFactory();
        long seen = 0;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Scope == factory)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((_, value, _, _) => Interlocked.Add(ref seen, value));
        listener.MeasurementsCompleted = (_, _) => { };
        listener.Start();
        using var monitor = new EgressPolicyMonitor(new InMemoryEgressPolicySource(Bytes(Doc("""{ "host": "api.example.com" }"""))), timeProvider: Time, meterFactory: factory);
        var allowed = EgressTestHelpers.DnsTarget("api.example.com", 443);
        var denied = EgressTestHelpers.DnsTarget("other.example.org", 443);

        long bytes = SteadyStateAllocation.Measure(() =>
        {
            for (int i = 0; i < 1000; i++)
            {
                monitor.Evaluate(allowed, "s");
                monitor.Evaluate(denied, "s");
            }
        });

        bytes.Should().Be(0);
        listener.RecordObservableInstruments();
        Interlocked.Read(ref seen).Should().BeGreaterThan(2000);
    }

    /// <summary>Collects the observable decision counter once and returns that collection's measurements (cumulative totals).</summary>
    private static IReadOnlyList<Observed> Observe(DecisionListener listener) => listener.Collect();

    private static byte[] Bytes(string text) => System.Text.Encoding.UTF8.GetBytes(text);

    private sealed class FailingStore : BudgetStore
    {
        protected override ValueTask<BudgetDecision> TryReserveCoreAsync(BudgetRequest request, CancellationToken cancellationToken) => throw new BudgetStoreUnavailableException("down");

        protected override ValueTask<BudgetSettlement> SettleCoreAsync(long leaseId, long actualTokens, NodaTime.Instant? at, CancellationToken cancellationToken) => throw new BudgetStoreUnavailableException("down");

        protected override ValueTask<BudgetSettlement> AbandonCoreAsync(long leaseId, NodaTime.Instant? at, CancellationToken cancellationToken) => throw new BudgetStoreUnavailableException("down");

        protected override ValueTask<BudgetStatus> GetStatusCoreAsync(BudgetLevel level, BudgetLevel? parent, NodaTime.Instant? at, CancellationToken cancellationToken) => throw new BudgetStoreUnavailableException("down");
    }
}

/// <summary>One observation of the observable decision counter.</summary>
internal sealed record Observed(long Value, IReadOnlyDictionary<string, object?> Tags)
{
    public bool ContainsTags(params KeyValuePair<string, object?>[] tags) => tags.All(t => Tags.TryGetValue(t.Key, out var v) && Equals(v, t.Value));
}

/// <summary>A <see cref="MeterListener"/> on <c>kars.policy.egress.decisions</c> of one factory's meter.</summary>
internal sealed class DecisionListener : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly List<Observed> _observed = [];

    public DecisionListener(IMeterFactory factory)
    {
        _listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Scope == factory && instrument.Name == "kars.policy.egress.decisions")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            var copy = new Dictionary<string, object?>(StringComparer.Ordinal);
            foreach (var tag in tags)
            {
                copy[tag.Key] = tag.Value;
            }

            lock (_observed)
            {
                _observed.Add(new Observed(value, copy));
            }
        });
        _listener.Start();
    }

    public IReadOnlyList<Observed> Collect()
    {
        lock (_observed)
        {
            _observed.Clear();
        }

        _listener.RecordObservableInstruments();
        lock (_observed)
        {
            return [.. _observed];
        }
    }

    public void Dispose() => _listener.Dispose();
}

/// <summary>A minimal <see cref="IMeterFactory"/>: meters scoped to it, disposed with it.</summary>
internal sealed class TestMeterFactory : IMeterFactory
{
    private readonly List<Meter> _meters = [];

    public Meter Create(MeterOptions options)
    {
        var meter = new Meter(new MeterOptions(options.Name) { Version = options.Version, Tags = options.Tags, Scope = this });
        lock (_meters)
        {
            _meters.Add(meter);
        }

        return meter;
    }

    public void Dispose()
    {
        lock (_meters)
        {
            foreach (var meter in _meters)
            {
                meter.Dispose();
            }

            _meters.Clear();
        }
    }
}
