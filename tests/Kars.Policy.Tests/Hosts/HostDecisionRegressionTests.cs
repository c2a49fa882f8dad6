using System.Net;
using Kars.Policy.Egress;
using Kars.Policy.Tests.Egress;

namespace Kars.Policy.Tests.Hosts;

/// <summary>Issue 6: host names are decided the same on every machine (the bundled UTS-46 processor), and the parser
/// differentials it lists are closed. One test (or data row) per item of the list.</summary>
public sealed class HostDecisionRegressionTests
{
    private const string Policy = """
        {
          "schemaVersion": 1,
          "generation": 1,
          "mode": "Learn",
          "allow": [
            { "host": "api.example.com", "ports": [443] },
            { "host": "strasse.example" },
            { "host": "allowed.com" },
            { "cidr": "10.10.10.10/32" }
          ],
          "blocklist": { "domains": ["evil.example"] }
        }
        """;

    // Item 1: globalization-invariant mode changed thousands of decisions. The processor is the library's own, so
    // these hold in both modes (.ci/run runs this suite a second time with DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1).
    [Theory]
    [InlineData("https://\uFF21\uFF22\uFF23.com/", "abc.com", 443)]
    [InlineData("\uFF25\uFF36\uFF29\uFF2C.example", "evil.example", 443)]
    [InlineData("http://\uFF45\uFF58\uFF41\uFF4D\uFF50\uFF4C\uFF45\u3002com/", "example.com", 80)]
    [InlineData("B\u00DCCHER.example", "xn--bcher-kva.example", 443)]
    [InlineData("bu\u0308cher.example", "xn--bcher-kva.example", 443)]
    public void Item1_UnicodeHosts_AreMappedByTheBundledProcessor(string input, string host, int port)
    {
        EgressTargetParser.TryParse(input, out var target, out var error).Should().BeTrue(error.ToString());
        target.Host.Should().Be(host);
        target.Port.Should().Be(port);
    }

    [Fact]
    public void Item1_FullwidthBlockedName_IsBlockedInLearnMode()
    {
        var policy = EgressTestHelpers.Load(Policy);

        var decision = policy.Evaluate("\uFF25\uFF36\uFF29\uFF2C.example");

        decision.IsAllowed.Should().BeFalse();
        decision.Reason.Should().Be(EgressReason.Blocklisted);
        policy.Evaluate("https://sub.\uFF25\uFF36\uFF29\uFF2C.example/").Reason.Should().Be(EgressReason.Blocklisted);
    }

    // Item 2: ẞ (U+1E9E) maps to ß since UTS-46 15.1 (ICU with Unicode 15.0 data mapped it to "ss").
    [Fact]
    public void Item2_CapitalSharpS_MapsToSharpS_NotSs()
    {
        EgressTargetParser.TryParse("https://STRA\u1E9EE.example/", out var target, out _).Should().BeTrue();
        target.Host.Should().Be("xn--strae-oqa.example");

        var decision = EgressTestHelpers.Load(Policy.Replace("\"Learn\"", "\"Strict\"", StringComparison.Ordinal))
            .Evaluate("https://STRA\u1E9EE.example/");
        decision.Reason.Should().Be(EgressReason.NotAllowlisted, "xn--strae-oqa.example is not strasse.example");
    }

    // Item 3: "http:@host" and friends: WHATWG and curl send cleartext to port 80, an authority reader says 443.
    [Theory]
    [InlineData("http:@api.example.com")]
    [InlineData("http::b@api.example.com")]
    [InlineData("HTTP:@api.example.com")]
    [InlineData("https:@api.example.com")]
    [InlineData("http:1@x")]
    [InlineData("http::80@x")]
    [InlineData("http:.@x")]
    [InlineData("foo:@x")]
    [InlineData("ws::80@api.example.com")]
    [InlineData("http:443")]
    [InlineData("hTtPs:api.example.com")]
    public void Item3_SchemeWithoutSlashesOrColonInUserinfo_IsMalformed(string input)
    {
        EgressTargetParser.TryParse(input, out _, out var error).Should().BeFalse();
        error.Should().Be(EgressTargetError.Malformed);
    }

    [Fact]
    public void Item3_HttpColonAt_IsDeniedByThePolicy()
    {
        var decision = EgressTestHelpers.Load(Policy).Evaluate("http:@api.example.com");

        decision.IsAllowed.Should().BeFalse();
        decision.Reason.Should().Be(EgressReason.InvalidTarget);
    }

    [Theory]
    [InlineData("user@api.example.com", "api.example.com", 443)]
    [InlineData("api.example.com:8443", "api.example.com", 8443)]
    public void Item3_AuthoritiesWithoutSchemeLikeUserinfo_StillWork(string input, string host, int port)
    {
        EgressTargetParser.TryParse(input, out var target, out _).Should().BeTrue();
        target.Host.Should().Be(host);
        target.Port.Should().Be(port);
    }

