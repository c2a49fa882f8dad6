using System.Text.Json;

namespace Kars.Policy.Cli.Tests;

public sealed class EvalCommandTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "kars-eval-" + Guid.NewGuid().ToString("N"));

    public EvalCommandTests()
    {
        Directory.CreateDirectory(Path.Combine(_folder, "feeds"));
        File.WriteAllText(Path.Combine(_folder, "feeds", "feed.txt"), "||malware.example^\n");
        File.WriteAllText(PolicyFile, """
            {"schemaVersion":1,"generation":5,
             "allow":[{"host":"api.github.com"},{"host":"*.githubusercontent.com"}],
             "blocklist":{"domains":["evil.example"],"files":["feeds/feed.txt"]},
             "approvals":[{"name":"inc-1","hosts":[{"host":"temp.example.com","port":443}],"reason":"r",
                           "effectiveAt":"2030-01-01T00:00:00Z","expiresAt":"2030-01-02T00:00:00Z"}]}
            """);
    }

    private string PolicyFile => Path.Combine(_folder, "policy.json");

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private static (int Code, string Out, string Err) Run(string stdin, params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = Program.Run(args, new StringReader(stdin), stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private static List<JsonElement> Lines(string output) =>
        [.. output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement)];

    [Fact]
    public void Eval_Json_PrintsOneDecisionPerTargetWithContractFields()
    {
        var (code, output, error) = Run(string.Empty, "eval", "--policy", PolicyFile, "--json", "https://api.github.com/repos", "http://api.github.com/", "x.malware.example", "not a host");

        code.Should().Be(0);

        // githubusercontent.com is on the Public Suffix List: the wildcard loads, with a warning on stderr.
        error.Split('\n', StringSplitOptions.RemoveEmptyEntries).Should().HaveCount(2).And.Contain(l => l.Contains("overbroad rule: \"*.githubusercontent.com\"", StringComparison.Ordinal));
        var lines = Lines(output);
        lines.Should().HaveCount(4);
        lines[0].GetProperty("target").GetString().Should().Be("https://api.github.com/repos");
        lines[0].GetProperty("verdict").GetString().Should().Be("allow");
        lines[0].GetProperty("reason").GetString().Should().Be("allowlisted");
        lines[0].GetProperty("host").GetString().Should().Be("api.github.com");
        lines[0].GetProperty("port").GetInt32().Should().Be(443);
        lines[0].GetProperty("rule").GetString().Should().Be("api.github.com");
        lines[0].GetProperty("wouldDeny").GetBoolean().Should().BeFalse();
        lines[0].GetProperty("mode").GetString().Should().Be("Strict");
        lines[1].GetProperty("reason").GetString().Should().Be("portNotAllowed");
        lines[1].GetProperty("port").GetInt32().Should().Be(80);
        lines[2].GetProperty("verdict").GetString().Should().Be("deny");
        lines[2].GetProperty("reason").GetString().Should().Be("blocklisted");
        lines[3].GetProperty("reason").GetString().Should().Be("invalidTarget");
        lines[3].GetProperty("host").ValueKind.Should().Be(JsonValueKind.Null);
    }

    [Fact]
    public void Eval_LearnMode_ReportsWouldDeny()
    {
        var (code, output, _) = Run(string.Empty, "eval", "--policy", PolicyFile, "--mode", "Learn", "--sandbox", "agent-a", "--json", "new.example.org");

        code.Should().Be(0);
        var line = Lines(output).Single();
        line.GetProperty("verdict").GetString().Should().Be("allow");
        line.GetProperty("reason").GetString().Should().Be("learned");
        line.GetProperty("wouldDeny").GetBoolean().Should().BeTrue();
        line.GetProperty("mode").GetString().Should().Be("Learn");
    }

    [Theory]
    [InlineData("2030-01-01T12:00:00Z", "approved")]
    [InlineData("2030-01-01T14:00:00+02:00", "approved")]
    [InlineData("2030-01-02T00:00:00Z", "notAllowlisted")]
    [InlineData("2029-12-31T23:59:59Z", "notAllowlisted")]
    [InlineData("2030-01-01T15:00:00+15:00", "approved")]
    [InlineData("2030-01-01T14:59:59+15:00", "notAllowlisted")]
    [InlineData("2030-01-01t12:00:00z", "approved")]
    public void Eval_At_EvaluatesApprovalsAtThatTime(string at, string reason)
    {
        var (code, output, _) = Run(string.Empty, "eval", "--policy", PolicyFile, "--at", at, "--json", "temp.example.com");

        code.Should().Be(0);
        Lines(output).Single().GetProperty("reason").GetString().Should().Be(reason);
    }

    [Fact]
    public void Eval_Stdin_ReadsOneTargetPerLineSkippingBlankAndComments()
    {
        var (code, output, _) = Run("api.github.com\n\n# comment\nraw.githubusercontent.com:443\nevil.example\n", "eval", "--policy", PolicyFile, "--stdin", "--json");

        code.Should().Be(0);
        Lines(output).Select(l => l.GetProperty("reason").GetString()).Should().Equal("allowlisted", "allowlisted", "blocklisted");
    }

    [Fact]
    public void Eval_Stdin_SplitsOnlyOnLf_NeverTrims_StripsOneBom()
    {
        // Issue 6 item 6: a lone CR stays in the line (denied), CRLF is one line end, NBSP/U+3000/spaces are kept
        // (denied), one leading BOM is dropped.
        string stdin = "\uFEFFapi.github.com\r\n"
            + "https://evil.com\rapi.github.com\n"
            + "\u00A0api.github.com\n"
            + "api.github.com\u3000\n"
            + " api.github.com\n"
            + "api.github.com";
        var (code, output, _) = Run(stdin, "eval", "--policy", PolicyFile, "--stdin", "--json");

        code.Should().Be(0);
        Lines(output).Select(l => l.GetProperty("reason").GetString())
            .Should().Equal("allowlisted", "invalidTarget", "invalidTarget", "invalidTarget", "invalidTarget", "allowlisted");
    }

    [Theory]
    [InlineData("\uFEFF\uFEFFapi.github.com")]
    [InlineData("api.github.com\r\r\n")]
    [InlineData("api.github.com\u0085")]
    public void Eval_Stdin_OnlyOneBomAndOneCrAreDropped(string stdin)
    {
        var (code, output, _) = Run(stdin, "eval", "--policy", PolicyFile, "--stdin", "--json");

        code.Should().Be(0);
        Lines(output).Single().GetProperty("reason").GetString().Should().Be("invalidTarget");
    }

    [Fact]
    public void ReadLines_KeepsEveryCharacter()
    {
        EvalCommand.ReadLines(new StringReader("\uFEFF a \r\nb\rc\n\n#x\n\t\n")).Should().Equal(" a ", "b\rc", "\t");
    }

    [Fact]
    public void Eval_Table_PrintsHeaderAndRows()
    {
        var (code, output, _) = Run(string.Empty, "eval", "--policy", PolicyFile, "api.github.com", "evil.example");

        code.Should().Be(0);
        output.Should().Contain("TARGET").And.Contain("VERDICT").And.Contain("generation 5");
        output.Should().MatchRegex(@"api\.github\.com\s+allow\s+allowlisted");
        output.Should().MatchRegex(@"evil\.example\s+deny\s+blocklisted");
    }

    [Fact]
    public void Eval_PolicyDoesNotLoad_ExitTwoWithOneProblemPerLine()
    {
        File.WriteAllText(PolicyFile, """{"schemaVersion":1,"allow":[{"host":"*"},{"host":"ex*ample.com"}]}""");

        var (code, output, error) = Run(string.Empty, "eval", "--policy", PolicyFile, "api.github.com");

        code.Should().Be(2);
        output.Should().BeEmpty();
        var lines = error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        lines.Should().HaveCount(3);
        lines[0].Should().Be("kars-policy: the policy does not load (2 problems):");
        lines[1].Should().Contain("$.allow[0].host");
        lines[2].Should().Contain("$.allow[1].host");
        error.Should().NotContain(" at Kars.");
    }

    [Fact]
    public void Eval_MissingPolicy_ExitTwo()
    {
        var (code, _, error) = Run(string.Empty, "eval", "--policy", Path.Combine(_folder, "nope.json"), "api.github.com");

        code.Should().Be(2);
        error.Should().StartWith("kars-policy:");
    }

    [Theory]
    [InlineData("--mode", "Open")]
    [InlineData("--at", "tomorrow")]
    [InlineData("--at", "0000-01-01T00:00:00Z")]
    [InlineData("--at", "2030-01-01 00:00:00Z")]
    public void Eval_BadOption_ExitTwo(string option, string value)
    {
        var (code, _, error) = Run(string.Empty, "eval", "--policy", "x.json", option, value, "api.github.com");

        code.Should().Be(2);
        error.Should().Contain(option);
    }

    [Fact]
    public void Eval_NoTargets_ExitTwo()
    {
        Run(string.Empty, "eval", "--policy", PolicyFile).Code.Should().Be(2);
    }

    [Fact]
    public void Eval_KarsFolder_Works()
    {
        string kars = Path.Combine(_folder, "kars");
        Directory.CreateDirectory(kars);
        File.WriteAllText(Path.Combine(kars, "allowlist.json"), """{"schemaVersion":1,"endpoints":[{"host":"telegram.org","port":443}]}""");

        var (code, output, _) = Run(string.Empty, "eval", "--policy", kars, "--json", "api.telegram.org");

        code.Should().Be(0);
        Lines(output).Single().GetProperty("reason").GetString().Should().Be("allowlisted");
    }

    [Fact]
    public void LearnedExport_FromFile_PrintsProposedPolicy()
    {
        string learned = Path.Combine(_folder, "learned.json");
        File.WriteAllText(learned, """
            {"schemaVersion":1,"learned":[
              {"sandbox":"a","host":"x.example.org","port":443,"firstSeen":"2030-01-01T00:00:00Z","lastSeen":"2030-01-01T00:00:00Z","count":3},
              {"sandbox":"b","host":"y.example.org","port":8443,"firstSeen":"2030-01-01T00:00:00Z","lastSeen":"2030-01-01T00:00:00Z","count":1}]}
            """);

        var (code, output, _) = Run(string.Empty, "learned", "export", "--from", learned);

        code.Should().Be(0);
        var doc = JsonDocument.Parse(output).RootElement;
        doc.GetProperty("mode").GetString().Should().Be("Strict");
        doc.GetProperty("allow").EnumerateArray().Select(a => a.GetProperty("host").GetString()).Should().Equal("x.example.org", "y.example.org");

        var (code2, output2, _) = Run(string.Empty, "learned", "export", "--from", learned, "--sandbox", "b");
        code2.Should().Be(0);
        JsonDocument.Parse(output2).RootElement.GetProperty("allow").GetArrayLength().Should().Be(1);
    }

    [Fact]
    public void LearnedExport_BadFile_ExitTwo()
    {
        var (code, _, error) = Run(string.Empty, "learned", "export", "--from", Path.Combine(_folder, "missing.json"));

        code.Should().Be(2);
        error.Should().StartWith("kars-policy:");
    }
}
