using System.Net;
using System.Text;
using Kars.Policy.Egress;
using Microsoft.Extensions.Primitives;
using Microsoft.Extensions.Time.Testing;
using NodaTime;
using static Kars.Policy.Tests.Egress.EgressTestHelpers;

namespace Kars.Policy.Tests.Egress;

public class EgressPolicyMonitorTests
{
    private static byte[] Document(long generation, string host = "api.github.com") =>
        Encoding.UTF8.GetBytes($$"""{"schemaVersion":1,"generation":{{generation}},"allow":[{"host":"{{host}}"}]}""");

    /// <summary>A clock the test never advances: change notifications schedule a reload that never runs, so only
    /// explicit <see cref="EgressPolicyMonitor.Reload"/> calls load.</summary>
    private static FakeTimeProvider Frozen() => new(Start);

    [Fact]
    public void Constructor_DoesNotLoad_FirstUseDoes()
    {
        var source = new CountingSource(new InMemoryEgressPolicySource(Document(1)));

        using var monitor = new EgressPolicyMonitor(source);

        source.Loads.Should().Be(0);
        monitor.Evaluate("api.github.com", 443, null).Reason.Should().Be(EgressReason.Allowlisted);
        monitor.State.Generation.Should().Be(1);
        source.Loads.Should().Be(1);
    }

    [Fact]
    public void State_FirstLoadFails_NoPolicyInEveryModeAndEveryOverload()
    {
        var source = new InMemoryEgressPolicySource(Encoding.UTF8.GetBytes("garbage"));
        using var monitor = new EgressPolicyMonitor(source, new KarsEgressOptions { Mode = EgressMode.Learn });

        var state = monitor.State;

        state.IsLoaded.Should().BeFalse();
        state.IsStale.Should().BeFalse();
        state.Problems.Should().NotBeEmpty();
        state.LoadedAt.Should().BeNull();
        EgressTargetParser.TryParse("x.example.org", out var target, out _).Should().BeTrue();
        EgressDecision[] decisions =
        [
            monitor.Evaluate(target, "s"),
            monitor.Evaluate(new Uri("https://x.example.org/"), "s"),
            monitor.Evaluate("x.example.org", "s"),
            monitor.Evaluate("x.example.org", 443, "s"),
            monitor.EvaluateResolvedAddress(IPAddress.Parse("203.0.113.1"), 443, "s"),
            monitor.Evaluate("not a host", "s"),
        ];
        decisions.Should().OnlyContain(d => d.Reason == EgressReason.NoPolicy && d.Verdict == EgressVerdict.Deny && d.Mode == EgressMode.Learn);
        monitor.LearnedHosts.Count.Should().Be(0);
    }

    [Fact]
    public void Reload_Failure_KeepsLastGoodSnapshotAsStaleInOneState()
    {
        var time = new FakeTimeProvider(Start);
        var source = new InMemoryEgressPolicySource(Document(1));
        using var monitor = new EgressPolicyMonitor(source, null, time);
        var first = monitor.State;
        first.LoadedAt.Should().Be(Instant.FromDateTimeOffset(Start));

        source.Update(Encoding.UTF8.GetBytes("""{"schemaVersion":1,"allow":[{"host":"*"}]}"""));
        time.Advance(TimeSpan.FromMinutes(1));
        monitor.Reload().Should().BeFalse();

        var state = monitor.State;
        state.Snapshot.Should().BeSameAs(first.Snapshot);
        state.IsStale.Should().BeTrue();
        state.Problems.Should().ContainSingle().Which.Kind.Should().Be(EgressPolicyProblemKind.Invalid);
        state.LoadedAt.Should().Be(first.LoadedAt, "the snapshot in force was loaded then");
        monitor.Evaluate("api.github.com", 443, null).Reason.Should().Be(EgressReason.Allowlisted);

        source.Update(Document(2));
        monitor.Reload().Should().BeTrue();
        monitor.State.IsStale.Should().BeFalse();
        monitor.State.Problems.Should().BeEmpty();
        monitor.State.Generation.Should().Be(2);
        monitor.State.LoadedAt.Should().Be(Instant.FromDateTimeOffset(Start.AddMinutes(1)));
    }

    [Fact]
    public void Reload_LowerGeneration_IsRefusedAsRollback()
    {
        var source = new InMemoryEgressPolicySource(Document(5));
        using var monitor = new EgressPolicyMonitor(source, null, Frozen());
        monitor.State.Generation.Should().Be(5);

        source.Update(Document(4, "other.example.org"));
        monitor.Reload().Should().BeFalse();

        monitor.State.Generation.Should().Be(5);
        monitor.State.IsStale.Should().BeTrue();
        var problem = monitor.State.Problems.Should().ContainSingle().Subject;
        problem.Kind.Should().Be(EgressPolicyProblemKind.RollbackRejected);
        problem.Message.Should().Contain("generation 4").And.Contain("generation 5");
        monitor.Evaluate("other.example.org", 443, null).Reason.Should().Be(EgressReason.NotAllowlisted);

        source.Update(Document(5, "other.example.org"));
        monitor.Reload().Should().BeTrue("the same generation is not a rollback");
        monitor.Evaluate("other.example.org", 443, null).Reason.Should().Be(EgressReason.Allowlisted);
    }

