using System.IO.Abstractions.TestingHelpers;
using System.Text;
using Kars.Policy.Egress;
using Microsoft.Extensions.Time.Testing;
using static Kars.Policy.Tests.Egress.EgressTestHelpers;

namespace Kars.Policy.Tests.Egress;

/// <summary>Issue 7 items 5–7: enum text, hostile file-system objects and load errors that used to lose the others.</summary>
public class HostileInputTests
{
    // ---- Item 5: the policy file's "mode" accepts exactly one documented name, any case ----

    [Theory]
    [InlineData("Strict,Learn")]
    [InlineData("Learn,Strict")]
    [InlineData("1")]
    [InlineData("0")]
    [InlineData(" Learn ")]
    [InlineData("Learn ")]
    [InlineData("")]
    [InlineData("Learn\u0000")]
    public void Load_ModeThatIsNotOneName_IsLoadError(string mode)
    {
        var problems = Problems($$"""{"schemaVersion":1,"mode":"{{mode.Replace("\u0000", "\\u0000", StringComparison.Ordinal)}}"}""");

        problems.Should().ContainSingle().Which.Path.Should().Be("$.mode");
    }

    [Theory]
    [InlineData("learn", EgressMode.Learn)]
    [InlineData("LEARN", EgressMode.Learn)]
    [InlineData("strict", EgressMode.Strict)]
    public void Load_ModeInAnyCase_IsAccepted(string mode, EgressMode expected)
    {
        var policy = Load($$"""{"schemaVersion":1,"mode":"{{mode}}"}""");

        policy.Mode.Should().Be(expected);
    }

    // ---- Item 6: hostile files ----

    [Fact]
    public void Load_PolicyLargerThanCap_IsLoadError()
    {
        string json = Doc("""{"host":"a.example.com"}""");
        var options = new KarsEgressOptions { MaxDocumentBytes = json.Length - 1 };

        var policy = new EgressPolicy(PolicyPath, options, FileSystemWith(json));

        policy.IsLoaded.Should().BeFalse();
        policy.LastLoadProblems.Should().ContainSingle().Which.Message.Should().Contain("larger than the limit");
    }

    [Theory]
    [InlineData(0L, 1L)]
    [InlineData(1L, 0L)]
    [InlineData(-1L, 1L)]
    public void Create_NonPositiveByteCaps_AreRefused(long documentBytes, long feedBytes)
    {
        var options = new KarsEgressOptions { MaxDocumentBytes = documentBytes, MaxFeedBytes = feedBytes };

        var act = () => new EgressPolicy(PolicyPath, options, FileSystemWith(Doc("""{"host":"a.example.com"}""")));

        act.Should().Throw<ArgumentOutOfRangeException>();
    }

    [Fact]
    public void Load_FeedLargerThanCap_IsLoadErrorOnFirstLoad()
    {
        var options = new KarsEgressOptions { MaxFeedBytes = 10 };
        var fs = FileSystemWith("""{"schemaVersion":1,"blocklist":{"files":["f.txt"]}}""", ("/policies/f.txt", "a.example\nb.example\n"));

        var policy = new EgressPolicy(PolicyPath, options, fs);

        policy.IsLoaded.Should().BeFalse();
        policy.LastLoadProblems.Should().ContainSingle().Which.Message.Should().Contain("larger than the limit of 10 bytes");
    }

    [Fact]
    public void Load_PolicyIsADirectoryWithoutAllowlist_IsLoadError()
    {
        var fs = new MockFileSystem();
        fs.AddDirectory("/policies/policy.json");

        var policy = new EgressPolicy(PolicyPath, null, fs);

        policy.IsLoaded.Should().BeFalse();
    }

    [Fact]
    public void Load_FeedIsADirectory_IsLoadError()
    {
        var fs = FileSystemWith("""{"schemaVersion":1,"blocklist":{"files":["feeds"]}}""");
        fs.AddDirectory("/policies/feeds");

        var policy = new EgressPolicy(PolicyPath, null, fs);

        policy.IsLoaded.Should().BeFalse();
        policy.LastLoadProblems.Should().ContainSingle().Which.Message.Should().Contain("is a directory");
    }

