using System.Text;
using Kars.Policy.Egress;
using static Kars.Policy.Tests.Egress.EgressTestHelpers;

namespace Kars.Policy.Tests.Egress;

public class ReloadAndFeedTests
{
    [Fact]
    public void Reload_NewDocument_SwapsSnapshot()
    {
        var fs = FileSystemWith(Doc("""{"host":"a.example.com"}"""));
        var policy = EgressPolicy.Load(PolicyPath, null, fs);
        string firstDigest = policy.Digest!;

        fs.File.WriteAllText(PolicyPath, """{"schemaVersion":1,"generation":9,"allow":[{"host":"b.example.com"}]}""");

        policy.Reload().Should().BeTrue();
        policy.IsStale.Should().BeFalse();
        policy.Generation.Should().Be(9);
        policy.Digest.Should().NotBe(firstDigest);
        policy.Evaluate("a.example.com", 443).Reason.Should().Be(EgressReason.NotAllowlisted);
        policy.Evaluate("b.example.com", 443).Reason.Should().Be(EgressReason.Allowlisted);
    }

    [Fact]
    public void Reload_BrokenDocument_KeepsLastGoodAndReportsStale()
    {
        var fs = FileSystemWith(Doc("""{"host":"a.example.com"}"""));
        var policy = EgressPolicy.Load(PolicyPath, null, fs);

        fs.File.WriteAllText(PolicyPath, "garbage");

        policy.Reload().Should().BeFalse();
        policy.IsStale.Should().BeTrue();
        policy.LastLoadProblems.Should().NotBeEmpty();
        policy.Evaluate("a.example.com", 443).Reason.Should().Be(EgressReason.Allowlisted);

        fs.File.WriteAllText(PolicyPath, Doc("""{"host":"a.example.com"}"""));
        policy.Reload().Should().BeTrue();
        policy.IsStale.Should().BeFalse();
        policy.LastLoadProblems.Should().BeEmpty();
    }

    [Fact]
    public void Reload_RemovedDocument_KeepsLastGood()
    {
        var fs = FileSystemWith(Doc("""{"host":"a.example.com"}"""));
        var policy = EgressPolicy.Load(PolicyPath, null, fs);

        fs.File.Delete(PolicyPath);

        policy.Reload().Should().BeFalse();
        policy.IsStale.Should().BeTrue();
        policy.Evaluate("a.example.com", 443).Reason.Should().Be(EgressReason.Allowlisted);
    }

    [Fact]
    public void Reload_OneFeedFails_KeepsItsLastGoodContentsAndRefreshesTheOther()
    {
        string json = """{"schemaVersion":1,"blocklist":{"files":["a.txt","b.txt"]}}""";
        var fs = FileSystemWith(json, ("/policies/a.txt", "a1.example\n"), ("/policies/b.txt", "b1.example\n"));
        var policy = EgressPolicy.Load(PolicyPath, null, fs);

        fs.File.Delete("/policies/a.txt");
        fs.File.WriteAllText("/policies/b.txt", "b2.example\n");

        policy.Reload().Should().BeTrue();
        policy.Evaluate("a1.example", 443).Reason.Should().Be(EgressReason.Blocklisted);
        policy.Evaluate("b1.example", 443).Reason.Should().Be(EgressReason.NotAllowlisted);
        policy.Evaluate("b2.example", 443).Reason.Should().Be(EgressReason.Blocklisted);
        policy.Warnings.Should().ContainSingle().Which.Source.Should().Be("a.txt");
    }

    [Fact]
    public void Load_FeedPathsResolveAgainstDocumentFolder()
    {
        string json = """{"schemaVersion":1,"blocklist":{"files":["feeds/feed.txt"]}}""";
        var policy = Load(json, null, null, ("/policies/feeds/feed.txt", "x.example\n"));

        policy.Evaluate("y.x.example", 443).Reason.Should().Be(EgressReason.Blocklisted);
    }

