using Kars.Policy.Egress;
using Microsoft.Extensions.Time.Testing;
using static Kars.Policy.Tests.Egress.EgressTestHelpers;

namespace Kars.Policy.Tests.Egress;

public class EgressPolicyEvaluationTests
{
    private const string Feed = "/policies/feeds/feed.txt";

    private static readonly string Policy = """
        {
          "schemaVersion": 1,
          "generation": 7,
          "allow": [
            { "host": "api.github.com" },
            { "host": "*.githubusercontent.com", "ports": [443] },
            { "host": "registry.npmjs.org", "ports": ["*"] },
            { "host": "*.partner.example" },
            { "host": "good.example", "ports": [8443] },
            { "cidr": "203.0.113.0/24", "ports": [443, 8443] },
            { "cidr": "2001:db8::/32" },
            { "cidr": "10.20.0.0/16" }
          ],
          "blocklist": { "domains": ["evil.example"], "files": ["feeds/feed.txt"] },
          "blocklistExceptions": ["cdn.partner.example"],
          "approvals": [
            { "name": "inc-123", "hosts": [{ "host": "temp.vendor.example", "port": 443 }, { "host": "bad.partner.example", "port": 443 }],
              "reason": "incident 123", "effectiveAt": "2030-01-01T00:00:00Z", "expiresAt": "2030-01-02T00:00:00Z" }
          ]
        }
        """;

    private static EgressPolicy Create(EgressMode? mode = null, FakeTimeProvider? time = null, params string[] privateAllow)
    {
        var options = new KarsEgressOptions { Mode = mode };
        foreach (string cidr in privateAllow)
        {
            options.PrivateAllow.Add(cidr);
        }

        return Load(Policy, options, time, (Feed, "partner.example\n||tracker.example^\n0.0.0.0 c2.example\n"));
    }

    [Theory]
    [InlineData("api.github.com", 443, EgressReason.Allowlisted, "api.github.com")]
    [InlineData("api.github.com", 80, EgressReason.PortNotAllowed, "api.github.com")]
    [InlineData("www.api.github.com", 443, EgressReason.NotAllowlisted, null)]
    [InlineData("github.com", 443, EgressReason.NotAllowlisted, null)]
    [InlineData("raw.githubusercontent.com", 443, EgressReason.Allowlisted, "*.githubusercontent.com")]
    [InlineData("a.b.c.githubusercontent.com", 443, EgressReason.Allowlisted, "*.githubusercontent.com")]
    [InlineData("githubusercontent.com", 443, EgressReason.NotAllowlisted, null)]
    [InlineData("evilgithubusercontent.com", 443, EgressReason.NotAllowlisted, null)]
    [InlineData("raw.githubusercontent.com", 80, EgressReason.PortNotAllowed, "*.githubusercontent.com")]
    [InlineData("registry.npmjs.org", 1, EgressReason.Allowlisted, "registry.npmjs.org")]
    [InlineData("registry.npmjs.org", 65535, EgressReason.Allowlisted, "registry.npmjs.org")]
    [InlineData("good.example", 443, EgressReason.PortNotAllowed, "good.example")]
    [InlineData("good.example", 8443, EgressReason.Allowlisted, "good.example")]
    public void Evaluate_StrictRules_MatchesHostAndPort(string host, int port, EgressReason reason, string? rule)
    {
        var decision = Create().Evaluate(host, port);

        decision.Reason.Should().Be(reason);
        decision.IsAllowed.Should().Be(reason == EgressReason.Allowlisted);
        decision.Rule.Should().Be(rule);
        decision.Mode.Should().Be(EgressMode.Strict);
        decision.PolicyGeneration.Should().Be(7);
        decision.PolicyDigest.Should().StartWith("sha256:").And.HaveLength(71);
        decision.WouldDeny.Should().BeFalse();
    }

    [Theory]
    [InlineData("evil.example")]
    [InlineData("a.b.evil.example")]
    [InlineData("partner.example")]
    [InlineData("www.partner.example")]
    [InlineData("tracker.example")]
    [InlineData("sub.tracker.example")]
    [InlineData("c2.example")]
    public void Evaluate_BlocklistedNameOrParent_DeniedEvenWhenAllowlisted(string host)
    {
        var decision = Create().Evaluate(host, 443);

        decision.Reason.Should().Be(EgressReason.Blocklisted);
        decision.IsAllowed.Should().BeFalse();
        decision.Rule.Should().NotBeNull();
    }

