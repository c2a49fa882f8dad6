using System.IO.Abstractions.TestingHelpers;
using System.Text;
using Kars.Policy.Egress;
using Microsoft.Extensions.Time.Testing;

namespace Kars.Policy.Tests.Egress;

public class KarsCompatibilityTests
{
    private const string Folder = "/etc/kars/egress";

    [Fact]
    public void KarsDigest_PinnedFixture_MatchesKars()
    {
        byte[] body = Encoding.UTF8.GetBytes("""{"schemaVersion":1,"endpoints":[{"host":"example.com","port":443}]}""");

        PolicyDigest.OfKarsFile("merged-allowlist.json", body)
            .Should().Be("sha256:fe6cf9580a22eaacff45a3c8d3bb06f5f635b34c5981558b4587524c45e9c8a5");
    }

    [Fact]
    public void KarsDigest_BaselineName_DiffersFromMergedName()
    {
        byte[] body = Encoding.UTF8.GetBytes("""{"schemaVersion":1,"endpoints":[]}""");

        PolicyDigest.OfKarsFile("allowlist.json", body).Should().NotBe(PolicyDigest.OfKarsFile("merged-allowlist.json", body));
    }

    [Fact]
    public void Load_KarsFolder_EntryCoversHostAndSubdomainsOnItsPort()
    {
        var policy = EgressPolicy.Load(Folder, null, Fs(("allowlist.json", """{"schemaVersion":1,"endpoints":[{"host":"telegram.org","port":443},{"host":"api.github.com","port":443},{"host":"api.github.com","port":80}]}""")));

        policy.Evaluate("telegram.org", 443).Reason.Should().Be(EgressReason.Allowlisted);
        policy.Evaluate("api.telegram.org", 443).Reason.Should().Be(EgressReason.Allowlisted);
        policy.Evaluate("a.b.telegram.org", 443).Reason.Should().Be(EgressReason.Allowlisted);
        policy.Evaluate("eviltelegram.org", 443).Reason.Should().Be(EgressReason.NotAllowlisted);
        policy.Evaluate("telegram.org", 8443).Reason.Should().Be(EgressReason.PortNotAllowed);
        policy.Evaluate("api.github.com", 80).Reason.Should().Be(EgressReason.Allowlisted);
        policy.Digest.Should().StartWith("sha256:");
    }

    [Fact]
    public void Load_KarsAllowlistFile_DigestIsKarsDigestOfFileBytes()
    {
        string body = """{"schemaVersion":1,"endpoints":[{"host":"api.github.com","port":443},{"host":"example.com","port":443}]}""";
        var policy = EgressPolicy.Load(Folder, null, Fs(("allowlist.json", body)));

        policy.Digest.Should().Be(PolicyDigest.OfKarsFile("allowlist.json", Encoding.UTF8.GetBytes(body)));
        policy.Evaluate("example.com", 443).IsAllowed.Should().BeTrue();
    }

    [Fact]
    public void Load_KarsAllowlistNoEndpoints_LoadsEmpty()
    {
        var policy = EgressPolicy.Load(Folder, null, Fs(("allowlist.json", """{"schemaVersion":1}""")));

        policy.Digest.Should().StartWith("sha256:");
        policy.Evaluate("example.com", 443).Reason.Should().Be(EgressReason.NotAllowlisted);
    }

    [Fact]
    public void Load_KarsAllowlistSingleFilePath_Detected()
    {
        var fs = Fs(("allowlist.json", """{"schemaVersion":1,"endpoints":[{"host":"example.com"}]}"""));

        var policy = EgressPolicy.Load(Folder + "/allowlist.json", null, fs);

        policy.Evaluate("www.example.com", 443).Reason.Should().Be(EgressReason.Allowlisted);
    }

    [Fact]
    public void Load_KarsFolderWithoutAllowlistJson_PicksLexicographicallyFirst()
    {
        var policy = EgressPolicy.Load(Folder, null, Fs(
            ("b.json", """{"schemaVersion":1,"endpoints":[{"host":"b.example.com","port":443}]}"""),
            ("a.json", """{"schemaVersion":1,"endpoints":[{"host":"a.example.com","port":443}]}""")));

        policy.Evaluate("a.example.com", 443).IsAllowed.Should().BeTrue();
        policy.Evaluate("b.example.com", 443).IsAllowed.Should().BeFalse();
    }

