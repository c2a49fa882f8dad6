using Kars.Policy.Egress;
using Microsoft.Extensions.Time.Testing;
using static Kars.Policy.Tests.Egress.EgressTestHelpers;

namespace Kars.Policy.Tests.Egress;

public class RuleValidationTests
{
    [Theory]
    [InlineData("*", "lone")]
    [InlineData("*.", "names no domain")]
    [InlineData("a.*.example.com", "only a leading")]
    [InlineData("ex*ample.com", "only a leading")]
    [InlineData("*example.com", "only a leading")]
    [InlineData("bücher.example", "not ASCII")]
    [InlineData("localhost", "single-label")]
    [InlineData("*.com", "top-level domain")]
    [InlineData("example.com.", "trailing dot")]
    [InlineData(".example.com", "leading dot")]
    [InlineData("a..example.com", "empty label")]
    [InlineData("API.example.com", "lower case")]
    [InlineData("1.2.3.4", "IP address")]
    [InlineData("example.123", "numeric label")]
    [InlineData("exa mple.com", "character")]
    [InlineData("", "empty")]
    public void Load_InvalidHostRule_ReportsErrorAtHostPath(string host, string expectedMessagePart)
    {
        var problems = Problems(Doc($$"""{"host":"api.github.com"},{"host":{{System.Text.Json.JsonSerializer.Serialize(host)}}}"""));

        problems.Should().ContainSingle();
        problems[0].Path.Should().Be("$.allow[1].host");
        problems[0].Message.Should().Contain(expectedMessagePart);
    }

    [Theory]
    [InlineData("*example.com", "use \"*.example.com\"")]
    [InlineData("bücher.example", "use \"xn--bcher-kva.example\"")]
    [InlineData("a.*.example.com", "*.example.com")]
    [InlineData("example.com.", "use \"example.com\"")]
    [InlineData("API.example.com", "use \"api.example.com\"")]
    [InlineData("1.2.3.4", "\"cidr\": \"1.2.3.4/32\"")]
    [InlineData("*.bücher.example", "use \"*.xn--bcher-kva.example\"")]
    public void Load_InvalidHostRule_SuggestsFix(string host, string expectedSuggestion)
    {
        var problems = Problems(Doc($$"""{"host":{{System.Text.Json.JsonSerializer.Serialize(host)}}}"""));

        problems.Should().ContainSingle().Which.Suggestion.Should().Contain(expectedSuggestion);
    }

    [Fact]
    public void Load_ManyProblems_ReportsEveryProblemAtOnceWithPaths()
    {
        string json = """
            {"schemaVersion":1,"generation":1,"colour":"red",
             "allow":[
               {"host":"*"},
               {"host":"ok.example.com","ports":[0]},
               {"host":"ok2.example.com","ports":[65536]},
               {"host":"a.example.com","cidr":"203.0.113.0/24"},
               {"ports":[443]},
               {"host":"dup.example.com"},
               {"host":"dup.example.com","ports":[80]},
               {"cidr":"203.0.113.1/24"},
               {"host":"x.example.com","prots":[443]}
             ]}
            """;

        var problems = Problems(json);

        problems.Select(p => p.Path).Should().BeEquivalentTo(
            "$.colour",
            "$.allow[0].host",
            "$.allow[1].ports[0]",
            "$.allow[2].ports[0]",
            "$.allow[3]",
            "$.allow[4]",
            "$.allow[6].host",
            "$.allow[7].cidr",
            "$.allow[8].prots");
        problems.Single(p => p.Path == "$.allow[7].cidr").Suggestion.Should().Be("use \"203.0.113.0/24\"");
        problems.Single(p => p.Path == "$.allow[6].host").Message.Should().Contain("first at $.allow[5].host");
    }

    private static string ApprovalDoc(string effectiveAt) => EgressTestHelpers.Doc(
        """{"host":"api.github.com"}""",
        $$"""
        "approvals":[{"name":"a","hosts":[{"host":"x.example.com","port":443}],"reason":"r",
          "effectiveAt":"{{effectiveAt}}","expiresAt":"2030-01-02T00:00:00Z"}]
        """);