    [Fact]
    public void Evaluate_BlocklistHit_RuleNamesSourceAndListedDomain()
    {
        Create().Evaluate("www.partner.example", 443).Rule.Should().Be("blocklist feeds/feed.txt: partner.example");
        Create().Evaluate("x.evil.example", 443).Rule.Should().Be("blocklist: evil.example");
    }

    [Theory]
    [InlineData("a.b.zip", EgressReason.Blocklisted, "blocklist: zip")]
    [InlineData("b.zip", EgressReason.Blocklisted, "blocklist: zip")]
    [InlineData("zip", EgressReason.Blocklisted, "blocklist: zip")]
    [InlineData("a.b.example", EgressReason.Allowlisted, "*.b.example")]
    public void Evaluate_SingleLabelBlocklistDomain_DeniesEveryNameUnderIt(string host, EgressReason reason, string rule)
    {
        // The suffix walk skips a name's last label unless a single-label name is listed: here one is, so "zip" is checked.
        var policy = Load("""{"schemaVersion":1,"allow":[{"host":"*.b.zip"},{"host":"*.b.example"}],"blocklist":{"domains":["zip"]}}""");

        var decision = policy.Evaluate(host, 443);

        decision.Reason.Should().Be(reason);
        decision.Rule.Should().Be(rule);
    }

    [Fact]
    public void Evaluate_BlocklistException_ExactNameOnlyThenAllowlist()
    {
        var policy = Create();

        policy.Evaluate("cdn.partner.example", 443).Reason.Should().Be(EgressReason.Allowlisted);
        policy.Evaluate("x.cdn.partner.example", 443).Reason.Should().Be(EgressReason.Blocklisted);
    }

    [Theory]
    [InlineData(EgressMode.Strict)]
    [InlineData(EgressMode.Learn)]
    public void Evaluate_Blocklisted_DeniedInEveryMode(EgressMode mode)
    {
        Create(mode).Evaluate("evil.example", 443).Reason.Should().Be(EgressReason.Blocklisted);
    }