    [Theory]
    [InlineData("""{"host":"*.example.com","port":443}""", "$.endpoints[0].host")]
    [InlineData("""{"host":"com","port":443}""", "$.endpoints[0].host")]
    [InlineData("""{"host":"1.2.3.4","port":443}""", "$.endpoints[0].host")]
    [InlineData("""{"host":"example.com","port":70000}""", "$.endpoints[0].port")]
    [InlineData("""{"host":null}""", "$.endpoints[0].host")]
    [InlineData("""{"port":443}""", "$.endpoints[0].host")]
    [InlineData("""{"host":"example.com","protocol":"tcp"}""", "$.endpoints[0].protocol")]
    public void Load_KarsAllowlistInvalidEntry_IsReportedNotSilentlyDropped(string entry, string path)
    {
        var policy = new EgressPolicy(Folder, null, Fs(("allowlist.json", $$"""{"schemaVersion":1,"endpoints":[{{entry}},{"host":"ok.example.com","port":443}]}""")));

        policy.IsLoaded.Should().BeFalse();
        policy.LastLoadProblems.Select(p => p.Path).Should().Contain(path);
    }

    [Fact]
    public void Load_KarsAllowlistUpperCase_LowerCasedAsKarsDoes()
    {
        var policy = EgressPolicy.Load(Folder, null, Fs(("allowlist.json", """{"schemaVersion":1,"endpoints":[{"host":" API.GitHub.com ","port":443}]}""")));

        policy.Evaluate("api.github.com", 443).IsAllowed.Should().BeTrue();
    }

    [Fact]
    public void Load_KarsApprovals_HonourEffectiveAtAndExpiresAt()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2030, 1, 1, 12, 0, 0, TimeSpan.Zero));
        var policy = EgressPolicy.Load(Folder, null, Fs(
            ("allowlist.json", """{"schemaVersion":1,"endpoints":[]}"""),
            ("approval-inc-1.json", Approval("inc-1", "a.example.com", "2030-01-01T00:00:00Z", "2030-01-02T00:00:00Z")),
            ("approval-inc-2.json", Approval("inc-2", "b.example.com", "2030-01-01T00:00:00Z", "2030-01-01T06:00:00Z")),
            ("random.json", Approval("inc-3", "c.example.com", "2030-01-01T00:00:00Z", "2030-01-02T00:00:00Z"))), time);

        policy.Evaluate("a.example.com", 443).Reason.Should().Be(EgressReason.Approved);
        policy.Evaluate("sub.a.example.com", 443).Reason.Should().Be(EgressReason.Approved);
        policy.Evaluate("b.example.com", 443).Reason.Should().Be(EgressReason.NotAllowlisted);
        policy.Evaluate("c.example.com", 443).Reason.Should().Be(EgressReason.NotAllowlisted);

        time.SetUtcNow(new DateTimeOffset(2030, 1, 2, 0, 0, 0, TimeSpan.Zero));
        policy.Evaluate("a.example.com", 443).Reason.Should().Be(EgressReason.NotAllowlisted);
    }

    [Fact]
    public void Load_KarsBrokenApprovalFile_SkippedAndOthersApply()
    {
        var policy = EgressPolicy.Load(Folder, null, Fs(
            ("allowlist.json", """{"schemaVersion":1,"endpoints":[]}"""),
            ("approval-bad.json", "{not json"),
            ("approval-good.json", Approval("good", "g.example.com", "2030-01-01T00:00:00Z", "2030-01-02T00:00:00Z"))),
            new FakeTimeProvider(new DateTimeOffset(2030, 1, 1, 1, 0, 0, TimeSpan.Zero)));

        policy.Evaluate("g.example.com", 443).Reason.Should().Be(EgressReason.Approved);
        policy.Warnings.Should().ContainSingle().Which.Source.Should().EndWith("approval-bad.json");
    }

    [Theory]
    [InlineData("0000-01-01T00:00:00Z")]
    [InlineData("-0001-01-01T00:00:00Z")]
    public void Load_KarsApprovalWithUnrepresentableTime_SkippedNotThrown(string effectiveAt)
    {
        // Regression: an RFC 3339 time NodaTime parses but DateTimeOffset cannot hold used to throw out of the load.
        var policy = EgressPolicy.Load(Folder, null, Fs(
            ("allowlist.json", """{"schemaVersion":1,"endpoints":[{"host":"ok.example.com","port":443}]}"""),
            ("approval-odd.json", Approval("odd", "o.example.com", effectiveAt, "2030-01-02T00:00:00Z")),
            ("approval-good.json", Approval("good", "g.example.com", "2030-01-01T00:00:00Z", "2030-01-02T00:00:00Z"))),
            new FakeTimeProvider(new DateTimeOffset(2030, 1, 1, 1, 0, 0, TimeSpan.Zero)));

        policy.Evaluate("ok.example.com", 443).Reason.Should().Be(EgressReason.Allowlisted);
        policy.Evaluate("g.example.com", 443).Reason.Should().Be(EgressReason.Approved);
        policy.Evaluate("o.example.com", 443).Reason.Should().Be(EgressReason.NotAllowlisted);
        policy.Warnings.Should().ContainSingle().Which.Source.Should().EndWith("approval-odd.json");
    }

    [Fact]
    public void Load_KarsFolderWithOnlyApprovals_NoPolicy()
    {
        var policy = new EgressPolicy(Folder, null, Fs(
            ("approval-good.json", Approval("good", "g.example.com", "2030-01-01T00:00:00Z", "2030-01-02T00:00:00Z"))));

        policy.IsLoaded.Should().BeFalse();
        policy.Evaluate("g.example.com", 443).Reason.Should().Be(EgressReason.NoPolicy);
    }

    [Fact]
    public void Reload_KarsAllowlistOverwrittenWithGarbage_KeepsLastGood()
    {
        var fs = Fs(("allowlist.json", """{"schemaVersion":1,"endpoints":[{"host":"telegram.org","port":443}]}"""));
        var policy = EgressPolicy.Load(Folder, null, fs);
        string digest = policy.Digest!;

        fs.File.WriteAllText(Folder + "/allowlist.json", "garbage");

        policy.Reload().Should().BeFalse();
        policy.Digest.Should().Be(digest);
        policy.Evaluate("telegram.org", 443).IsAllowed.Should().BeTrue();
    }

    private static string Approval(string name, string host, string effectiveAt, string expiresAt) =>
        $$"""{"schemaVersion":1,"approvalName":"{{name}}","sandbox":"demo","hosts":[{"host":"{{host}}","port":443}],"reason":"r","effectiveAt":"{{effectiveAt}}","expiresAt":"{{expiresAt}}"}""";

    private static MockFileSystem Fs(params (string Name, string Text)[] files)
    {
        var fs = new MockFileSystem();
        fs.AddDirectory(Folder);
        foreach (var (name, text) in files)
        {
            fs.AddFile($"{Folder}/{name}", new MockFileData(text));
        }

        return fs;
    }
}

