using System.IO.Abstractions;
using Kars.Policy.Budgets;

namespace Kars.Policy.Cli.Tests;

/// <summary>Issue 7 through <c>kars-policy budget replay</c>, as an operator meets it.</summary>
public sealed class BudgetReplayFaultTests : IDisposable
{
    private const string Limits = """{"limits":{"day":1000}}""";
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "kars-replay-faults-" + Guid.NewGuid().ToString("N"));

    public BudgetReplayFaultTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private (int Exit, string[] Lines, string Error) Replay(string events, string limits = Limits, params string[] extra)
    {
        string path = Path.Combine(_dir, "limits.json");
        File.WriteAllText(path, limits);
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int exit = Program.Run(["budget", "replay", "--limits", path, "--json", .. extra], new StringReader(events), stdout, stderr);
        return (exit, stdout.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries), stderr.ToString());
    }

    private static string OneLine(string error) => error.TrimEnd('\n', '\r').Should().NotContain("\n").And.Subject;

    // ----- 1. One owner per file store -----

    [Fact]
    public async Task Replay_FileStoreOpenElsewhere_Exits2WithOneLineNamingTheFolder()
    {
        string dir = Path.Combine(_dir, "store");
        await using var owner = await FileBudgetStore.OpenAsync(dir, null, new FileSystem());

        var (exit, lines, error) = Replay("""{"op":"request","id":"1","key":"k","tokens":1,"at":"2030-01-01T10:00:00Z"}""", Limits, "--store", "file:" + dir);

        exit.Should().Be(2);
        lines.Should().BeEmpty();
        OneLine(error).Should().StartWith("kars-policy: ").And.Contain(dir).And.Contain("already open");
    }

    // ----- 2. Torn tail: a warning line -----

    [Fact]
    public void Replay_FileStoreWithTornLastRecord_WarnsAndReplays()
    {
        string dir = Path.Combine(_dir, "store");
        string store = "file:" + dir;
        Replay("""{"op":"request","id":"1","key":"k","tokens":400,"at":"2030-01-01T10:00:00Z"}""", Limits, "--store", store).Exit.Should().Be(0);
        Replay("""{"op":"request","id":"2","key":"k","tokens":200,"at":"2030-01-01T10:00:01Z"}""", Limits, "--store", store).Exit.Should().Be(0);
        string log = Path.Combine(dir, FileBudgetStore.LogFileName);
        byte[] bytes = File.ReadAllBytes(log);
        File.WriteAllBytes(log, bytes[..^10]);

        var (exit, lines, error) = Replay("""{"op":"status","key":"k","at":"2030-01-01T10:00:02Z"}""", Limits, "--store", store);

        exit.Should().Be(0, error);
        OneLine(error).Should().StartWith("kars-policy: warning: ").And.Contain("incomplete final log record");
        lines.Should().Equal("""{"key":"k","used":{"day":0},"held":{"day":400},"remaining":{"day":600}}""");
    }

    [Fact]
    public void Replay_FileStoreWithFlippedByte_Exits2()
    {
        string dir = Path.Combine(_dir, "store");
        string store = "file:" + dir;
        Replay("""{"op":"request","id":"1","key":"k","tokens":400,"at":"2030-01-01T10:00:00Z"}""", Limits, "--store", store).Exit.Should().Be(0);
        Replay("""{"op":"request","id":"2","key":"k","tokens":200,"at":"2030-01-01T10:00:01Z"}""", Limits, "--store", store).Exit.Should().Be(0);
        string log = Path.Combine(dir, FileBudgetStore.LogFileName);
        byte[] bytes = File.ReadAllBytes(log);
        bytes[^3] ^= 0x01;
        File.WriteAllBytes(log, bytes);

        var (exit, _, error) = Replay("""{"op":"status","key":"k","at":"2030-01-01T10:00:02Z"}""", Limits, "--store", store);

        exit.Should().Be(2);
        OneLine(error).Should().Contain("corrupt").And.Contain("does not verify");
    }

    // ----- 4. Time going back -----

    [Fact]
    public void Replay_EventGoingBackInTime_Exits2NamingItsLine()
    {
        string events = """
            {"op":"request","id":"a","key":"k","tokens":900,"at":"2030-01-01T10:00:00Z"}
            {"op":"request","id":"b","key":"k","tokens":10,"at":"2030-01-03T10:00:00Z"}
            {"op":"request","id":"c","key":"k","tokens":900,"at":"2030-01-01T10:30:00Z"}
            """;

        var (exit, lines, error) = Replay(events);

        exit.Should().Be(2);
        lines.Should().HaveCount(2);
        OneLine(error).Should().StartWith("kars-policy: events line 3: 'at' 2030-01-01T10:30:00Z goes back in time");
    }

    [Fact]
    public void Replay_EqualInstants_AreInOrder()
    {
        string events = """
            {"op":"request","id":"a","key":"k","tokens":1,"at":"2030-01-01T10:00:00Z"}
            {"op":"request","id":"b","key":"k","tokens":1,"at":"2030-01-01T10:00:00Z"}
            {"op":"request","id":"c","key":"k","tokens":1,"at":"2030-01-01T11:00:00+01:00"}
            """;

        Replay(events).Exit.Should().Be(0);
    }

    // ----- 5. Enums: one strict reader -----

    [Theory]
    [InlineData("\"Enforce,Observe\"")]
    [InlineData("\"1\"")]
    [InlineData("\" Observe \"")]
    [InlineData("\"0\"")]
    [InlineData("\"\"")]
    [InlineData("1")]
    public void Replay_AmbiguousMode_Exits2NamingTheField(string mode)
    {
        var (exit, lines, error) = Replay("", "{\"mode\":" + mode + ",\"limits\":{\"day\":1}}");

        exit.Should().Be(2);
        lines.Should().BeEmpty();
        OneLine(error).Should().StartWith("kars-policy: limits file: mode must be one of Enforce, Observe");
    }

    [Theory]
    [InlineData("observe", "observed")]
    [InlineData("OBSERVE", "observed")]
    [InlineData("enforce", "budgetExceeded")]
    public void Replay_ModeInAnyCase_IsTheDeclaredName(string mode, string reason)
    {
        var (exit, lines, _) = Replay("""{"op":"request","id":"1","key":"k","tokens":5,"at":"2030-01-01T10:00:00Z"}""", "{\"mode\":\"" + mode + "\",\"limits\":{\"day\":1}}");

        exit.Should().Be(0);
        lines[0].Should().Contain($"\"reason\":\"{reason}\"");
    }

    [Theory]
    [InlineData("""{"limits":{"Day":5}}""", "held\":{\"day\":3}")]
    [InlineData("""{"limits":{"DAY":5}}""", "held\":{\"day\":3}")]
    public void Replay_WindowNameInAnyCase_IsTheWindow(string limits, string expected)
    {
        string events = """
            {"op":"request","id":"1","key":"k","tokens":3,"at":"2030-01-01T10:00:00Z"}
            {"op":"status","key":"k","at":"2030-01-01T10:00:00Z"}
            """;

        var (exit, lines, error) = Replay(events, limits);

        exit.Should().Be(0, error);
        lines[1].Should().Contain(expected);
    }

    [Theory]
    [InlineData("""{"limits":{"day":5,"Day":6}}""", "duplicate window 'limits.Day'")]
    [InlineData("""{"limits":{"1":5}}""", "unknown window 'limits.1'")]
    [InlineData("""{"limits":{"day,hour":5}}""", "unknown window 'limits.day,hour'")]
    [InlineData("""{"limits":{" day":5}}""", "unknown window 'limits. day'")]
    [InlineData("""{"leaseSeconds":259200000000}""", "leaseSeconds must be from 1 to 31536000")]
    public void Replay_BadWindowOrLease_Exits2NamingTheField(string limits, string expected)
    {
        var (exit, _, error) = Replay("", limits);

        exit.Should().Be(2);
        OneLine(error).Should().StartWith("kars-policy: limits file: ").And.Contain(expected);
    }

    // ----- 8. Replay and time details -----

    [Theory]
    [InlineData("9999-06-01T00:00:00Z", "outside the instants a budget store accepts")]
    [InlineData("9998-12-31T23:59:59.999999999-00:01", "outside the instants a budget store accepts")]
    [InlineData("0000-06-01T00:00:00Z", "must be an RFC 3339 timestamp")]
    [InlineData("2030-01-01T24:00:00Z", "must be an RFC 3339 timestamp")]
    public void Replay_InstantOutOfRange_Exits2NamingTheLine(string at, string expected)
    {
        string events = """{"op":"status","key":"k","at":"2030-01-01T00:00:00Z"}""" + "\n" + $$"""{"op":"request","id":"1","key":"k","tokens":1,"at":"{{at}}"}""";

        var (exit, lines, error) = Replay(events);

        exit.Should().Be(2);
        lines.Should().HaveCount(1);
        OneLine(error).Should().StartWith("kars-policy: events line 2: ").And.Contain(expected).And.NotContain("NodaTime").And.NotContain("Parameter");
    }

    [Fact]
    public void Replay_RetryAfterJustBeforeTheQuarter_RoundsUp()
    {
        string events = """
            {"op":"request","id":"1","key":"k","tokens":100,"at":"2030-03-14T10:14:59.999999999Z"}
            {"op":"request","id":"2","key":"k","tokens":1,"at":"2030-03-14T10:14:59.999999999Z"}
            {"op":"request","id":"3","key":"k","tokens":1,"at":"2030-03-14T10:15:00.00000005Z"}
            """;

        var (exit, lines, _) = Replay(events, """{"limits":{"hour":100}}""");

        exit.Should().Be(0);
        lines[1].Should().Contain("\"retryAfter\":2701");
        lines[2].Should().Contain("\"retryAfter\":2700");
    }

    [Fact]
    public void Replay_ZeroTokensAtLimitZero_IsRejected()
    {
        var (exit, lines, _) = Replay("""{"op":"request","id":"1","key":"k","tokens":0,"at":"2030-01-01T10:00:00Z"}""", """{"limits":{"day":0}}""");

        exit.Should().Be(0);
        lines.Should().Equal("""{"id":"1","admitted":false,"status":429,"reason":"budgetExceeded","retryAfter":null,"remaining":{"day":0}}""");
    }

    [Fact]
    public void Replay_RepeatedSettleOrAbandon_ChargesNothingTheSecondTime()
    {
        string events = """
            {"op":"request","id":"1","key":"k","tokens":100,"at":"2030-01-01T10:00:00Z"}
            {"op":"settle","id":"1","actual":70,"at":"2030-01-01T10:00:01Z"}
            {"op":"settle","id":"1","actual":70,"at":"2030-01-01T10:00:02Z"}
            {"op":"abandon","id":"1","at":"2030-01-01T10:00:03Z"}
            {"op":"status","key":"k","at":"2030-01-01T10:00:04Z"}
            """;

        var (exit, lines, _) = Replay(events);

        exit.Should().Be(0);
        lines[1].Should().Be("""{"id":"1","status":"settled","charged":70}""");
        lines[2].Should().Be("""{"id":"1","status":"alreadySettled","charged":0}""");
        lines[3].Should().Be("""{"id":"1","status":"alreadySettled","charged":0}""");
        lines[4].Should().Be("""{"key":"k","used":{"day":70},"held":{"day":0},"remaining":{"day":930}}""");
    }

    [Theory]
    [InlineData("2030-01-31T23:59:59+23:59", "2030-01-31T00:00:59Z")]
    [InlineData("2030-01-31T23:59:59-23:59", "2030-02-01T23:58:59Z")]
    [InlineData("2030-01-31T00:00:00+19:00", "2030-01-30T05:00:00Z")]
    [InlineData("0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z")]
    [InlineData("9999-12-31T23:59:59.999999999Z", "9999-12-31T23:59:59.999999999Z")]
    [InlineData("2028-02-29T12:00:00Z", "2028-02-29T12:00:00Z")]
    public void TryParse_Rfc3339Edges_Accepts(string text, string expected)
    {
        Rfc3339.TryParse(text, out var instant).Should().BeTrue();

        NodaTime.Text.InstantPattern.ExtendedIso.Format(instant).Should().Be(expected);
    }

    [Theory]
    [InlineData("2030-01-31T24:00:00Z")]
    [InlineData("2030-01-31T23:60:00Z")]
    [InlineData("2030-01-31T23:59:59+24:00")]
    [InlineData("2030-01-31T23:59:59+23:60")]
    [InlineData("0000-01-01T00:00:00Z")]
    [InlineData("2029-02-29T12:00:00Z")]
    [InlineData("2030-13-01T00:00:00Z")]
    [InlineData("2030-00-01T00:00:00Z")]
    [InlineData("2030-01-00T00:00:00Z")]
    [InlineData("9999-12-31T23:59:59-00:01")]
    [InlineData("2030-01-31T23:59:59Z ")]
    [InlineData("2030-01-31T23:59:59ZZ")]
    [InlineData("2030-01-31T23:59:59.5.5Z")]
    [InlineData("2030-01-31T23:59:59.+01:00")]
    [InlineData("２０３０-01-31T23:59:59Z")]
    public void TryParse_NotRfc3339OrNotRepresentable_Rejects(string text)
    {
        Rfc3339.TryParse(text, out _).Should().BeFalse();
    }

    [Fact]
    public void EvalAndReplay_Year0000_BothRefuse()
    {
        string policy = Path.Combine(_dir, "policy.json");
        File.WriteAllText(policy, """{"schemaVersion":1,"rules":[]}""");
        var stderr = new StringWriter();

        int evalExit = Program.Run(["eval", "--policy", policy, "--at", "0000-01-01T00:00:00Z", "example.com"], new StringReader(""), new StringWriter(), stderr);
        var replay = Replay("""{"op":"status","key":"k","at":"0000-01-01T00:00:00Z"}""");

        evalExit.Should().Be(2);
        stderr.ToString().Should().Contain("--at");
        replay.Exit.Should().Be(2);
        replay.Error.Should().Contain("'at'");
    }
}