    [Theory]
    [InlineData("../shared/feed.txt")]
    [InlineData("feeds/../../shared/feed.txt")]
    [InlineData("/shared/feed.txt")]
    public void Load_FeedOutsidePolicyFolder_IsRefusedWithItsPath(string feed)
    {
        var problems = Problems($$$"""{"schemaVersion":1,"blocklist":{"files":["{{{feed}}}"]}}""", ("/shared/feed.txt", "x.example\n"));

        var problem = problems.Should().ContainSingle().Which;
        problem.Path.Should().Be("$.blocklist.files[0]");
        problem.Message.Should().MatchRegex("absolute path|leaves the policy's folder");
    }

    [Fact]
    public void Load_FeedWithDotDotThatStaysInside_Loads()
    {
        var policy = Load("""{"schemaVersion":1,"blocklist":{"files":["feeds/../f.txt"]}}""", null, null, ("/policies/f.txt", "x.example\n"));

        policy.Evaluate("x.example", 443).Reason.Should().Be(EgressReason.Blocklisted);
    }

    [Fact]
    public void Load_PolicyAtDevZero_IsCleanLoadErrorWithoutReading()
    {
        // A character device is refused before it is opened; the old loader read it until the process ran out of memory.
        var policy = new EgressPolicy("/dev/zero");

        policy.IsLoaded.Should().BeFalse();
        policy.LastLoadProblems.Should().ContainSingle().Which.Message.Should().Contain("character device");
    }

