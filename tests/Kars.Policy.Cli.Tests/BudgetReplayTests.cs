using System.Text.Json;

namespace Kars.Policy.Cli.Tests;

public sealed class BudgetReplayTests : IDisposable
{
    private const string Limits = """
        {"mode":"Enforce","perRequestTokens":4096,"limits":{"day":1000,"month":100000},
         "keys":{"tenant-t":{"limits":{"day":10000}},"agent-a":{"parent":"tenant-t","limits":{"day":3000}}}}
        """;

    private readonly string _dir = Path.Combine(Path.GetTempPath(), "kars-replay-" + Guid.NewGuid().ToString("N"));

    public BudgetReplayTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private (int Exit, string[] Lines, string Error) Replay(string events, string limits = Limits, params string[] extra)
        => Run(events, limits, ["--json", .. extra]);

    private (int Exit, string[] Lines, string Error) Table(string events, string limits = Limits, params string[] extra)
        => Run(events, limits, extra);

    private (int Exit, string[] Lines, string Error) Run(string events, string limits, string[] extra)
    {
        string path = Path.Combine(_dir, "limits.json");
        File.WriteAllText(path, limits);
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int exit = Program.Run(["budget", "replay", "--limits", path, .. extra], new StringReader(events), stdout, stderr);
        return (exit, stdout.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries), stderr.ToString());
    }

    [Fact]
    public void Replay_WithoutJson_PrintsAReadableTable()
    {
        string events = """
            {"op":"request","id":"r1","key":"agent-a","tokens":20,"at":"2030-01-31T23:59:58Z"}
            {"op":"request","id":"r2","key":"x","tokens":1001,"at":"2030-01-31T23:59:58.5Z"}
            {"op":"status","key":"agent-a","at":"2030-01-31T23:59:59Z"}
            {"op":"settle","id":"r1","actual":300,"at":"2030-02-01T00:00:02Z"}
            """;

        var (exit, lines, error) = Table(events);

        exit.Should().Be(0, error);
        lines.Should().Equal(
            "AT                      OP       ID  KEY      RESULT               DETAIL",
            "2030-01-31T23:59:58Z    request  r1  agent-a  200 admitted         tokens 20, retry after -, remaining day=2980",
            "2030-01-31T23:59:58.5Z  request  r2  x        429 budgetExceeded   tokens 1001, retry after never, remaining day=1000 month=100000",
            "2030-01-31T23:59:59Z    status   -   agent-a  -                    day used 0 held 20 remaining 2980",
            "2030-02-01T00:00:02Z    settle   r1  agent-a  charged 300 settled  actual 300");
    }

    [Fact]
    public void Replay_TableWithBadLine_PrintsRowsSoFarAndExits2()
    {
        string events = """
            {"op":"request","id":"r1","key":"agent-a","tokens":20,"at":"2030-01-31T23:59:58Z"}
            {"op":"status","key":"agent-a","at":"2030-01-31 23:59:59Z"}
            """;

        var (exit, lines, error) = Table(events);

        exit.Should().Be(2);
        lines.Should().HaveCount(2);
        lines[0].Should().StartWith("AT ");
        error.Should().StartWith("kars-policy: events line 2: 'at' must be an RFC 3339 timestamp");
    }

    [Theory]
    [InlineData("2030-01-31T23:59:59Z", "2030-01-31T23:59:59Z")]
    [InlineData("2030-01-31t23:59:59z", "2030-01-31T23:59:59Z")]
    [InlineData("2030-01-31T23:59:59.123456789Z", "2030-01-31T23:59:59.123456789Z")]
    [InlineData("2030-01-31T23:59:59.5+01:30", "2030-01-31T22:29:59.5Z")]
    [InlineData("2030-01-31T23:59:59-00:00", "2030-01-31T23:59:59Z")]
    public void TryParseAt_Rfc3339_Accepts(string text, string expected)
    {
        Rfc3339.TryParse(text, out var instant).Should().BeTrue();

        NodaTime.Text.InstantPattern.ExtendedIso.Format(instant).Should().Be(expected);
    }

    [Theory]
    [InlineData("2030-01-31T23:59:59")]
    [InlineData("2030-01-31 23:59:59Z")]
    [InlineData("2030-01-31T23:59Z")]
    [InlineData("2030-01-31T23:59:59+01")]
    [InlineData("2030-01-31T23:59:59+0100")]
    [InlineData("2030-01-31T23:59:59+01:00:00")]
    [InlineData("2030-01-31T23:59:59.Z")]
    [InlineData("2030-01-31T23:59:59,5Z")]
    [InlineData("2030-01-31T23:59:59.1234567891Z")]
    [InlineData("20300131T235959Z")]
    [InlineData("-030-01-31T23:59:59Z")]
    [InlineData("12030-01-31T23:59:59Z")]
    [InlineData("2030-1-31T23:59:59Z")]
    [InlineData("2030-01-31T23:59:60Z")]
    [InlineData("2030-02-30T00:00:00Z")]
    [InlineData(" 2030-01-31T23:59:59Z")]
    public void TryParseAt_NotRfc3339_Rejects(string text)
    {
        Rfc3339.TryParse(text, out _).Should().BeFalse();
    }

    [Fact]
    public void Replay_NonRfc3339At_Exits2NamingTheLine()
    {
        string events = """
            {"op":"status","key":"k","at":"2030-01-01T10:00:00Z"}
            {"op":"status","key":"k","at":"2030-01-01T10:00:00"}
            """;

        var (exit, lines, error) = Replay(events);

        exit.Should().Be(2);
        lines.Should().HaveCount(1);
        error.Should().StartWith("kars-policy: events line 2: 'at' must be an RFC 3339 timestamp").And.Contain("'2030-01-01T10:00:00'");
    }

    [Theory]
    [InlineData("""{"mode":"Enforce","mode":"Observe"}""", "duplicate field 'mode'")]
    [InlineData("""{"limits":{"day":10,"day":1000000}}""", "duplicate window 'limits.day'")]
    [InlineData("""{"keys":{"a":{"limits":{"hour":1,"hour":2}}}}""", "duplicate window 'keys.a.limits.hour'")]
    [InlineData("""{"keys":{"a":{"limits":{"day":1}},"a":{"limits":{"day":99}}}}""", "duplicate key 'keys.a'")]
    [InlineData("""{"keys":{"a":{"parent":null,"parent":"b"},"b":{}}}""", "duplicate field 'keys.a.parent'")]
    [InlineData("""{"keys":{},"keys":{"a":{}}}""", "duplicate field 'keys'")]
    public void Replay_DuplicateNamesInLimitsFile_Exits2NamingTheField(string limits, string expected)
    {
        var (exit, lines, error) = Replay("", limits);

        exit.Should().Be(2);
        lines.Should().BeEmpty();
        error.Should().StartWith("kars-policy: limits file: ").And.Contain(expected);
    }

    [Theory]
    [InlineData("""{"op":"request","id":"1","key":"k","tokens":9007199254740993,"at":"2030-01-01T10:00:00Z"}""", "'tokens' must be a whole number from 0 to 9007199254740992")]
    [InlineData("""{"op":"request","id":"1","key":"k\ud800","tokens":1,"at":"2030-01-01T10:00:00Z"}""", "'key'")]
    [InlineData("""{"op":"status","key":"k","key":"j","at":"2030-01-01T10:00:00Z"}""", "not valid JSON")]
    public void Replay_OutOfRangeOrInvalidEvent_Exits2NamingTheLine(string bad, string expected)
    {
        var (exit, _, error) = Replay(bad);

        exit.Should().Be(2);
        error.Should().StartWith("kars-policy: events line 1: ").And.Contain(expected);
        error.Should().NotContain("   at ");
    }

    [Fact]
    public void Replay_SettleAboveMaxTokens_Exits2()
    {
        string events = """
            {"op":"request","id":"1","key":"k","tokens":10,"at":"2030-01-01T10:00:00Z"}
            {"op":"settle","id":"1","actual":9223372036854775807,"at":"2030-01-01T10:00:01Z"}
            """;

        var (exit, lines, error) = Replay(events);

        exit.Should().Be(2);
        lines.Should().HaveCount(1);
        error.Should().StartWith("kars-policy: events line 2: 'actual'");
    }

    private static JsonElement Json(string line) => JsonDocument.Parse(line).RootElement;

    [Fact]
    public void Replay_RequestSettleStatus_PrintsOneLinePerEvent()
    {
        string events = """
            {"op":"request","id":"r1","key":"agent-a","tokens":20,"at":"2030-01-31T23:59:58Z"}
            {"op":"status","key":"agent-a","at":"2030-01-31T23:59:59Z"}
            {"op":"settle","id":"r1","actual":300,"at":"2030-02-01T00:00:02Z"}
            {"op":"status","key":"agent-a","at":"2030-02-01T00:00:03Z"}
            """;

        var (exit, lines, error) = Replay(events);

        exit.Should().Be(0, error);
        lines.Should().Equal(
            """{"id":"r1","admitted":true,"status":200,"reason":"admitted","retryAfter":null,"remaining":{"day":2980}}""",
            """{"key":"agent-a","used":{"day":0},"held":{"day":20},"remaining":{"day":2980}}""",
            """{"id":"r1","status":"settled","charged":300}""",
            """{"key":"agent-a","used":{"day":0},"held":{"day":0},"remaining":{"day":3000}}""");
    }

    [Fact]
    public void Replay_OverBudget_Rejects429WithRetryAfterToMidnight()
    {
        string events = """
            {"op":"request","id":"a","key":"x","tokens":990,"at":"2030-03-10T23:00:00Z"}
            {"op":"request","id":"b","key":"x","tokens":11,"at":"2030-03-10T23:59:30.5Z"}
            {"op":"request","id":"c","key":"x","tokens":11,"at":"2030-03-11T00:00:00Z"}
            """;

        var (exit, lines, _) = Replay(events);

        exit.Should().Be(0);
        lines[1].Should().Be("""{"id":"b","admitted":false,"status":429,"reason":"budgetExceeded","retryAfter":30,"remaining":{"day":10,"month":99010}}""");
        Json(lines[2]).GetProperty("admitted").GetBoolean().Should().BeTrue();
    }

    [Fact]
    public void Replay_AbovePerRequestCap_RejectsNotRetryable()
    {
        var (exit, lines, _) = Replay("""{"op":"request","id":"big","key":"agent-a","tokens":4097,"at":"2030-01-01T00:00:00Z"}""");

        exit.Should().Be(0);
        lines.Should().Equal("""{"id":"big","admitted":false,"status":429,"reason":"perRequestTokensExceeded","retryAfter":null,"remaining":{"day":3000}}""");
    }

    [Fact]
    public void Replay_ParentLimit_BlocksChild()
    {
        string limits = """{"keys":{"t":{"limits":{"day":100}},"a":{"parent":"t","limits":{"day":1000}},"b":{"parent":"t"}}}""";
        string events = """
            {"op":"request","id":"1","key":"a","tokens":80,"at":"2030-01-01T10:00:00Z"}
            {"op":"request","id":"2","key":"b","tokens":30,"at":"2030-01-01T10:00:01Z"}
            """;

        var (_, lines, _) = Replay(events, limits);

        lines[1].Should().Be("""{"id":"2","admitted":false,"status":429,"reason":"budgetExceeded","retryAfter":50399,"remaining":{"day":20}}""");
    }

    [Fact]
    public void Replay_ObserveMode_AdmitsAndReportsObserved()
    {
        string limits = """{"mode":"Observe","perRequestTokens":10,"limits":{"hour":5}}""";
        string events = """
            {"op":"request","id":"1","key":"k","tokens":8,"at":"2030-01-01T10:00:00Z"}
            {"op":"request","id":"2","key":"k","tokens":20,"at":"2030-01-01T10:00:01Z"}
            {"op":"abandon","id":"2","at":"2030-01-01T10:00:02Z"}
            {"op":"status","key":"k","at":"2030-01-01T10:00:03Z"}
            """;

        var (exit, lines, _) = Replay(events, limits);

        exit.Should().Be(0);
        lines[0].Should().Be("""{"id":"1","admitted":true,"status":200,"reason":"observed","retryAfter":null,"remaining":{"hour":0}}""");
        lines[1].Should().Be("""{"id":"2","admitted":true,"status":200,"reason":"observed","retryAfter":null,"remaining":{"hour":0}}""");
        lines[2].Should().Be("""{"id":"2","status":"settled","charged":20}""");
        lines[3].Should().Be("""{"key":"k","used":{"hour":20},"held":{"hour":8},"remaining":{"hour":0}}""");
    }

    [Fact]
    public void Replay_SettleOfRejectedRequest_ChargesNothing()
    {
        string events = """
            {"op":"request","id":"1","key":"k","tokens":5000,"at":"2030-01-01T10:00:00Z"}
            {"op":"settle","id":"1","actual":10,"at":"2030-01-01T10:00:01Z"}
            """;

        var (_, lines, _) = Replay(events);

        lines[1].Should().Be("""{"id":"1","status":"notAdmitted","charged":0}""");
    }

    [Fact]
    public void Replay_UnsettledPastLease_ChargesFullHold()
    {
        string limits = """{"leaseSeconds":60,"limits":{"day":1000}}""";
        string events = """
            {"op":"request","id":"1","key":"k","tokens":400,"at":"2030-01-01T10:00:00Z"}
            {"op":"status","key":"k","at":"2030-01-01T10:01:01Z"}
            {"op":"settle","id":"1","actual":10,"at":"2030-01-01T10:02:00Z"}
            """;

        var (_, lines, _) = Replay(events, limits);

        lines[1].Should().Be("""{"key":"k","used":{"day":400},"held":{"day":0},"remaining":{"day":600}}""");
        lines[2].Should().Be("""{"id":"1","status":"expired","charged":400}""");
    }

    [Fact]
    public void Replay_FileStore_PersistsAcrossRuns()
    {
        string store = "file:" + Path.Combine(_dir, "store");
        Replay("""{"op":"request","id":"1","key":"k","tokens":400,"at":"2030-01-01T10:00:00Z"}""", Limits, "--store", store)
            .Exit.Should().Be(0);

        var (exit, lines, error) = Replay("""{"op":"status","key":"k","at":"2030-01-01T10:00:30Z"}""", Limits, "--store", store);

        exit.Should().Be(0, error);
        lines.Should().Equal("""{"key":"k","used":{"day":0,"month":0},"held":{"day":400,"month":400},"remaining":{"day":600,"month":99600}}""");
    }

    [Theory]
    [InlineData("""{"op":"request","id":"1","key":"k","tokens":-1,"at":"2030-01-01T10:00:00Z"}""", "'tokens'")]
    [InlineData("""{"op":"request","id":"1","key":"k","tokens":1.5,"at":"2030-01-01T10:00:00Z"}""", "'tokens'")]
    [InlineData("""{"op":"request","id":"1","key":"k","tokens":1,"at":"yesterday"}""", "'at'")]
    [InlineData("""{"op":"request","id":"1","key":"k","tokens":1}""", "'at'")]
    [InlineData("""{"op":"fly","at":"2030-01-01T10:00:00Z"}""", "unknown op")]
    [InlineData("""{"op":"settle","id":"nope","actual":1,"at":"2030-01-01T10:00:00Z"}""", "no request with id 'nope'")]
    [InlineData("""not json""", "not valid JSON")]
    [InlineData("""[1,2]""", "JSON object")]
    public void Replay_BadEventLine_Exits2NamingTheLine(string bad, string expected)
    {
        string events = """{"op":"status","key":"k","at":"2030-01-01T10:00:00Z"}""" + "\n\n" + bad + "\n";

        var (exit, lines, error) = Replay(events);

        exit.Should().Be(2);
        lines.Should().HaveCount(1);
        error.Should().StartWith("kars-policy: events line 3: ").And.Contain(expected);
        error.Trim().Split('\n').Should().HaveCount(1);
    }

    [Theory]
    [InlineData("""{"limits":{"fortnight":5}}""", "unknown window")]
    [InlineData("""{"mode":"Yolo"}""", "mode")]
    [InlineData("""{"keys":{"a":{"parent":"missing"}}}""", "not listed")]
    [InlineData("""{"perRequestTokens":-3}""", "perRequestTokens")]
    [InlineData("""{"limit":{}}""", "unknown field 'limit'")]
    [InlineData("""{""", "not valid JSON")]
    public void Replay_BadLimitsFile_Exits2(string limits, string expected)
    {
        var (exit, lines, error) = Replay("", limits);

        exit.Should().Be(2);
        lines.Should().BeEmpty();
        error.Should().StartWith("kars-policy: limits file").And.Contain(expected);
    }

    [Fact]
    public void Replay_RedisStoreUnreachable_FailsClosedWithExit2()
    {
        // Port 1 on loopback: nothing listens there, so the store cannot admit and must not pretend to.
        var (exit, lines, error) = Replay(
            """{"op":"request","id":"r1","key":"agent-a","tokens":20,"at":"2030-01-01T00:00:00Z"}""",
            Limits,
            "--store",
            "redis:127.0.0.1:1,connectTimeout=500,abortConnect=false");

        exit.Should().Be(2);
        lines.Should().BeEmpty();
        error.Should().StartWith("kars-policy:").And.NotContain("   at ");
    }

    [Fact]
    public void Replay_RedisStoreWithoutConnectionString_Exits2()
    {
        var (exit, _, error) = Replay("", Limits, "--store", "redis:");

        exit.Should().Be(2);
        error.Should().Contain("redis");
    }

    [Fact]
    public async Task Replay_RedisStore_MatchesMemoryStoreLineForLine()
    {
        string events = """
            {"op":"request","id":"r1","key":"agent-a","tokens":2000,"at":"2030-01-31T23:59:58Z"}
            {"op":"request","id":"r2","key":"agent-a","tokens":1500,"at":"2030-01-31T23:59:59Z"}
            {"op":"status","key":"agent-a","at":"2030-01-31T23:59:59.5Z"}
            {"op":"settle","id":"r1","actual":2500,"at":"2030-02-01T00:00:02Z"}
            {"op":"request","id":"r3","key":"agent-a","tokens":100,"at":"2030-02-01T00:00:03Z"}
            {"op":"abandon","id":"r3","at":"2030-02-01T00:00:04Z"}
            {"op":"status","key":"agent-a","at":"2030-02-01T00:00:05Z"}
            {"op":"request","id":"big","key":"agent-a","tokens":5000,"at":"2030-02-01T00:00:06Z"}
            """;
        await using var server = await Kars.Policy.Redis.Tests.Infrastructure.RedisServer.StartAsync();

        var memory = Replay(events);
        var redis = Replay(events, Limits, "--store", "redis:" + server.ConnectionString);

        memory.Exit.Should().Be(0, memory.Error);
        redis.Exit.Should().Be(0, redis.Error);
        redis.Lines.Should().HaveCount(8).And.Equal(memory.Lines);
        Json(redis.Lines[1]).GetProperty("status").GetInt32().Should().Be(429);
    }

    [Fact]
    public void Replay_UnknownStore_Exits2()
    {
        var (exit, _, error) = Replay("", Limits, "--store", "s3:bucket");

        exit.Should().Be(2);
        error.Should().Contain("s3:bucket");
    }

    [Fact]
    public void Replay_MissingLimitsOption_Exits2()
    {
        var stderr = new StringWriter();

        int exit = Program.Run(["budget", "replay"], new StringReader(""), new StringWriter(), stderr);

        exit.Should().Be(2);
        stderr.ToString().Should().Contain("--limits");
    }
}
