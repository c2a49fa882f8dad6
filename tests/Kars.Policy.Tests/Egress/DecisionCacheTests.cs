using System.Runtime.CompilerServices;
using Kars.Policy.Egress;
using Microsoft.Extensions.Time.Testing;
using static Kars.Policy.Tests.Egress.EgressTestHelpers;

namespace Kars.Policy.Tests.Egress;

public class DecisionCacheTests
{
    [Fact]
    public void Evaluate_RepeatedThenReloaded_UsesNewSnapshot()
    {
        var fs = FileSystemWith(Doc("""{"host":"a.example.com"}"""));
        var policy = EgressPolicy.Load(PolicyPath, null, fs);
        for (int i = 0; i < 10; i++)
        {
            policy.Evaluate("a.example.com", 443).Reason.Should().Be(EgressReason.Allowlisted);
        }

        fs.File.WriteAllText(PolicyPath, Doc("""{"host":"b.example.com"}"""));
        policy.Reload().Should().BeTrue();

        policy.Evaluate("a.example.com", 443).Reason.Should().Be(EgressReason.NotAllowlisted);
    }

    [Fact]
    public void Evaluate_EqualStringsDifferentInstancesAndPorts_DecidedSeparatelyByPort()
    {
        var policy = Load(Doc("""{"host":"a.example.com"}"""));
        string first = new("a.example.com".AsSpan());
        string second = new("a.example.com".AsSpan());

        policy.Evaluate(first, 443).Reason.Should().Be(EgressReason.Allowlisted);
        policy.Evaluate(second, 443).Reason.Should().Be(EgressReason.Allowlisted);
        policy.Evaluate(second, 80).Reason.Should().Be(EgressReason.PortNotAllowed);
        policy.Evaluate("A.EXAMPLE.COM", 80).Reason.Should().Be(EgressReason.PortNotAllowed);
    }

    [Theory]
    [InlineData("a.example.com", 443, EgressMode.Strict)]
    [InlineData("a.example.com", 80, EgressMode.Strict)]
    [InlineData("x.blocked.example", 443, EgressMode.Strict)]
    [InlineData("www.feed.example", 443, EgressMode.Strict)]
    [InlineData("localhost", 443, EgressMode.Strict)]
    [InlineData("nothing.example.org", 443, EgressMode.Strict)]
    [InlineData("a.example.com", 443, EgressMode.Learn)]
    [InlineData("x.blocked.example", 443, EgressMode.Learn)]
    public void Evaluate_HostRepeatedOnAWarmCache_StoredOnTheSecondMissAsFirstDecided(string host, int port, EgressMode mode)
    {
        // With this policy's cache already on the thread, a host's first decision is only noted and its second stores
        // the parts the host-and-port path decided from (no decision value is built before it is returned); the third
        // is answered from the entry and must equal the first in every field.
        var policy = Load(
            """{"schemaVersion":1,"generation":7,"allow":[{"host":"a.example.com"}],"blocklist":{"domains":["blocked.example"],"files":["feed.txt"]}}""",
            new KarsEgressOptions { Mode = mode },
            null,
            ("/policies/feed.txt", "feed.example\n"));
        policy.Evaluate("localhost", 1).Reason.Should().Be(EgressReason.NonPublicAddress, "a decision cached in both modes puts this policy's cache on the thread");

        var first = policy.Evaluate(new string(host.AsSpan()), port);
        var second = policy.Evaluate(new string(host.AsSpan()), port);
        var third = policy.Evaluate(new string(host.AsSpan()), port);

        first.Mode.Should().Be(mode);
        ReferenceEquals(second.Target.Host, first.Target.Host).Should().BeFalse("the second call decides again (the first was only noted)");
        ReferenceEquals(third.Target.Host, second.Target.Host).Should().BeTrue("the second call stored its decision and the third is answered from it");
        second.Should().Be(first);
        ShouldEqualInEveryField(third, first, generation: 7);
    }

    [Fact]
    public void Evaluate_TwoPoliciesOnOneThread_NeverShareDecisions()
    {
        var strict = Load(Doc("""{"host":"a.example.com"}"""));
        var other = Load(Doc("""{"host":"b.example.com"}"""));

        for (int i = 0; i < 3; i++)
        {
            strict.Evaluate("a.example.com", 443).IsAllowed.Should().BeTrue();
            other.Evaluate("a.example.com", 443).IsAllowed.Should().BeFalse();
        }
    }