    [Fact]
    public void Load_FeedOutsideFolderWithOption_Loads()
    {
        string json = """{"schemaVersion":1,"blocklist":{"files":["../shared/feed.txt","/srv/other.txt"]}}""";
        var policy = Load(json, new KarsEgressOptions { AllowFeedsOutsidePolicyFolder = true }, null, ("/shared/feed.txt", "x.example\n"), ("/srv/other.txt", "o.example\n"));

        policy.Evaluate("y.x.example", 443).Reason.Should().Be(EgressReason.Blocklisted);
        policy.Evaluate("o.example", 443).Reason.Should().Be(EgressReason.Blocklisted);
    }

    [Fact]
    public void Load_FeedAboveMaxEntries_IsLoadError()
    {
        var options = new KarsEgressOptions { MaxFeedEntries = 2 };
        var fs = FileSystemWith("""{"schemaVersion":1,"blocklist":{"files":["f.txt"]}}""", ("/policies/f.txt", "a.example\nb.example\nc.example\n"));

        var policy = new EgressPolicy(PolicyPath, options, fs);

        policy.IsLoaded.Should().BeFalse();
        policy.LastLoadProblems.Should().ContainSingle().Which.Message.Should().Contain("more than 2");
    }

    [Fact]
    public void Parse_KarsDomainList_YieldsThreeEntries()
    {
        var feed = BlocklistFeed.Parse("t", Encoding.UTF8.GetBytes("# comment\n*.evil.com\ngood.com\n!adblock-rule\nbad.tk\n"), 100);

        Names(feed).Should().Equal("evil.com", "good.com", "bad.tk");
        feed.Skipped.Should().Be(0);
    }

    [Fact]
    public void Parse_KarsHostsFile_YieldsBothDomains()
    {
        var feed = BlocklistFeed.Parse("t", Encoding.UTF8.GetBytes("127.0.0.1\tmalware.com\n0.0.0.0 phish.net\n"), 100);

        Names(feed).Should().Equal("malware.com", "phish.net");
    }

    [Fact]
    public void Parse_MixedFormats_NormalisesAndCountsSkippedLines()
    {
        string text = string.Join("\r\n",
            "\uFEFF||abp.example^",
            "||with-options.example^$third-party",
            "@@||allowed.example^",
            "0.0.0.0 one.example two.example # trailing comment",
            "127.0.0.1 localhost",
            "0.0.0.0 0.0.0.0",
            "UPPER.Example.",
            "bücher.example",
            "https://url.example/path",
            "single",
            "1.2.3.4",
            "  spaced.example  ",
            "alumni.hildred.ibbott@46.249.33.79",
            "");

        var feed = BlocklistFeed.Parse("t", Encoding.UTF8.GetBytes(text), 100);

        Names(feed).Should().Equal("abp.example", "one.example", "two.example", "upper.example", "xn--bcher-kva.example", "spaced.example");
        feed.Skipped.Should().Be(8);
    }

    [Fact]
    public void Load_AbpEntry_BlocksSubdomainsToo()
    {
        var policy = Load("""{"schemaVersion":1,"blocklist":{"files":["f.txt"]}}""", null, null, ("/policies/f.txt", "||0-c1j0.lat^\n"));

        policy.Evaluate("0-c1j0.lat", 443).Reason.Should().Be(EgressReason.Blocklisted);
        policy.Evaluate("deep.sub.0-c1j0.lat", 443).Reason.Should().Be(EgressReason.Blocklisted);
    }

    [Fact]
    public void Load_FeedWithOnlyGarbage_LoadsAndBlocksNothing()
    {
        var policy = Load("""{"schemaVersion":1,"allow":[{"host":"a.example.com"}],"blocklist":{"files":["f.txt"]}}""", null, null, ("/policies/f.txt", "not a host\n\u0000\u0001\n"));

        policy.Evaluate("a.example.com", 443).Reason.Should().Be(EgressReason.Allowlisted);
    }

    private static List<string> Names(BlocklistFeed feed)
    {
        var names = new List<string>();
        foreach (var name in feed)
        {
            names.Add(Encoding.ASCII.GetString(name));
        }

        return names;
    }
}
