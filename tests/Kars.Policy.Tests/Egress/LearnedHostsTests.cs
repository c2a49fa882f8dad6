using System.IO.Abstractions.TestingHelpers;
using Kars.Policy.Egress;
using Microsoft.Extensions.Time.Testing;
using NodaTime;
using static Kars.Policy.Tests.Egress.EgressTestHelpers;

namespace Kars.Policy.Tests.Egress;

public class LearnedHostsTests
{
    private static EgressPolicy LearnPolicy(FakeTimeProvider time, int capacity = 16, MockFileSystem? fs = null) =>
        EgressPolicy.Load(PolicyPath, new KarsEgressOptions { Mode = EgressMode.Learn, LearnedCapacity = capacity }, fs ?? FileSystemWith(Doc("""{"host":"api.github.com"}""")), time);

    [Fact]
    public void Record_SameDestination_DeduplicatedWithCountAndTimes()
    {
        var time = new FakeTimeProvider(Start);
        var policy = LearnPolicy(time);

        policy.Evaluate("new.example.org", 443, "agent-a");
        time.Advance(TimeSpan.FromMinutes(5));
        policy.Evaluate("new.example.org", 443, "agent-a");

        var learned = policy.GetLearnedHosts().Should().ContainSingle().Subject;
        learned.Sandbox.Should().Be("agent-a");
        learned.Count.Should().Be(2);
        learned.FirstSeen.Should().Be(Instant.FromDateTimeOffset(Start));
        learned.LastSeen.Should().Be(Instant.FromDateTimeOffset(Start.AddMinutes(5)));
    }

    [Fact]
    public void Record_DistinctSandboxHostOrPort_DistinctEntries()
    {
        var policy = LearnPolicy(new FakeTimeProvider(Start));

        policy.Evaluate("a.example.org", 443, "s1");
        policy.Evaluate("a.example.org", 443, "s2");
        policy.Evaluate("a.example.org", 8443, "s1");
        policy.Evaluate("b.example.org", 443, "s1");
        policy.Evaluate("b.example.org", 443, null);

        policy.GetLearnedHosts().Should().HaveCount(5);
        policy.GetLearnedHosts().Select(h => h.Sandbox).Should().Contain("unknown");
    }

    [Fact]
    public void Record_AllowlistedBlocklistedOrIp_NotRecorded()
    {
        var policy = LearnPolicy(new FakeTimeProvider(Start));

        policy.Evaluate("api.github.com", 443, "s");
        policy.Evaluate("93.184.216.34", 443, "s");
        policy.Evaluate("[2606:4700::1]", 443, "s");

        policy.GetLearnedHosts().Should().BeEmpty();
    }

    [Fact]
    public void Record_AtCapacity_DropsNewAndCounts()
    {
        var policy = LearnPolicy(new FakeTimeProvider(Start), capacity: 2);

        policy.Evaluate("a.example.org", 443, "s");
        policy.Evaluate("b.example.org", 443, "s");
        var third = policy.Evaluate("c.example.org", 443, "s");
        policy.Evaluate("a.example.org", 443, "s");

        third.Reason.Should().Be(EgressReason.Learned);
        policy.GetLearnedHosts().Select(h => h.Host).Should().Equal("a.example.org", "b.example.org");
        policy.LearnedHostsDropped.Should().Be(1);
    }

    [Fact]
    public void SaveAndLoad_RoundTripsThroughFileSystem()
    {
        var fs = FileSystemWith(Doc("""{"host":"api.github.com"}"""));
        var time = new FakeTimeProvider(Start);
        var policy = LearnPolicy(time, fs: fs);
        policy.Evaluate("a.example.org", 443, "s");
        policy.Evaluate("a.example.org", 443, "s");

        policy.SaveLearnedHosts("/state/learned.json");
        var loaded = LearnedHostStore.Load(fs, "/state/learned.json");

        loaded.Should().ContainSingle();
        loaded[0].Host.Should().Be("a.example.org");
        loaded[0].Count.Should().Be(2);
        loaded[0].FirstSeen.Should().Be(Instant.FromDateTimeOffset(Start));
        fs.File.Exists("/state/learned.json.tmp").Should().BeFalse();
    }