public class KarsAcceptanceCaseTests
{
    private static EgressPolicy Policy() =>
        EgressTestHelpers.Load("""{"schemaVersion":1,"allow":[{"host":"api.microsoft.com"},{"host":"microsoft.com"}],"blocklist":{"domains":["evil.com","tk"]}}""");

    [Theory]
    [InlineData("https://evil.com/path", "evil.com", 443)]
    [InlineData("http://malware.tk:8080/c2", "malware.tk", 8080)]
    [InlineData("sub.evil.com:443", "sub.evil.com", 443)]
    public void Evaluate_KarsExtractDomainCases_NormalisedTargetAndBlocked(string input, string host, int port)
    {
        var decision = Policy().Evaluate(input);

        decision.Target.Host.Should().Be(host);
        decision.Target.Port.Should().Be(port);
        decision.Reason.Should().Be(EgressReason.Blocklisted);
    }

    [Theory]
    [InlineData("192.168.1.1", EgressTargetKind.IpAddress)]
    [InlineData("10.0.0.1", EgressTargetKind.IpAddress)]
    [InlineData("evil.com", EgressTargetKind.DnsName)]
    [InlineData("sub.domain.com", EgressTargetKind.DnsName)]
    public void Evaluate_KarsIsIpAddressCases_KindDetected(string input, EgressTargetKind kind)
    {
        Policy().Evaluate(input).Target.Kind.Should().Be(kind);
    }

    [Theory]
    [InlineData("192.168.1.1", EgressReason.NonPublicAddress)]
    [InlineData("http://10.0.0.1/steal", EgressReason.NonPublicAddress)]
    [InlineData("evil.tk", EgressReason.Blocklisted)]
    [InlineData("https://malware.tk/payload", EgressReason.Blocklisted)]
    [InlineData("api.microsoft.com", EgressReason.Allowlisted)]
    [InlineData("microsoft.com", EgressReason.Allowlisted)]
    public void Evaluate_KarsBlocklistCases_SameOutcomeThroughBlocklistDomainsAndAddressRanges(string input, EgressReason reason)
    {
        Policy().Evaluate(input).Reason.Should().Be(reason);
    }
}

public class OciLayoutFolderTests
{
    [Fact]
    public void Load_OciLayoutFolder_ClearLoadErrorNotMisreadAsKarsFolder()
    {
        var fs = new MockFileSystem();
        fs.AddFile("/bundle/oci-layout", new MockFileData("""{"imageLayoutVersion":"1.0.0"}"""));
        fs.AddFile("/bundle/index.json", new MockFileData("""{"schemaVersion":2,"manifests":[]}"""));

        var policy = new EgressPolicy("/bundle", null, fs);

        policy.IsLoaded.Should().BeFalse();
        policy.LastLoadProblems.Should().ContainSingle().Which.Message.Should().Contain("OCI image layout");
    }
}