    [Theory]
    [InlineData("0000-01-01T00:00:00Z")]
    [InlineData("-0001-01-01T00:00:00Z")]
    public void Load_ApprovalTimeOutsideDateTimeOffsetRange_IsLoadProblemNotException(string effectiveAt)
    {
        // Regression: NodaTime parses these, but converting them to DateTimeOffset threw out of the load.
        EgressTestHelpers.Problems(ApprovalDoc(effectiveAt)).Should().Contain(p => p.Path == "$.approvals[0].effectiveAt");
    }

    [Fact]
    public void Load_ApprovalTimeWithOffsetBeyond14Hours_IsReadAsTheInstantItNames()
    {
        // +15:00 is valid RFC 3339 syntax (DateTimeOffset cannot hold it, which used to throw): 2030-01-01T00:00+15:00
        // is 2029-12-31T09:00Z.
        var time = new FakeTimeProvider(new DateTimeOffset(2029, 12, 31, 8, 59, 59, TimeSpan.Zero));
        var policy = EgressTestHelpers.Load(ApprovalDoc("2030-01-01T00:00:00+15:00"), time: time);

        policy.Evaluate("x.example.com", 443).Reason.Should().Be(EgressReason.NotAllowlisted);
        time.Advance(TimeSpan.FromSeconds(1));
        policy.Evaluate("x.example.com", 443).Reason.Should().Be(EgressReason.Approved);
    }

    [Fact]
    public void Load_FreshPunycodeNames_LoadOnAColdProcessCache()
    {
        // A punycode name this process has never seen (random Cyrillic label), in every place a name can appear.
        // Regression: rule validation used the cached fast check, so such a name only loaded after the process had
        // happened to parse it once.
        var random = new Random(Guid.NewGuid().GetHashCode());
        string unicode = new string(Enumerable.Range(0, 12).Select(_ => (char)('а' + random.Next(0, 32))).ToArray()) + ".example";
        string puny = new System.Globalization.IdnMapping().GetAscii(unicode);
        puny.Should().StartWith("xn--");
        string doc = EgressTestHelpers.Doc(
            $$"""{"host":"{{puny}}"},{"host":"*.{{puny}}"}""",
            "\"blocklist\":{\"domains\":[\"bad." + puny + "\"]},\"blocklistExceptions\":[\"ok.bad." + puny + "\"]");

        var policy = EgressTestHelpers.Load(doc);

        policy.Evaluate(puny, 443).Reason.Should().Be(EgressReason.Allowlisted);
        policy.Evaluate("https://" + unicode + "/").Reason.Should().Be(EgressReason.Allowlisted);
        policy.Evaluate("x.bad." + puny, 443).Reason.Should().Be(EgressReason.Blocklisted);
    }

    [Theory]
    [InlineData("xn--zz.example.com")]
    [InlineData("a.xn--.example.com")]
    public void Load_InvalidPunycodeRule_IsProblem(string host)
    {
        EgressTestHelpers.Problems(EgressTestHelpers.Doc($$"""{"host":"{{host}}"}""")).Should().Contain(p => p.Path == "$.allow[0].host");
    }

    [Fact]
    public void Evaluate_InvalidPunycodeHost_DeniedOnEveryOverload()
    {
        var policy = EgressTestHelpers.Load(EgressTestHelpers.Doc("""{"host":"*.example.com","ports":["*"]}"""));

        policy.Evaluate("xn--zz.example.com", 443).Reason.Should().Be(EgressReason.InvalidTarget);
        policy.Evaluate("xn--zz.example.com").Reason.Should().Be(EgressReason.InvalidTarget);
        policy.Evaluate("ok.example.com", 443).Reason.Should().Be(EgressReason.Allowlisted);
    }

    [Fact]
    public void Load_MalformedJson_IsTypedLoadErrorNotJsonException()
    {
        var act = () => Load("{\"schemaVersion\":1,");

        act.Should().Throw<EgressPolicyLoadException>()
            .Which.Problems.Should().ContainSingle().Which.Message.Should().Contain("not valid JSON");
    }