    [Fact]
    public void ExportLearnedPolicy_ProducesLoadableStrictDocument()
    {
        var fs = FileSystemWith(Doc("""{"host":"api.github.com"}"""));
        var policy = LearnPolicy(new FakeTimeProvider(Start), fs: fs);
        policy.Evaluate("a.example.org", 443, "s1");
        policy.Evaluate("a.example.org", 8443, "s2");
        policy.Evaluate("b.example.org", 443, "s1");

        string exported = policy.ExportLearnedPolicy();
        fs.AddFile("/proposed/policy.json", new MockFileData(exported));
        var proposed = EgressPolicy.Load("/proposed/policy.json", null, fs);

        proposed.Mode.Should().Be(EgressMode.Strict);
        proposed.Generation.Should().Be(4);
        proposed.Evaluate("a.example.org", 8443).Reason.Should().Be(EgressReason.Allowlisted);
        proposed.Evaluate("b.example.org", 443).Reason.Should().Be(EgressReason.Allowlisted);
        proposed.Evaluate("b.example.org", 8443).Reason.Should().Be(EgressReason.PortNotAllowed);
    }

    [Fact]
    public async Task Record_ConcurrentCallers_CountsEveryDecisionOnce()
    {
        var policy = LearnPolicy(new FakeTimeProvider(Start), capacity: 100);
        string[] hosts = ["a.example.org", "b.example.org", "c.example.org"];

        await Task.WhenAll(Enumerable.Range(0, 8).Select(t => Task.Run(() =>
        {
            for (int i = 0; i < 1000; i++)
            {
                policy.Evaluate(hosts[i % hosts.Length], 443, "s").Reason.Should().Be(EgressReason.Learned);
            }
        })));

        var learned = policy.GetLearnedHosts();
        learned.Should().HaveCount(3);
        learned.Sum(h => h.Count).Should().Be(8000);
    }

    [Fact]
    public void ExportLearnedPolicy_SingleLabelLearned_IsLeftOutSoTheDocumentLoads()
    {
        // Regression (issue 7 item 9): Learn mode learns single-label names, which no allow rule may name.
        var fs = FileSystemWith(Doc("""{"host":"api.github.com"}"""));
        var policy = LearnPolicy(new FakeTimeProvider(Start), fs: fs);
        policy.Evaluate("intranet", 443, "s").Reason.Should().Be(EgressReason.Learned);
        policy.Evaluate("a.example.org", 443, "s");

        string exported = policy.ExportLearnedPolicy();
        fs.AddFile("/proposed/policy.json", new MockFileData(exported));
        var proposed = EgressPolicy.Load("/proposed/policy.json", null, fs);

        proposed.Evaluate("a.example.org", 443).Reason.Should().Be(EgressReason.Allowlisted);
        exported.Should().NotContain("intranet");
    }

    [Fact]
    public void ExportPolicy_ReportsEverySkippedHost()
    {
        var skipped = new List<EgressPolicyProblem>();
        var at = Instant.FromDateTimeOffset(Start);
        var hosts = new[]
        {
            new LearnedHost("s", "intranet", 443, at, at, 1),
            new LearnedHost("s", "wiki", 80, at, at, 1),
            new LearnedHost("s", "ok.example.org", 443, at, at, 1),
        };

        string exported = LearnedHostStore.ExportPolicy(hosts, 1, skipped, "learned.json");

        skipped.Select(p => p.Path).Should().Equal("host \"intranet\"", "host \"wiki\"");
        exported.Should().Contain("ok.example.org");
    }

    [Theory]
    [InlineData("""{"schemaVersion":2,"learned":[]}""", "$.schemaVersion")]
    [InlineData("""{"learned":[]}""", "$.schemaVersion")]
    [InlineData("""{"schemaVersion":"1","learned":[]}""", "$.schemaVersion")]
    public void Load_UnknownOrMissingSchemaVersion_IsRefused(string json, string path)
    {
        var fs = new MockFileSystem();
        fs.AddFile("/state/learned.json", new MockFileData(json));

        var act = () => LearnedHostStore.Load(fs, "/state/learned.json");

        act.Should().Throw<EgressPolicyLoadException>().Which.Problems.Should().ContainSingle().Which.Path.Should().Be(path);
    }
}
