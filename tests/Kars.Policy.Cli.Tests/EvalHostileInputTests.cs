using System.Diagnostics;
using System.Text.Json;

namespace Kars.Policy.Cli.Tests;

/// <summary>Issue 7 items 5, 6, 7, 9 and 11 as an operator meets them through <c>kars-policy</c>.</summary>
public sealed class EvalHostileInputTests : IDisposable
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(60);

    private readonly string _folder = Path.Combine(Path.GetTempPath(), "kars-hostile-" + Guid.NewGuid().ToString("N"));

    public EvalHostileInputTests()
    {
        Directory.CreateDirectory(_folder);
        File.WriteAllText(PolicyFile, """{"schemaVersion":1,"allow":[{"host":"api.github.com"}]}""");
    }

    private string PolicyFile => Path.Combine(_folder, "policy.json");

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = Program.Run(args, new StringReader(string.Empty), stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    /// <summary>Runs the CLI on a worker; if it is still blocked after the guard, <paramref name="unblock"/> releases it
    /// (so the test ends either way) and the test fails.</summary>
    private static (int Code, string Out, string Err) RunBounded(Action unblock, params string[] args)
    {
        var run = Task.Run(() => Run(args));
        if (!run.Wait(HangGuard))
        {
            unblock();
            run.Wait(HangGuard);
            throw new Xunit.Sdk.XunitException("kars-policy blocked on a FIFO");
        }

        return run.Result;
    }

    private string MakeFifo(string name)
    {
        string path = Path.Combine(_folder, name);
        using var mkfifo = Process.Start(new ProcessStartInfo("mkfifo", [path]) { UseShellExecute = false })!;
        mkfifo.WaitForExit();
        mkfifo.ExitCode.Should().Be(0);
        return path;
    }

    /// <summary>Opens the FIFO for writing and closes it, which releases a reader blocked in open().</summary>
    private static void Release(string fifo)
    {
        using var writer = new FileStream(fifo, FileMode.Open, FileAccess.Write);
    }

    // ---- Item 5 ----

    [Theory]
    [InlineData("Strict,Learn")]
    [InlineData("Learn,Strict")]
    [InlineData("1")]
    [InlineData(" Learn")]
    [InlineData("Learn ")]
    public void Eval_ModeThatIsNotOneName_ExitTwo(string mode)
    {
        var (code, output, error) = Run("eval", "--policy", PolicyFile, "--mode", mode, "--json", "new.example.org");

        code.Should().Be(2);
        output.Should().BeEmpty();
        error.Should().Contain("--mode must be Strict or Learn");
    }

    [Fact]
    public void Eval_ModeInLowerCase_IsAccepted()
    {
        var (code, output, _) = Run("eval", "--policy", PolicyFile, "--mode", "learn", "--json", "new.example.org");

        code.Should().Be(0);
        JsonDocument.Parse(output).RootElement.GetProperty("mode").GetString().Should().Be("Learn");
    }

    // ---- Item 6 ----

    [Fact]
    public void Eval_PolicyIsDevZero_ExitTwoNamingTheProblem()
    {
        var (code, output, error) = Run("eval", "--policy", "/dev/zero", "api.github.com");

        code.Should().Be(2);
        output.Should().BeEmpty();
        error.Should().Contain("/dev/zero").And.Contain("character device, not a regular file");
    }

    [Fact]
    public void Eval_FeedIsDevZeroThroughALinkWithOutsideAllowed_ExitTwo()
    {
        // Even where an option lets feeds leave the folder, a device is refused before it is read.
        File.CreateSymbolicLink(Path.Combine(_folder, "feed.txt"), "/dev/zero");
        File.WriteAllText(PolicyFile, """{"schemaVersion":1,"blocklist":{"files":["feed.txt"]}}""");

        var (code, _, error) = Run("eval", "--policy", PolicyFile, "api.github.com");

        code.Should().Be(2);
        error.Should().Contain("feed.txt").And.MatchRegex("character device|leads out of the policy's folder");
    }

    [Fact]
    public void Eval_PolicyIsFifo_ExitTwoWithoutBlocking()
    {
        string fifo = MakeFifo("policy-fifo.json");

        var (code, _, error) = RunBounded(() => Release(fifo), "eval", "--policy", fifo, "api.github.com");

        code.Should().Be(2);
        error.Should().Contain("FIFO");
    }

    [Fact]
    public void Eval_FeedIsFifo_ExitTwoWithoutBlocking()
    {
        string fifo = MakeFifo("feed.txt");
        File.WriteAllText(PolicyFile, """{"schemaVersion":1,"blocklist":{"files":["feed.txt"]}}""");

        var (code, _, error) = RunBounded(() => Release(fifo), "eval", "--policy", PolicyFile, "api.github.com");

        code.Should().Be(2);
        error.Should().Contain("feed.txt").And.Contain("FIFO");
    }

    [Fact]
    public void Eval_KarsFolderWithFifoAllowlistAndApproval_ExitTwoWithoutBlocking()
    {
        string fifo = MakeFifo("allowlist.json");
        File.Delete(PolicyFile);

        var (code, _, error) = RunBounded(() => Release(fifo), "eval", "--policy", _folder, "api.github.com");

        code.Should().Be(2);
        error.Should().Contain("FIFO");
    }

    [Fact]
    public void Eval_KarsApprovalFifo_IsAWarningAndDoesNotBlock()
    {
        File.Delete(PolicyFile);
        File.WriteAllText(Path.Combine(_folder, "allowlist.json"), """{"schemaVersion":1,"endpoints":[{"host":"api.github.com","port":443}]}""");
        string fifo = MakeFifo("approval-x.json");

        var (code, output, error) = RunBounded(() => Release(fifo), "eval", "--policy", _folder, "--json", "api.github.com");

        code.Should().Be(0);
        output.Should().Contain("\"allowlisted\"");
        error.Should().Contain("approval-x.json").And.Contain("approval file skipped").And.Contain("FIFO");
    }

    [Fact]
    public void Eval_FeedOutsideFolder_ExitTwoNamingThePath()
    {
        File.WriteAllText(PolicyFile, """{"schemaVersion":1,"blocklist":{"files":["../elsewhere.txt"]}}""");

        var (code, _, error) = Run("eval", "--policy", PolicyFile, "api.github.com");

        code.Should().Be(2);
        error.Should().Contain("$.blocklist.files[0]").And.Contain("leaves the policy's folder");
    }

    // ---- Item 7 ----

    [Fact]
    public void Eval_KarsFolderWithBrokenApproval_PrintsItOnStderr()
    {
        File.Delete(PolicyFile);
        File.WriteAllText(Path.Combine(_folder, "allowlist.json"), """{"schemaVersion":1,"endpoints":[{"host":"api.github.com","port":443}]}""");
        File.WriteAllText(Path.Combine(_folder, "approval-broken.json"), "{not json");

        var (code, output, error) = Run("eval", "--policy", _folder, "--json", "api.github.com");

        code.Should().Be(0);
        output.Should().Contain("\"allowlisted\"");
        var lines = error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        lines[0].Should().Be("kars-policy: the policy loaded with 1 warning:");
        lines[1].Should().Contain("approval-broken.json").And.Contain("approval file skipped: not valid JSON");
    }

    [Fact]
    public void Eval_ManyProblems_PrintsFirstHundredOnePerLineAndACount()
    {
        string rules = string.Join(",", Enumerable.Range(0, 130).Select(i => $$"""{"host":"bad{{i}}*.example.com"}"""));
        File.WriteAllText(PolicyFile, $$"""{"schemaVersion":1,"allow":[{{rules}}]}""");

        var (code, _, error) = Run("eval", "--policy", PolicyFile, "api.github.com");

        code.Should().Be(2);
        var lines = error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        lines[0].Should().Be("kars-policy: the policy does not load (130 problems):");
        lines.Should().HaveCount(102);
        lines[100].Should().Contain("$.allow[99].host");
        lines[101].Should().Contain("30 more");
    }

    [Fact]
    public void Eval_LoneSurrogateAndBom_ReportedWithPathAndCause()
    {
        File.WriteAllText(PolicyFile, """{"schemaVersion":1,"allow":[{"host":"\ud800.example.com"},{"host":"\udc00.example.com"}]}""");

        var (code, _, error) = Run("eval", "--policy", PolicyFile, "api.github.com");

        code.Should().Be(2);
        error.Should().Contain("$.allow[0].host").And.Contain("$.allow[1].host").And.Contain("lone surrogate").And.NotContain("InvalidOperationException");

        File.WriteAllBytes(PolicyFile, [0xEF, 0xBB, 0xBF, .. "{\"schemaVersion\":1}"u8]);
        var (bomCode, _, bomError) = Run("eval", "--policy", PolicyFile, "api.github.com");

        bomCode.Should().Be(2);
        bomError.Should().Contain("byte order mark");
    }

    // ---- Item 9 ----

    [Fact]
    public void LearnedExport_SingleLabelHost_ExportsOnlyWhatLoadsAndPrintsEveryProblem()
    {
        string learned = Path.Combine(_folder, "learned.json");
        File.WriteAllText(learned, """
            {"schemaVersion":1,"learned":[
              {"sandbox":"s","host":"intranet","port":443,"firstSeen":"2030-01-01T00:00:00Z","lastSeen":"2030-01-01T00:00:00Z","count":1},
              {"sandbox":"s","host":"wiki","port":80,"firstSeen":"2030-01-01T00:00:00Z","lastSeen":"2030-01-01T00:00:00Z","count":1},
              {"sandbox":"s","host":"api.example.org","port":443,"firstSeen":"2030-01-01T00:00:00Z","lastSeen":"2030-01-01T00:00:00Z","count":1}]}
            """);

        var (code, output, error) = Run("learned", "export", "--from", learned);

        code.Should().Be(0);
        error.Should().Contain("2 learned hosts not exported").And.Contain("\"intranet\"").And.Contain("\"wiki\"");
        File.WriteAllText(PolicyFile, output);
        var (evalCode, evalOutput, _) = Run("eval", "--policy", PolicyFile, "--json", "api.example.org");
        evalCode.Should().Be(0);
        evalOutput.Should().Contain("\"allowlisted\"");
    }

    [Fact]
    public void LearnedExport_UnknownSchemaVersion_ExitTwo()
    {
        string learned = Path.Combine(_folder, "learned.json");
        File.WriteAllText(learned, """{"schemaVersion":2,"learned":[]}""");

        var (code, output, error) = Run("learned", "export", "--from", learned);

        code.Should().Be(2);
        output.Should().BeEmpty();
        error.Should().Contain("$.schemaVersion").And.Contain("not supported");
    }

    // ---- Item 11 ----

    [Fact]
    public void Eval_OverbroadRules_PrintWarningsAndStillEvaluate()
    {
        File.WriteAllText(PolicyFile, """{"schemaVersion":1,"allow":[{"cidr":"0.0.0.0/0"},{"host":"*.co.uk"}]}""");

        var (code, output, error) = Run("eval", "--policy", PolicyFile, "--json", "www.example.co.uk");

        code.Should().Be(0);
        output.Should().Contain("\"allowlisted\"");
        var lines = error.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        lines[0].Should().Be("kars-policy: the policy loaded with 2 warnings:");
        lines[1].Should().Contain("$.allow[0].cidr").And.Contain("every IPv4 address");
        lines[2].Should().Contain("$.allow[1].host").And.Contain("public suffix \"co.uk\"");
    }
}