    [Fact]
    public void Reload_SourceThrowsUnexpectedly_FailsClosedWithSourceFailed()
    {
        var source = new ThrowingSource();
        using var monitor = new EgressPolicyMonitor(source);

        monitor.Reload().Should().BeFalse();

        monitor.State.Problems.Should().ContainSingle().Which.Kind.Should().Be(EgressPolicyProblemKind.SourceFailed);
        monitor.Evaluate("api.github.com", 443, null).Reason.Should().Be(EgressReason.NoPolicy);
    }

    [Fact]
    public void GetChangeToken_FiresOnEverySwapIncludingFailures()
    {
        var source = new InMemoryEgressPolicySource(Document(1));
        using var monitor = new EgressPolicyMonitor(source, null, Frozen());
        _ = monitor.State;
        int fired = 0;
        using var subscription = ChangeToken.OnChange(monitor.GetChangeToken, () => Interlocked.Increment(ref fired));

        monitor.Reload();
        source.Update(Encoding.UTF8.GetBytes("garbage"));
        monitor.Reload();
        source.Update(Document(1));
        monitor.Reload();

        fired.Should().Be(3);
    }

    [Fact]
    public void Reload_ListenerThrows_NewStateInForceAndNothingEscapes()
    {
        var source = new InMemoryEgressPolicySource(Document(1));
        using var monitor = new EgressPolicyMonitor(source, null, Frozen());
        _ = monitor.State;
        using var registration = monitor.GetChangeToken().RegisterChangeCallback(static _ => throw new InvalidOperationException("listener"), null);

        source.Update(Document(2));
        var reload = () => monitor.Reload();

        reload.Should().NotThrow().Which.Should().BeTrue();
        monitor.State.Generation.Should().Be(2);
    }

    [Fact]
    public void SourceChange_TimerReloadWithThrowingListener_DoesNotEscapeTheTimer()
    {
        var time = new FakeTimeProvider(Start);
        var source = new InMemoryEgressPolicySource(Document(1));
        using var monitor = new EgressPolicyMonitor(source, null, time);
        _ = monitor.State;
        using var registration = monitor.GetChangeToken().RegisterChangeCallback(static _ => throw new InvalidOperationException("listener"), null);

        source.Update(Document(2));
        var advance = () => time.Advance(TimeSpan.FromSeconds(1));

        advance.Should().NotThrow();
        monitor.State.Generation.Should().Be(2);
    }

    [Fact]
    public void SourceChange_BurstOfNotifications_ReloadsOnceAfterTheDelay()
    {
        var time = new FakeTimeProvider(Start);
        var inner = new InMemoryEgressPolicySource(Document(1));
        var source = new CountingSource(inner);
        using var monitor = new EgressPolicyMonitor(source, new KarsEgressOptions { ReloadDelay = TimeSpan.FromMilliseconds(250) }, time);
        monitor.State.Generation.Should().Be(1);

        inner.Update(Document(2));
        time.Advance(TimeSpan.FromMilliseconds(100));
        inner.Update(Document(3));
        time.Advance(TimeSpan.FromMilliseconds(100));
        inner.Update(Document(4));
        time.Advance(TimeSpan.FromMilliseconds(200));

        source.Loads.Should().Be(1, "every notification restarted the wait");
        monitor.State.Generation.Should().Be(1);

        time.Advance(TimeSpan.FromMilliseconds(50));

        source.Loads.Should().Be(2);
        monitor.State.Generation.Should().Be(4);
    }

    [Fact]
    public void Dispose_StopsReloadingOnChange()
    {
        var time = new FakeTimeProvider(Start);
        var source = new InMemoryEgressPolicySource(Document(1));
        var monitor = new EgressPolicyMonitor(source, null, time);
        _ = monitor.State;

        monitor.Dispose();
        source.Update(Document(2));
        time.Advance(TimeSpan.FromSeconds(5));

        monitor.State.Generation.Should().Be(1);
        monitor.Evaluate("api.github.com", 443, null).IsAllowed.Should().BeTrue();
    }

