using System.IO.Abstractions.TestingHelpers;
using Kars.Policy.Egress;
using static Kars.Policy.Tests.Egress.EgressTestHelpers;

namespace Kars.Policy.Tests.Egress;

/// <summary>Issue 7 item 11: overbroad rules load with a warning naming the rule and what it opens, or fail with an option.</summary>
public class OverbroadRuleTests
{
    [Theory]
    [InlineData("""{"cidr":"0.0.0.0/0"}""", "$.allow[0].cidr", "every IPv4 address")]
    [InlineData("""{"cidr":"::/0"}""", "$.allow[0].cidr", "every IPv6 address")]
    [InlineData("""{"cidr":"::ffff:0.0.0.0/96"}""", "$.allow[0].cidr", "every IPv4 address through its IPv4-mapped form")]
    [InlineData("""{"cidr":"64.0.0.0/2"}""", "$.allow[0].cidr", "1,073,741,824 IPv4 addresses")]
    [InlineData("""{"cidr":"2000::/3"}""", "$.allow[0].cidr", "2^125 IPv6 addresses")]
    [InlineData("""{"host":"*.co.uk"}""", "$.allow[0].host", "public suffix \"co.uk\"")]
    [InlineData("""{"host":"*.github.io"}""", "$.allow[0].host", "public suffix \"github.io\"")]
    [InlineData("""{"host":"*.githubusercontent.com"}""", "$.allow[0].host", "public suffix \"githubusercontent.com\"")]
    [InlineData("""{"host":"*.s3.amazonaws.com"}""", "$.allow[0].host", "public suffix \"s3.amazonaws.com\"")]
    [InlineData("""{"host":"*.amazonaws.com"}""", "$.allow[0].host", "also covers the public suffix")]
    public void Load_OverbroadRule_LoadsWithWarningNamingRuleAndReach(string rule, string path, string reach)
    {
        var policy = Load(Doc(rule));

        policy.IsLoaded.Should().BeTrue();
        var warning = policy.Warnings.Should().ContainSingle().Which;
        warning.Path.Should().Be(path);
        warning.Message.Should().StartWith("overbroad rule: ").And.Contain(reach);
    }

    [Theory]
    [InlineData("""{"cidr":"203.0.113.0/24"}""")]
    [InlineData("""{"cidr":"2001:db8::/32"}""")]
    [InlineData("""{"cidr":"9.0.0.0/9"}""")]
    [InlineData("""{"host":"*.example.com"}""")]
    [InlineData("""{"host":"*.example.co.uk"}""")]
    [InlineData("""{"host":"*.alice.github.io"}""")]
    [InlineData("""{"host":"co.uk"}""")]
    [InlineData("""{"host":"github.io"}""")]
    public void Load_NarrowRule_HasNoWarning(string rule)
    {
        Load(Doc(rule)).Warnings.Should().BeEmpty();
    }

    [Fact]
    public void Load_OverbroadWithOption_IsErrorReportedWithTheOthers()
    {
        var options = new KarsEgressOptions { TreatOverbroadRulesAsErrors = true };
        var fs = FileSystemWith(Doc("""{"cidr":"0.0.0.0/0"},{"host":"*.co.uk"},{"host":"*"}"""));

        var policy = new EgressPolicy(PolicyPath, options, fs);

        policy.IsLoaded.Should().BeFalse();
        policy.LastLoadProblems.Select(p => p.Path).Should().BeEquivalentTo("$.allow[0].cidr", "$.allow[1].host", "$.allow[2].host");
    }

    [Fact]
    public void Load_OverbroadApprovalHost_Warns()
    {
        var policy = Load("""{"schemaVersion":1,"approvals":[{"name":"a","hosts":[{"host":"*.github.io"}],"reason":"r","effectiveAt":"2030-01-01T00:00:00Z","expiresAt":"2030-01-02T00:00:00Z"}]}""");

        policy.Warnings.Should().ContainSingle().Which.Path.Should().Be("$.approvals[0].hosts[0].host");
    }

    [Fact]
    public void Load_KarsEntryOnPublicSuffix_WarnsBecauseItCoversSubdomains()
    {
        var fs = new MockFileSystem();
        fs.AddFile("/etc/kars/allowlist.json", new MockFileData("""{"schemaVersion":1,"endpoints":[{"host":"github.io","port":443},{"host":"api.github.com","port":443}]}"""));

        var policy = EgressPolicy.Load("/etc/kars", null, fs);

        var warning = policy.Warnings.Should().ContainSingle().Which;
        warning.Path.Should().Be("$.endpoints[0].host");
        warning.Message.Should().Contain("kars entries include subdomains");
    }

    [Theory]
    [InlineData("co.uk", true)]
    [InlineData("github.io", true)]
    [InlineData("com", true)]
    [InlineData("example.com", false)]
    [InlineData("foo.ck", true)]   // *.ck
    [InlineData("www.ck", false)]  // !www.ck
    [InlineData("city.kawasaki.jp", false)]
    [InlineData("x.kawasaki.jp", true)]
    public void PublicSuffixes_FollowsTheListsRules(string name, bool expected)
    {
        PublicSuffixes.IsPublicSuffix(name).Should().Be(expected);
    }
}