    [Theory]
    [InlineData("""{"generation":1,"allow":[]}""", "$.schemaVersion")]
    [InlineData("""{"schemaVersion":2,"allow":[]}""", "$.schemaVersion")]
    [InlineData("""{"schemaVersion":1,"mode":"Open"}""", "$.mode")]
    [InlineData("""{"schemaVersion":1,"generation":0}""", "$.generation")]
    [InlineData("""{"schemaVersion":1,"allow":{}}""", "$.allow")]
    [InlineData("""{"schemaVersion":1,"allow":[{"host":"a.example.com","ports":[]}]}""", "$.allow[0].ports")]
    [InlineData("""{"schemaVersion":1,"allow":[{"host":"a.example.com","ports":["*",443]}]}""", "$.allow[0].ports")]
    [InlineData("""{"schemaVersion":1,"allow":[{"host":"a.example.com","ports":[443,443]}]}""", "$.allow[0].ports[1]")]
    [InlineData("""{"schemaVersion":1,"allow":[{"cidr":"10.0.0.0/33"}]}""", "$.allow[0].cidr")]
    [InlineData("""{"schemaVersion":1,"allow":[{"cidr":"10.0.0.0"}]}""", "$.allow[0].cidr")]
    [InlineData("""{"schemaVersion":1,"blocklist":{"domains":["*.evil.example"]}}""", "$.blocklist.domains[0]")]
    [InlineData("""{"schemaVersion":1,"blocklist":{"urls":[]}}""", "$.blocklist.urls")]
    [InlineData("""{"schemaVersion":1,"blocklistExceptions":["*.cdn.example"]}""", "$.blocklistExceptions[0]")]
    [InlineData("""{"schemaVersion":1,"approvals":[{"name":"a","hosts":[{"host":"x.example.com"}],"reason":"r","effectiveAt":"2030-01-02T00:00:00Z","expiresAt":"2030-01-01T00:00:00Z"}]}""", "$.approvals[0].expiresAt")]
    [InlineData("""{"schemaVersion":1,"approvals":[{"name":"a","hosts":[{"host":"x.example.com"}],"reason":"r","effectiveAt":"yesterday","expiresAt":"2030-01-01T00:00:00Z"}]}""", "$.approvals[0].effectiveAt")]
    [InlineData("""{"schemaVersion":1,"approvals":[{"name":"a","hosts":[{"host":"x.example.com","port":0}],"reason":"r","effectiveAt":"2030-01-01T00:00:00Z","expiresAt":"2030-01-02T00:00:00Z"}]}""", "$.approvals[0].hosts[0].port")]
    [InlineData("""{"schemaVersion":1,"schemaVersion":1}""", "$.schemaVersion")]
    public void Load_InvalidDocument_ReportsPath(string json, string expectedPath)
    {
        Problems(json).Select(p => p.Path).Should().Contain(expectedPath);
    }

    [Fact]
    public void Load_MissingFeedFileOnFirstLoad_IsLoadError()
    {
        var problems = Problems("""{"schemaVersion":1,"blocklist":{"files":["feeds/missing.txt"]}}""");

        problems.Should().ContainSingle().Which.Source.Should().Be("feeds/missing.txt");
    }

    [Fact]
    public void Load_MissingFile_IsLoadError()
    {
        var policy = new EgressPolicy("/nowhere/policy.json", null, new System.IO.Abstractions.TestingHelpers.MockFileSystem());

        policy.IsLoaded.Should().BeFalse();
        policy.LastLoadProblems.Should().ContainSingle().Which.Message.Should().Contain("no policy");
        policy.Evaluate("api.github.com", 443).Reason.Should().Be(EgressReason.NoPolicy);
    }

    [Fact]
    public void Options_InvalidPrivateAllow_ThrowsArgumentException()
    {
        var options = new KarsEgressOptions();
        options.PrivateAllow.Add("10.0.0.1/8");

        var act = () => new EgressPolicy(PolicyPath, options, FileSystemWith(Doc(string.Empty)));

        act.Should().Throw<ArgumentException>().WithMessage("*host bits*");
    }
}