    // Item 4: Bidi (RFC 5893) and CONTEXTJ (RFC 5892 A.1/A.2) are checked.
    [Theory]
    [InlineData("0\u00E0.\u05D0")]            // B1: an RTL domain whose LTR label starts with a digit
    [InlineData("\u00E0\u05D0.example")]      // B5/B6: L and R in one label
    [InlineData("\u05D0\u0661\u0031.example")] // B4: EN and AN in one RTL label
    [InlineData("a\u200Db.example")]          // C2: ZWJ not after a virama
    [InlineData("a\u200Cb.example")]          // C1: ZWNJ without joining context
    public void Item4_BidiAndContextJViolations_AreRejected(string host)
    {
        EgressTargetParser.TryParseHost(host, 443, out _, out var error).Should().BeFalse();
        error.Should().Be(EgressTargetError.InvalidHostName);
    }

    [Theory]
    [InlineData("\u0628\u200C\u0628.example")]  // ZWNJ between dual-joining Arabic letters (A.1)
    [InlineData("\u0915\u094D\u200D.example")]  // ZWJ after a virama (A.2)
    [InlineData("\u05D0\u05D1.example")]        // an RTL label in an otherwise LTR name
    public void Item4_ValidJoinersAndRtlLabels_AreAccepted(string host)
    {
        EgressTargetParser.TryParseHost(host, 443, out var target, out var error).Should().BeTrue(error.ToString());
        target.Host.Should().StartWith("xn--").And.EndWith(".example");
    }

    // Item 5: code points UTS-46 ignores (deletes) are rejected, not deleted.
    [Theory]
    [InlineData("allow\u034Fed.com")]
    [InlineData("allow\u180Bed.com")]
    [InlineData("allow\u180Fed.com")]
    [InlineData("allow\uFE0Fed.com")]
    [InlineData("allow\uDB40\uDD00ed.com")]    // U+E0100
    [InlineData("allow\uDB40\uDDEFed.com")]    // U+E01EF
    [InlineData("allow\u3164ed.com")]          // Hangul filler
    [InlineData("allow\u17B4ed.com")]
    [InlineData("allow\u00ADed.com")]          // Cf, rejected by the character scan
    public void Item5_IgnoredCodePoints_AreRejected(string host)
    {
        EgressTargetParser.TryParse(host, out _, out var error).Should().BeFalse();
        error.Should().Be(EgressTargetError.AmbiguousCharacter);
        EgressTestHelpers.Load(Policy).Evaluate(host).Reason.Should().Be(EgressReason.InvalidTarget);
    }

    // Every consumer of names goes through the processor: feed entries and rule checks too.
    [Fact]
    public void Consumers_FeedEntriesAndRuleSuggestions_UseTheBundledProcessor()
    {
        const string json = """{"schemaVersion":1,"generation":1,"allow":[{"host":"api.example.com"}],"blocklist":{"files":["feeds/feed.txt"]}}""";
        var policy = EgressTestHelpers.Load(json, null, null, ("/policies/feeds/feed.txt", "\uFF25\uFF36\uFF29\uFF2C.example\nSTRA\u1E9EE.example\n"));

        policy.Evaluate("evil.example").Reason.Should().Be(EgressReason.Blocklisted);
        policy.Evaluate("xn--strae-oqa.example").Reason.Should().Be(EgressReason.Blocklisted);
        policy.Evaluate("strasse.example").Reason.Should().Be(EgressReason.NotAllowlisted);

        HostPatterns.TryParseRuleHost("STRA\u1E9EE.example", out _, out _, out _, out string? suggestion).Should().BeFalse();
        suggestion.Should().Contain("xn--strae-oqa.example");
    }

    // Item 6 (eval --stdin) is covered in Kars.Policy.Cli.Tests (EvalCommandTests.Eval_Stdin_*).

    // Item 7: CIDR octets with leading zeros are rejected (the target parser would read them as octal).
    [Theory]
    [InlineData("010.010.010.010/32")]
    [InlineData("10.010.10.10/32")]
    [InlineData("00.0.0.0/8")]
    public void Item7_CidrOctetsWithLeadingZeros_AreRejected(string cidr)
    {
        HostPatterns.TryParseCidr(cidr, out _, out string? error, out _).Should().BeFalse();
        error.Should().Contain("leading zero");
        EgressTestHelpers.Problems(EgressTestHelpers.Doc($$"""{"cidr":"{{cidr}}"}""")).Should().NotBeEmpty();
    }

    [Theory]
    [InlineData("10.10.10.10/32", "10.10.10.10")]
    [InlineData("0.0.0.0/0", "0.0.0.0")]
    [InlineData("::ffff:10.0.0.1/128", "::ffff:10.0.0.1")]
    public void Item7_CidrWithoutLeadingZeros_Loads(string cidr, string address)
    {
        HostPatterns.TryParseCidr(cidr, out var network, out _, out _).Should().BeTrue();
        network.BaseAddress.Should().Be(IPAddress.Parse(address));
    }
}