    [Fact]
    public void Evaluate_ActiveApproval_AllowsHostAndPortOnlyInsideWindow()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2029, 12, 31, 23, 59, 59, TimeSpan.Zero));
        var policy = Create(time: time);

        policy.Evaluate("temp.vendor.example", 443).Reason.Should().Be(EgressReason.NotAllowlisted);

        time.SetUtcNow(new DateTimeOffset(2030, 1, 1, 0, 0, 0, TimeSpan.Zero));
        var approved = policy.Evaluate("temp.vendor.example", 443);
        approved.Reason.Should().Be(EgressReason.Approved);
        approved.Rule.Should().Be("approval inc-123: temp.vendor.example:443");
        policy.Evaluate("temp.vendor.example", 8443).Reason.Should().Be(EgressReason.PortNotAllowed);
        policy.Evaluate("sub.temp.vendor.example", 443).Reason.Should().Be(EgressReason.NotAllowlisted);

        time.SetUtcNow(new DateTimeOffset(2030, 1, 1, 23, 59, 59, 999, TimeSpan.Zero));
        policy.Evaluate("temp.vendor.example", 443).Reason.Should().Be(EgressReason.Approved);

        time.SetUtcNow(new DateTimeOffset(2030, 1, 2, 0, 0, 0, TimeSpan.Zero));
        policy.Evaluate("temp.vendor.example", 443).Reason.Should().Be(EgressReason.NotAllowlisted);
    }

    [Theory]
    [InlineData(EgressMode.Strict)]
    [InlineData(EgressMode.Learn)]
    public void Evaluate_ActiveApprovalOnOnePort_LiftsBlocklistOnThatPortOnly(EgressMode mode)
    {
        // Regression: an approval of cdn.partner.example:443 must not unblock the feed entry on any other port,
        // even where an any-port allow rule (or Learn mode) would otherwise let the name through.
        string doc = """
            {"schemaVersion":1,"generation":1,
             "allow":[{"host":"*.partner.example","ports":["*"]}],
             "blocklist":{"domains":["cdn.partner.example"]},
             "approvals":[{"name":"a","hosts":[{"host":"cdn.partner.example","port":443}],"reason":"r",
               "effectiveAt":"2030-01-01T00:00:00Z","expiresAt":"2030-01-02T00:00:00Z"}]}
            """;
        var policy = Load(doc, new KarsEgressOptions { Mode = mode }, new FakeTimeProvider(Start));

        policy.Evaluate("cdn.partner.example", 443).IsAllowed.Should().BeTrue();
        policy.Evaluate("cdn.partner.example", 22).Reason.Should().Be(EgressReason.Blocklisted);
        policy.Evaluate("cdn.partner.example", 8080).Reason.Should().Be(EgressReason.Blocklisted);
        policy.GetLearnedHosts().Should().BeEmpty();
    }

    [Fact]
    public void Evaluate_ActiveApprovalOfExactName_LiftsBlocklistUntilExpiry()
    {
        var time = new FakeTimeProvider(Start);
        var policy = Create(time: time);

        policy.Evaluate("bad.partner.example", 443).Reason.Should().Be(EgressReason.Allowlisted);

        time.SetUtcNow(new DateTimeOffset(2030, 1, 3, 0, 0, 0, TimeSpan.Zero));
        policy.Evaluate("bad.partner.example", 443).Reason.Should().Be(EgressReason.Blocklisted);
    }

    [Theory]
    [InlineData("127.0.0.1")]
    [InlineData("10.0.0.1")]
    [InlineData("169.254.169.254")]
    [InlineData("192.168.1.1")]
    [InlineData("100.64.0.1")]
    [InlineData("http://10.0.0.1/steal")]
    [InlineData("0x7f.1")]
    [InlineData("2130706433")]
    public void Evaluate_NonPublicAddress_DeniedInEveryMode(string target)
    {
        Create(EgressMode.Strict).Evaluate(target).Reason.Should().Be(EgressReason.NonPublicAddress);
        Create(EgressMode.Learn).Evaluate(target).Reason.Should().Be(EgressReason.NonPublicAddress);
    }

    [Theory]
    [InlineData("localhost")]
    [InlineData("LOCALHOST.")]
    [InlineData("http://localhost:8080/admin")]
    [InlineData("api.localhost:443")]
    [InlineData("a.b.localhost")]
    public void Evaluate_LocalhostName_DeniedAsNonPublicInEveryMode(string target)
    {
        var strict = Create(EgressMode.Strict).Evaluate(target);
        var learn = Create(EgressMode.Learn);

        strict.Reason.Should().Be(EgressReason.NonPublicAddress);
        learn.Evaluate(target).Reason.Should().Be(EgressReason.NonPublicAddress);
        learn.Evaluate(target).IsAllowed.Should().BeFalse();
        learn.GetLearnedHosts().Should().BeEmpty();
    }

    [Theory]
    [InlineData("notlocalhost")]
    [InlineData("localhost.example")]
    [InlineData("mylocalhost.com")]
    public void Evaluate_NameMerelyContainingLocalhost_IsNotTreatedAsLoopback(string host)
    {
        Create(EgressMode.Learn).Evaluate(host, 443).Reason.Should().Be(EgressReason.Learned);
    }

    [Fact]
    public void Evaluate_NonPublicAddressInPrivateAllow_NeedsCidrRule()
    {
        var policy = Create(null, null, "10.0.0.0/8");

        policy.Evaluate("10.20.1.1", 443).Reason.Should().Be(EgressReason.Allowlisted);
        policy.Evaluate("10.30.1.1", 443).Reason.Should().Be(EgressReason.NotAllowlisted);
        Create().Evaluate("10.20.1.1", 443).Reason.Should().Be(EgressReason.NonPublicAddress);
    }

    [Theory]
    [InlineData("203.0.113.9:443", EgressReason.Allowlisted)]
    [InlineData("203.0.113.9:8443", EgressReason.Allowlisted)]
    [InlineData("203.0.113.9:22", EgressReason.PortNotAllowed)]
    [InlineData("198.51.100.1:443", EgressReason.NotAllowlisted)]
    [InlineData("[2001:db8::1]:443", EgressReason.Allowlisted)]
    [InlineData("[2001:db9::1]:443", EgressReason.NotAllowlisted)]
    public void Evaluate_IpTargets_MatchOnlyCidrRules(string target, EgressReason reason)
    {
        Create().Evaluate(target).Reason.Should().Be(reason);
    }

    [Fact]
    public void Evaluate_IpTargetNoCidrCovers_DeniedInLearnModeAndNotRecorded()
    {
        var policy = Create(EgressMode.Learn);

        policy.Evaluate("198.51.100.1", 443).Reason.Should().Be(EgressReason.NotAllowlisted);
        policy.GetLearnedHosts().Should().BeEmpty();
    }

    [Fact]
    public void Evaluate_DnsRuleNeverMatchesIpAndCidrNeverMatchesName()
    {
        string json = Doc("""{"host":"one.example.com"},{"cidr":"198.51.100.0/24"}""");
        var policy = Load(json);

        policy.Evaluate("198.51.100.7", 443).Reason.Should().Be(EgressReason.Allowlisted);
        policy.Evaluate("one.example.com", 443).Reason.Should().Be(EgressReason.Allowlisted);
        policy.Evaluate("198-51-100-7.example.com", 443).Reason.Should().Be(EgressReason.NotAllowlisted);
    }

    [Theory]
    [InlineData("")]
    [InlineData("http://evil.com\\@api.github.com/")]
    [InlineData("ftp://api.github.com/")]
    [InlineData("api.github.com:0")]
    [InlineData("api.github.com:70000")]
    [InlineData("https://api.github.com:99999/")]
    public void Evaluate_InvalidTarget_DeniedInEveryMode(string target)
    {
        var strict = Create().Evaluate(target);
        strict.Reason.Should().Be(EgressReason.InvalidTarget);
        strict.TargetError.Should().NotBe(EgressTargetError.None);
        Create(EgressMode.Learn).Evaluate(target).Reason.Should().Be(EgressReason.InvalidTarget);
    }

    [Fact]
    public void Evaluate_DefaultTarget_InvalidTarget()
    {
        Create().Evaluate(default(EgressTarget)).Reason.Should().Be(EgressReason.InvalidTarget);
    }

    [Theory]
    [InlineData("API.GitHub.com")]
    [InlineData("api.github.com.")]
    [InlineData("https://API.GITHUB.COM./x?y#z")]
    [InlineData("https://user@api.github.com/")]
    [InlineData("api.github.com:0443")]
    public void Evaluate_NonCanonicalSpellings_NormalisedBeforeMatching(string target)
    {
        Create().Evaluate(target).Reason.Should().Be(EgressReason.Allowlisted);
    }

    [Theory]
    [InlineData("EVIL.example")]
    [InlineData("evil.example.")]
    [InlineData("HTTPS://evil.example/")]
    [InlineData("https://user@evil.example/")]
    public void Evaluate_BlocklistBypassSpellings_StillBlockedInLearnMode(string target)
    {
        Create(EgressMode.Learn).Evaluate(target).Reason.Should().Be(EgressReason.Blocklisted);
    }

    [Fact]
    public void Evaluate_UriOverload_UsesIdnHost()
    {
        Create().Evaluate(new Uri("https://api.github.com/repos")).Reason.Should().Be(EgressReason.Allowlisted);
    }

    [Fact]
    public void Evaluate_HostPortOverloadWithIpText_TreatedAsAddressNotName()
    {
        var policy = Create(EgressMode.Learn);

        policy.Evaluate("127.0.0.1", 443).Reason.Should().Be(EgressReason.NonPublicAddress);
        policy.Evaluate("8.8.8.8", 443).Reason.Should().Be(EgressReason.NotAllowlisted);
        policy.GetLearnedHosts().Should().BeEmpty();
    }

    [Fact]
    public void Evaluate_LearnMode_AllowsUnlistedNameWithWouldDenyAndRecordsIt()
    {
        var policy = Create(EgressMode.Learn);

        var decision = policy.Evaluate(EgressTestHelpers.DnsTarget("new.example.org", 443), "agent-a");

        decision.Verdict.Should().Be(EgressVerdict.Allow);
        decision.Reason.Should().Be(EgressReason.Learned);
        decision.WouldDeny.Should().BeTrue();
        decision.Mode.Should().Be(EgressMode.Learn);
        policy.GetLearnedHosts().Should().ContainSingle().Which.Host.Should().Be("new.example.org");
    }

    [Fact]
    public void Evaluate_LearnModeThroughEveryOverload_SameLearnedDecisionEachRecorded()
    {
        // Each overload reaches the engine by its own path (the host-and-port one builds its decision itself): a Learned
        // decision must be the same through all of them, WouldDeny included, and be recorded every time (never cached).
        var policy = Create(EgressMode.Learn);

        EgressDecision[] decisions =
        [
            policy.Evaluate(EgressTestHelpers.DnsTarget("new.example.org", 443), "agent-a"),
            policy.Evaluate("new.example.org", 443, "agent-a"),
            policy.Evaluate(new string("new.example.org".AsSpan()), 443, "agent-a"),
            policy.Evaluate("new.example.org", 443, "agent-a"),
            policy.Evaluate("https://new.example.org/v1", "agent-a"),
            policy.Evaluate(new Uri("https://new.example.org/v1"), "agent-a"),
            policy.Evaluate("new.example.org", 443),
        ];

        foreach (var decision in decisions)
        {
            decision.Verdict.Should().Be(EgressVerdict.Allow);
            decision.Reason.Should().Be(EgressReason.Learned);
            decision.WouldDeny.Should().BeTrue("a Learned decision is one that Strict mode would deny");
            decision.Mode.Should().Be(EgressMode.Learn);
            decision.Rule.Should().BeNull();
            decision.Target.Should().Be(EgressTestHelpers.DnsTarget("new.example.org", 443));
            decision.PolicyDigest.Should().Be(decisions[0].PolicyDigest).And.NotBeNull();
        }

        policy.GetLearnedHosts().Should().HaveCount(2, "one destination per sandbox: agent-a and no sandbox");
        policy.GetLearnedHosts().Sum(h => h.Count).Should().Be(decisions.Length, "every decision is recorded, none answered from the cache");
    }

    [Fact]
    public void Evaluate_LearnMode_AllowlistedStillReportsAllowlisted()
    {
        var decision = Create(EgressMode.Learn).Evaluate("api.github.com", 443);

        decision.Reason.Should().Be(EgressReason.Allowlisted);
        decision.WouldDeny.Should().BeFalse();
    }

    [Fact]
    public void Evaluate_DocumentMode_UsedWhenOptionsDoNotOverride()
    {
        var learn = Load("""{"schemaVersion":1,"mode":"Learn","allow":[]}""");
        var overridden = Load("""{"schemaVersion":1,"mode":"Learn","allow":[]}""", new KarsEgressOptions { Mode = EgressMode.Strict });

        learn.Evaluate("x.example.com", 443).Reason.Should().Be(EgressReason.Learned);
        overridden.Evaluate("x.example.com", 443).Reason.Should().Be(EgressReason.NotAllowlisted);
    }

    [Theory]
    [InlineData(EgressMode.Strict)]
    [InlineData(EgressMode.Learn)]
    public void Evaluate_NoPolicyLoaded_DeniesInBothModes(EgressMode mode)
    {
        var policy = new EgressPolicy("/missing.json", new KarsEgressOptions { Mode = mode }, new System.IO.Abstractions.TestingHelpers.MockFileSystem());

        var decision = policy.Evaluate("api.github.com", 443);

        decision.Reason.Should().Be(EgressReason.NoPolicy);
        decision.IsAllowed.Should().BeFalse();
        decision.PolicyDigest.Should().BeNull();
        policy.Evaluate("not a host").Reason.Should().Be(EgressReason.NoPolicy);
    }

    [Fact]
    public void Evaluate_EmptyPolicy_DeniesNotAllowlisted()
    {
        Load("""{"schemaVersion":1}""").Evaluate("api.github.com", 443).Reason.Should().Be(EgressReason.NotAllowlisted);
    }

    [Fact]
    public void Evaluate_MostSpecificMatchingRuleIsReported()
    {
        var policy = Load(Doc("""{"host":"*.example.com","ports":["*"]},{"host":"api.example.com"}"""));

        policy.Evaluate("api.example.com", 443).Rule.Should().Be("api.example.com");
        policy.Evaluate("api.example.com", 80).Rule.Should().Be("*.example.com");
    }

    [Fact]
    public async Task Evaluate_ConcurrentWithReload_AlwaysSeesAWholeSnapshot()
    {
        var fs = FileSystemWith(Doc("""{"host":"a.example.com"}"""));
        var policy = EgressPolicy.Load(PolicyPath, null, fs);
        using var stop = new CancellationTokenSource();
        var reader = Task.Run(() =>
        {
            int bad = 0;
            while (!stop.IsCancellationRequested)
            {
                var d = policy.Evaluate("a.example.com", 443);
                if (d.Reason is not (EgressReason.Allowlisted or EgressReason.NotAllowlisted))
                {
                    bad++;
                }
            }

            return bad;
        });

        for (int i = 0; i < 50; i++)
        {
            fs.File.WriteAllText(PolicyPath, i % 2 == 0 ? Doc("""{"host":"b.example.com"}""") : Doc("""{"host":"a.example.com"}"""));
            policy.Reload().Should().BeTrue();
        }

        await stop.CancelAsync();
        (await reader).Should().Be(0);
    }
}