    [Fact]
    public void Evaluate_ApprovalDecisionsRepeated_ExpireOnTime()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2030, 1, 1, 23, 59, 0, TimeSpan.Zero));
        var policy = Load(
            """{"schemaVersion":1,"approvals":[{"name":"a","hosts":[{"host":"t.example.com"}],"reason":"r","effectiveAt":"2030-01-01T00:00:00Z","expiresAt":"2030-01-02T00:00:00Z"}],"blocklist":{"domains":["example.com"]}}""",
            null,
            time);
        for (int i = 0; i < 5; i++)
        {
            policy.Evaluate("t.example.com", 443).Reason.Should().Be(EgressReason.Approved);
        }

        time.Advance(TimeSpan.FromMinutes(1));

        policy.Evaluate("t.example.com", 443).Reason.Should().Be(EgressReason.Blocklisted);
    }

    [Fact]
    public void Evaluate_LearnModeRepeated_CountsEveryDecision()
    {
        var policy = Load("""{"schemaVersion":1,"mode":"Learn"}""");
        for (int i = 0; i < 7; i++)
        {
            policy.Evaluate("n.example.org", 443, "s").Reason.Should().Be(EgressReason.Learned);
        }

        policy.GetLearnedHosts().Single().Count.Should().Be(7);
    }

    /// <summary>A decision answered from the cache equals the one first made, field by field (the struct's equality
    /// compares the same fields; each is named here so a failure says which).</summary>
    internal static void ShouldEqualInEveryField(EgressDecision answered, EgressDecision first, long generation)
    {
        answered.Should().Be(first);
        answered.Verdict.Should().Be(first.Verdict);
        answered.Reason.Should().Be(first.Reason);
        answered.Rule.Should().Be(first.Rule);
        answered.Target.Should().Be(first.Target);
        answered.Mode.Should().Be(first.Mode);
        answered.PolicyDigest.Should().Be(first.PolicyDigest).And.NotBeNull();
        answered.PolicyGeneration.Should().Be(generation);
        answered.WouldDeny.Should().Be(first.WouldDeny);
    }
}