    [Fact]
    public void Load_RealConfigMapLayout_SymlinkedFeedInsideFolderLoads_LinkOutsideIsRefused()
    {
        // Kubernetes mounts a ConfigMap as: file -> ..data/file, ..data -> ..<timestamp>/ (all inside the folder).
        string root = Path.Combine(Path.GetTempPath(), "kars-cm-" + Guid.NewGuid().ToString("N"));
        try
        {
            string mount = Path.Combine(root, "mount");
            string stamped = Path.Combine(mount, "..2030_01_01_00_00_00.000000001");
            Directory.CreateDirectory(stamped);
            File.WriteAllText(Path.Combine(stamped, "policy.json"), """{"schemaVersion":1,"blocklist":{"files":["feed.txt"]}}""");
            File.WriteAllText(Path.Combine(stamped, "feed.txt"), "x.example\n");
            File.CreateSymbolicLink(Path.Combine(mount, "..data"), "..2030_01_01_00_00_00.000000001");
            File.CreateSymbolicLink(Path.Combine(mount, "policy.json"), "..data/policy.json");
            File.CreateSymbolicLink(Path.Combine(mount, "feed.txt"), "..data/feed.txt");

            var policy = EgressPolicy.Load(Path.Combine(mount, "policy.json"));
            policy.Evaluate("x.example", 443).Reason.Should().Be(EgressReason.Blocklisted);

            // A link in the folder that leads out of it is refused like "../".
            File.WriteAllText(Path.Combine(root, "outside.txt"), "y.example\n");
            File.WriteAllText(Path.Combine(stamped, "policy.json"), """{"schemaVersion":1,"blocklist":{"files":["escape.txt"]}}""");
            File.CreateSymbolicLink(Path.Combine(mount, "escape.txt"), "../outside.txt");
            var escaped = new EgressPolicy(Path.Combine(mount, "policy.json"));
            escaped.IsLoaded.Should().BeFalse();
            escaped.LastLoadProblems.Should().ContainSingle().Which.Message.Should().Contain("symbolic link that leads out");
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    // ---- Item 7: every problem with its path, never one unexpected exception at $ ----

    [Fact]
    public void Load_LoneSurrogatesAndInvalidUtf8_ReportEveryStringWithItsPath()
    {
        byte[] bytes = Encoding.UTF8.GetBytes("""{"schemaVersion":1,"allow":[{"host":"a.example.com"},{"host":"\ud800.example.com"}],"blocklistExceptions":["X"],"approvals":[{"name":"\udc00","hosts":[{"host":"b.example.com"}],"reason":"r","effectiveAt":"2030-01-01T00:00:00Z","expiresAt":"2030-01-02T00:00:00Z"}]}""");
        int at = Array.IndexOf(bytes, (byte)'X');
        bytes[at] = 0xC3; // a lead byte with no continuation: invalid UTF-8 inside a string
        var fs = new MockFileSystem();
        fs.AddFile(PolicyPath, new MockFileData(bytes));

        var policy = new EgressPolicy(PolicyPath, null, fs);

        policy.IsLoaded.Should().BeFalse();
        policy.LastLoadProblems.Select(p => p.Path).Should().Equal("$.allow[1].host", "$.blocklistExceptions[0]", "$.approvals[0].name");
        policy.LastLoadProblems[0].Message.Should().Contain("lone surrogate");
        policy.LastLoadProblems[1].Message.Should().Contain("not valid UTF-8");
        policy.LastLoadProblems.Should().NotContain(p => p.Message.Contains("unexpected", StringComparison.Ordinal));
    }

    [Fact]
    public void Load_LoneSurrogateInFieldName_IsReportedNotThrown()
    {
        var problems = Problems("""{"schemaVersion":1,"\ud800":1}""");

        problems.Should().ContainSingle().Which.Message.Should().Contain("field name");
    }

    [Fact]
    public void Load_KarsAllowlistWithLoneSurrogate_ReportsPath()
    {
        var problems = Problems("""{"schemaVersion":1,"endpoints":[{"host":"ok.example.com"},{"host":"\udfff"}]}""");

        problems.Should().ContainSingle().Which.Path.Should().Be("$.endpoints[1].host");
    }

    [Theory]
    [InlineData("9999-12-31T23:59:59-23:59")]
    [InlineData("9999-12-31T23:59:59.999999999-01:00")]
    [InlineData("0001-01-01T00:00:00+23:59")]
    public void Load_ExpiresAtAtTheEdgeOfTheRange_IsAProblemWithItsPathAndOthersStillReported(string expiresAt)
    {
        var problems = Problems($$"""{"schemaVersion":1,"allow":[{"host":"*"}],"approvals":[{"name":"a","hosts":[{"host":"b.example.com"}],"reason":"r","effectiveAt":"2030-01-01T00:00:00Z","expiresAt":"{{expiresAt}}"}]}""");

        problems.Select(p => p.Path).Should().Contain("$.allow[0].host").And.Contain("$.approvals[0].expiresAt");
        problems.Should().NotContain(p => p.Message.Contains("unexpected", StringComparison.Ordinal));
    }

    [Fact]
    public void Load_ByteOrderMark_IsReportedAsSuch()
    {
        var fs = new MockFileSystem();
        fs.AddFile(PolicyPath, new MockFileData([0xEF, 0xBB, 0xBF, .. Encoding.UTF8.GetBytes(Doc("""{"host":"a.example.com"}"""))]));

        var policy = new EgressPolicy(PolicyPath, null, fs);

        policy.IsLoaded.Should().BeFalse();
        policy.LastLoadProblems.Should().ContainSingle().Which.Message.Should().Contain("byte order mark");
    }

    [Fact]
    public void Load_KarsFolderWithUnreadableApprovalEntry_IsReportedInWarnings()
    {
        var fs = new MockFileSystem();
        fs.AddFile("/etc/kars/allowlist.json", new MockFileData("""{"schemaVersion":1,"endpoints":[{"host":"ok.example.com","port":443}]}"""));
        fs.AddFile("/etc/kars/approval-bad.json", new MockFileData("""{"schemaVersion":1,"approvalName":"\ud800"}"""));

        var policy = EgressPolicy.Load("/etc/kars", null, fs, new FakeTimeProvider(Start));

        policy.Warnings.Should().ContainSingle().Which.Message.Should().StartWith("approval file skipped: ").And.Contain("lone surrogate");
    }
}