    [Fact]
    public void LearnedHosts_OutliveReloads()
    {
        var source = new InMemoryEgressPolicySource(Document(1), options: new KarsEgressOptions { Mode = EgressMode.Learn });
        using var monitor = new EgressPolicyMonitor(source, null, Frozen());

        monitor.Evaluate("a.example.org", 443, "s").Reason.Should().Be(EgressReason.Learned);
        source.Update(Document(2));
        monitor.Reload();
        monitor.Evaluate("b.example.org", 443, "s").Reason.Should().Be(EgressReason.Learned);

        monitor.LearnedHosts.GetLearnedHosts().Select(h => h.Host).Should().Equal("a.example.org", "b.example.org");
        monitor.State.Snapshot!.LearnedHosts.Should().BeSameAs(monitor.LearnedHosts);
    }

    [Fact]
    public void Monitor_BindsSnapshotsToItsClock()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2029, 12, 31, 0, 0, 0, TimeSpan.Zero));
        const string json = """
            {"schemaVersion":1,"generation":1,"allow":[],
             "approvals":[{"name":"a","hosts":[{"host":"temp.example.com","port":443}],"reason":"r","effectiveAt":"2030-01-01T00:00:00Z","expiresAt":"2030-01-02T00:00:00Z"}]}
            """;
        using var monitor = new EgressPolicyMonitor(new InMemoryEgressPolicySource(Encoding.UTF8.GetBytes(json)), null, time);

        monitor.Evaluate("temp.example.com", 443, null).Reason.Should().Be(EgressReason.NotAllowlisted);
        time.Advance(TimeSpan.FromDays(1));
        monitor.Evaluate("temp.example.com", 443, null).Reason.Should().Be(EgressReason.Approved);
        monitor.State.Snapshot!.Evaluate("temp.example.com", 443, null).Reason.Should().Be(EgressReason.Approved);
    }

    [Fact]
    public void LastKnownGood_SourceFailsAtStartup_ServesItAsStale()
    {
        var store = new MemoryLastKnownGood(EgressPolicySnapshot.Create(Document(7)));
        var source = new InMemoryEgressPolicySource(Encoding.UTF8.GetBytes("garbage"));
        using var monitor = new EgressPolicyMonitor(source, lastKnownGood: store);

        monitor.State.Generation.Should().Be(7);
        monitor.State.IsStale.Should().BeTrue();
        monitor.Evaluate("api.github.com", 443, null).Reason.Should().Be(EgressReason.Allowlisted);
        store.Saved.Should().BeEmpty();
    }

    [Fact]
    public void LastKnownGood_IsTheRollbackFloorAfterARestart_AndReceivesEverySwap()
    {
        var store = new MemoryLastKnownGood(EgressPolicySnapshot.Create(Document(7)));
        var source = new InMemoryEgressPolicySource(Document(6, "old.example.org"));
        using var monitor = new EgressPolicyMonitor(source, null, Frozen(), lastKnownGood: store);

        monitor.State.Generation.Should().Be(7);
        monitor.State.Problems.Should().ContainSingle().Which.Kind.Should().Be(EgressPolicyProblemKind.RollbackRejected);

        source.Update(Document(8));
        monitor.Reload().Should().BeTrue();
        store.Saved.Should().ContainSingle().Which.Generation.Should().Be(8);
    }

    [Fact]
    public void LastKnownGood_StoreThrows_DoesNotChangeThePolicyInForce()
    {
        var store = new ThrowingLastKnownGood();
        using var monitor = new EgressPolicyMonitor(new InMemoryEgressPolicySource(Document(1)), lastKnownGood: store);

        monitor.State.Generation.Should().Be(1);
        monitor.State.IsStale.Should().BeFalse();
    }

    [Fact]
    public void Constructor_InvalidTiming_Throws()
    {
        var source = new InMemoryEgressPolicySource(Document(1));

        FluentActions.Invoking(() => new EgressPolicyMonitor(source, new KarsEgressOptions { ReloadDelay = TimeSpan.FromSeconds(-1) })).Should().Throw<ArgumentOutOfRangeException>();
        FluentActions.Invoking(() => new EgressPolicyMonitor(null!)).Should().Throw<ArgumentNullException>();
    }

    [Fact]
    public async Task Reload_UnderConcurrentEvaluation_EveryDecisionMatchesExactlyOneSnapshot()
    {
        // Even generations allow even.example.org only, odd ones odd.example.org only. Every decision must name one
        // generation, carry that generation's digest, and have the verdict that generation gives.
        const int Generations = 300;
        var digests = new string[Generations + 1];
        for (int g = 1; g <= Generations; g++)
        {
            digests[g] = EgressPolicySnapshot.Create(Doc(g)).Digest;
        }

        var source = new InMemoryEgressPolicySource(Doc(1));
        using var monitor = new EgressPolicyMonitor(source, null, Frozen());
        _ = monitor.State;
        using var stop = new CancellationTokenSource();
        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        long evaluated = 0;
        var seen = new System.Collections.Concurrent.ConcurrentDictionary<long, byte>();
        const int Workers = 3;
        var rounds = new long[Workers];

        void Evaluate(int worker)
        {
            long local = 0;
            while (!stop.IsCancellationRequested)
            {
                foreach (string host in new[] { "even.example.org", "odd.example.org" })
                {
                    var d = (local & 1) == 0 ? monitor.Evaluate(host, 443, null) : monitor.Evaluate("https://" + host + "/", null);
                    long g = d.PolicyGeneration;
                    bool expectAllow = (g % 2 == 0) == (host[0] == 'e');
                    if (g < 1 || g > Generations || d.PolicyDigest != digests[g] || d.IsAllowed != expectAllow || d.Target.Host != host)
                    {
                        failures.Enqueue($"{host}: generation {g}, digest {d.PolicyDigest}, {d.Verdict} {d.Reason}");
                    }

                    seen.TryAdd(g, 0);
                    local++;
                }

                var state = monitor.State;
                if (state.Snapshot is null || state.Generation != state.Snapshot.Generation || state.Digest != digests[state.Generation] || state.IsStale || state.Problems.Count != 0)
                {
                    failures.Enqueue($"torn state: generation {state.Generation}, stale {state.IsStale}");
                }

                Interlocked.Increment(ref rounds[worker]);
            }

            Interlocked.Add(ref evaluated, local);
        }

        // Waits until every worker has run a whole round that began after this call, so each has evaluated against
        // the state current now. Without it the outcome depended on scheduling: on a loaded machine the workers could
        // start after the last reload, or after the stop, and see one generation or evaluate nothing. The deadline only
        // turns a stuck worker into a failure; a slow machine waits longer.
        void EveryWorkerRunsAWholeRound()
        {
            long[] from = [.. rounds.Select((_, w) => Interlocked.Read(ref rounds[w]))];
            SpinWait.SpinUntil(() => Enumerable.Range(0, Workers).All(w => Interlocked.Read(ref rounds[w]) >= from[w] + 2), TimeSpan.FromSeconds(60))
                .Should().BeTrue("every evaluator makes progress");
        }

        var workers = Enumerable.Range(0, Workers).Select(w => Task.Factory.StartNew(() => Evaluate(w), TaskCreationOptions.LongRunning)).ToArray();
        EveryWorkerRunsAWholeRound();
        for (int g = 2; g <= Generations; g++)
        {
            source.Update(Doc(g));
            monitor.Reload();
            if (g % 50 == 0)
            {
                // Reloads stay back to back in between (the race under test); this only keeps the workers in step.
                EveryWorkerRunsAWholeRound();
            }
        }

        EveryWorkerRunsAWholeRound();
        stop.Cancel();
        await Task.WhenAll(workers).WaitAsync(TimeSpan.FromMinutes(2));

        failures.Should().BeEmpty();
        monitor.State.Generation.Should().Be(Generations);
        evaluated.Should().BeGreaterThan(0);
        seen.Should().ContainKeys([1L, (long)Generations], "the evaluators saw the first and the last policy (and the changes between)");
        seen.Count.Should().BeGreaterThan(1, "the evaluators saw the policy change under them");

        static byte[] Doc(int g) =>
            Encoding.UTF8.GetBytes($$"""{"schemaVersion":1,"generation":{{g}},"allow":[{"host":"{{(g % 2 == 0 ? "even" : "odd")}}.example.org"}]}""");
    }

    private sealed class CountingSource(IEgressPolicySource inner) : IEgressPolicySource
    {
        private int _loads;

        public int Loads => Volatile.Read(ref _loads);

        public string Name => inner.Name;

        public EgressPolicySnapshot Load()
        {
            Interlocked.Increment(ref _loads);
            return inner.Load();
        }

        public IChangeToken GetChangeToken() => inner.GetChangeToken();
    }

    private sealed class ThrowingSource : IEgressPolicySource
    {
        public string Name => "throwing";

        public EgressPolicySnapshot Load() => throw new InvalidOperationException("boom");

        public IChangeToken GetChangeToken() => new CancellationChangeToken(CancellationToken.None);
    }

    private sealed class MemoryLastKnownGood(EgressPolicySnapshot? initial) : IEgressPolicyLastKnownGoodStore
    {
        public List<EgressPolicySnapshot> Saved { get; } = [];

        public EgressPolicySnapshot? Load() => initial;

        public void Save(EgressPolicySnapshot snapshot) => Saved.Add(snapshot);
    }

    private sealed class ThrowingLastKnownGood : IEgressPolicyLastKnownGoodStore
    {
        public EgressPolicySnapshot? Load() => throw new IOException("disk gone");

        public void Save(EgressPolicySnapshot snapshot) => throw new IOException("disk gone");
    }
}