public class DecisionCachePinningTests
{
    [Fact]
    public void Set_OnAThreadThatStaysAlive_DoesNotKeepTheOldSnapshotAlive()
    {
        // A worker thread evaluates against snapshot 1 (its cache gets entries), then a reload replaces the snapshot
        // and the worker goes idle without evaluating again. Snapshot 1 must be collectable while the worker lives.
        using var cached = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        WeakReference? weak = null;
        bool hit = false;
        var worker = new Thread(() =>
        {
            (weak, hit) = FillCacheWithFreshSnapshot();
            cached.Set();
            release.Wait();
        });
        worker.Start();
        cached.Wait();

        try
        {
            hit.Should().BeTrue("the worker's cache had an entry for the old snapshot");
            for (int i = 0; i < 3 && weak!.IsAlive; i++)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }

            weak!.IsAlive.Should().BeFalse();
        }
        finally
        {
            release.Set();
            worker.Join();
        }
    }

    [Theory]
    [InlineData("a.example.com", 443)]
    [InlineData("a.example.com", 80)]
    [InlineData("x.blocked.example", 443)]
    [InlineData("nothing.example.org", 443)]
    public void Evaluate_CachedDecision_EqualsTheDecisionFirstMade(string host, int port)
    {
        // The cache keeps what a decision holds beyond the snapshot's digest and generation and rebuilds it on a hit.
        var policy = Load(
            """{"schemaVersion":1,"generation":7,"allow":[{"host":"a.example.com"}],"blocklist":{"domains":["blocked.example"]}}""");
        var first = policy.Evaluate(new string(host.AsSpan()), port);
        var stored = policy.Evaluate(new string(host.AsSpan()), port);
        var again = policy.Evaluate(new string(host.AsSpan()), port);

        stored.Should().Be(first);
        ReferenceEquals(again.Target.Host, stored.Target.Host).Should().BeTrue("every call passes another string: only a cache hit returns the stored one");
        DecisionCacheTests.ShouldEqualInEveryField(again, first, generation: 7);
    }

    [Fact]
    public void Evaluate_OneCompiledPolicyInTwoModes_NeverSharesDecisions()
    {
        // Two snapshots over one compiled policy, one overriding the mode: a decision cached by one must not answer the other.
        var compiled = Compile("""{"host":"a.example.com"}""");
        var strict = EgressPolicySnapshot.FromCompiled(compiled, EgressCompileSettings.From(new KarsEgressOptions { Mode = EgressMode.Strict }));
        var learn = EgressPolicySnapshot.FromCompiled(compiled, EgressCompileSettings.From(new KarsEgressOptions { Mode = EgressMode.Learn }));

        for (int i = 0; i < 3; i++)
        {
            strict.Evaluate("new.example.org", 443, null).Reason.Should().Be(EgressReason.NotAllowlisted);
            learn.Evaluate("new.example.org", 443, null).Reason.Should().Be(EgressReason.Learned);
            strict.Evaluate("a.example.com", 8443, null).Mode.Should().Be(EgressMode.Strict);
            learn.Evaluate("a.example.com", 8443, null).Mode.Should().Be(EgressMode.Learn);
        }
    }

    [Fact]
    public void Offer_SecondMissOfAHostInARow_StoresIt()
    {
        // A host decided once among many is not stored (no entry write); the second decision of the same host and port
        // in a row at its entry is, and answers from then on. Another host at that entry in between starts over.
        var policy = Compile("""{"host":"a.example.com"}""");
        var warm = Evaluate(policy, "warm.example.com");
        DecisionCache.Set(policy, warm);
        var decision = Evaluate(policy, "a.example.com");
        var other = Evaluate(policy, "b.example.com", 8443);

        DecisionCache.Offer(policy, decision);
        DecisionCache.TryGet(policy, EgressMode.Strict, "a.example.com", 443, out _).Should().BeFalse("a first miss is only noted");
        DecisionCache.Offer(policy, decision);
        DecisionCache.TryGet(policy, EgressMode.Strict, "a.example.com", 443, out var hit).Should().BeTrue("a second miss in a row is stored");
        hit.Should().Be(decision);

        DecisionCache.Offer(policy, other);
        DecisionCache.TryGet(policy, EgressMode.Strict, "b.example.com", 8443, out _).Should().BeFalse();
    }

    [Fact]
    public void Evaluate_NonCanonicalHostRepeated_IsAnsweredFromTheCanonicalEntry()
    {
        // A host that is not canonical ("exAmpLe.com") misses the fast path and is parsed; its canonical decision is
        // offered under the canonical name, stored on the second call and answers the third. Nothing noted for the raw
        // string may disturb that (its entry and check word collide with the canonical name's, with another key).
        var policy = Load("""{"schemaVersion":1,"allow":[{"host":"example.com"}]}""");
        policy.Evaluate("warm.example.org", 443);

        var first = policy.Evaluate(new string("exAmpLe.com".AsSpan()), 443);
        var second = policy.Evaluate(new string("exAmpLe.com".AsSpan()), 443);
        var third = policy.Evaluate(new string("exAmpLe.com".AsSpan()), 443);

        first.Reason.Should().Be(EgressReason.Allowlisted);
        third.Should().Be(first);
        ReferenceEquals(second.Target.Host, first.Target.Host).Should().BeFalse("the second call parses again (only a note was taken)");
        ReferenceEquals(third.Target.Host, second.Target.Host).Should().BeTrue("the second call stored the canonical decision and the third is answered from it");
    }

    [Fact]
    public void TryGet_AfterAnotherSnapshotFilledTheCache_Misses()
    {
        var first = Compile("""{"host":"a.example.com"}""");
        var second = Compile("""{"host":"b.example.com"}""");
        var decision = Evaluate(first, "a.example.com");
        DecisionCache.Set(first, decision);

        DecisionCache.TryGet(first, EgressMode.Strict, "a.example.com", 443, out _).Should().BeTrue();
        DecisionCache.TryGet(second, EgressMode.Strict, "a.example.com", 443, out _).Should().BeFalse();
        second.Identity.Should().NotBe(first.Identity);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static (WeakReference Weak, bool Hit) FillCacheWithFreshSnapshot()
    {
        var snapshot = Compile("""{"host":"a.example.com"}""");
        var decision = Evaluate(snapshot, "a.example.com");
        DecisionCache.Set(snapshot, decision);
        bool hit = DecisionCache.TryGet(snapshot, EgressMode.Strict, "a.example.com", 443, out var again) && again.Reason == EgressReason.Allowlisted;
        return (new WeakReference(snapshot), hit);
    }

    private static CompiledPolicy Compile(string allow) =>
        new PolicyLoader(FileSystemWith(Doc(allow)), new KarsEgressOptions()).Load(PolicyPath);

    private static EgressDecision Evaluate(CompiledPolicy snapshot, string host, int port = 443) =>
        snapshot.Evaluate(EgressTestHelpers.DnsTarget(host, port), EgressMode.Strict, TimeProvider.System, out _, out _);
}
