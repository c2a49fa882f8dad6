using Kars.Policy.Budgets;
using Kars.Policy.Redis.Tests.Infrastructure;
using NodaTime;

namespace Kars.Policy.Redis.Tests;

/// <summary>Kill-and-restart tests with real child processes: a store host killed mid-loop, and a redis-server
/// (AOF, fsync always) killed and restarted under load. Every acknowledged admission must still be counted and the
/// budget never overspent.</summary>
public sealed class RedisKillRestartTests
{
    private const long Tokens = 7;
    private const long DayLimit = 1000;
    private static readonly string At = "2031-06-15T12:00:00Z";
    private static readonly TimeSpan LineTimeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task StoreHost_KilledMidLoop_EveryAcknowledgedAdmissionCountedAndNoOverspend()
    {
        await using RedisServer server = await RedisServer.StartAsync();
        string prefix = RedisServerFixture.NewPrefix();

        long first;
        await using (var host = StartHost(server, prefix))
        {
            (first, _) = await ReadAdmissionsAsync(host, stopAfter: 40);
            await host.KillAsync();
            first += await DrainAdmissionsAsync(host); // lines written before the kill
        }

        var level = new BudgetLevel("agent", new BudgetLimits(day: DayLimit));
        await using (var store = NewStore(server, prefix))
        {
            BudgetWindowStatus day = await DayAsync(store, level);
            (day.Used + day.Held).Should().BeGreaterThanOrEqualTo(first * Tokens, "every acknowledged admission is counted");
            (day.Used + day.Held).Should().BeLessThanOrEqualTo((first + 1) * Tokens, "at most the one admission in flight when killed is counted too");
        }

        long second;
        await using (var host = StartHost(server, prefix))
        {
            (second, bool exhausted) = await ReadAdmissionsAsync(host, stopAfter: long.MaxValue);
            exhausted.Should().BeTrue();
        }

        await using (var store = NewStore(server, prefix))
        {
            BudgetWindowStatus day = await DayAsync(store, level);
            (day.Used + day.Held).Should().Be(DayLimit / Tokens * Tokens, "the budget is filled exactly, never overspent");
            (first + second).Should().BeLessThanOrEqualTo(DayLimit / Tokens);
            (day.Used + day.Held).Should().BeGreaterThanOrEqualTo((first + second) * Tokens);
        }
    }

    [Fact]
    public async Task RedisServer_KilledAndRestartedWithAof_AcknowledgedAdmissionsSurvive()
    {
        await using RedisServer server = await RedisServer.StartAsync("--appendonly", "yes", "--appendfsync", "always");
        string prefix = RedisServerFixture.NewPrefix();

        long acknowledged;
        await using (var host = StartHost(server, prefix, delayMs: 2))
        {
            (acknowledged, _) = await ReadAdmissionsAsync(host, stopAfter: 30);

            // Kill the server under load (SIGKILL: no shutdown save), then the host, so no admission is
            // acknowledged after the server died.
            await server.KillAsync();
            acknowledged += await DrainAdmissionsAsync(host, untilUnavailable: true);
            await host.KillAsync();
        }

        await server.RestartAsync();
        var level = new BudgetLevel("agent", new BudgetLimits(day: DayLimit));
        await using var store = NewStore(server, prefix);
        BudgetWindowStatus day = await DayAsync(store, level);

        acknowledged.Should().BeGreaterThanOrEqualTo(30);
        (day.Used + day.Held).Should().BeGreaterThanOrEqualTo(acknowledged * Tokens, "fsync-always AOF keeps every acknowledged admission");
        (day.Used + day.Held).Should().BeLessThanOrEqualTo(DayLimit);

        // Lease ids are random (client-chosen) and the script refuses one whose key exists, so admitting after the
        // restart needs no sequence to have survived.
        BudgetDecision next = await store.TryReserveAsync(new BudgetRequest(level, 1, TimeSpan.FromHours(1), at: Instant.FromDateTimeOffset(DateTimeOffset.Parse(At, System.Globalization.CultureInfo.InvariantCulture))));
        next.IsAdmitted.Should().BeTrue();
        next.Lease.Id.Should().BePositive().And.BeLessThan(1L << 62);
    }

    private static StoreHostProcess StartHost(RedisServer server, string prefix, int delayMs = 0)
        => StoreHostProcess.Start(
            "redis",
            "--connection", server.ConnectionString,
            "--prefix", prefix,
            "--key", "agent",
            "--day-limit", DayLimit.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--tokens", Tokens.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--at", At,
            "--delay-ms", delayMs.ToString(System.Globalization.CultureInfo.InvariantCulture));

    private static RedisBudgetStore NewStore(RedisServer server, string prefix)
        => new(new RedisBudgetStoreOptions { Configuration = server.ConnectionString, KeyPrefix = prefix, OperationTimeout = TimeSpan.FromSeconds(10) });

    private static async Task<BudgetWindowStatus> DayAsync(BudgetStore store, BudgetLevel level)
    {
        BudgetStatus status = await store.GetStatusAsync(level, null, Instant.FromDateTimeOffset(DateTimeOffset.Parse(At, System.Globalization.CultureInfo.InvariantCulture)));
        return status.Windows.Single(w => w.Window == BudgetWindow.Day);
    }

    private static async Task<(long Admitted, bool Exhausted)> ReadAdmissionsAsync(StoreHostProcess host, long stopAfter)
    {
        long admitted = 0;
        while (admitted < stopAfter)
        {
            string? line = await host.ReadLineAsync(LineTimeout);
            switch (line)
            {
                case null:
                    throw new InvalidOperationException("the store host exited early");
                case "EXHAUSTED":
                    return (admitted, true);
                case not null when line.StartsWith("ADMITTED ", StringComparison.Ordinal):
                    admitted++;
                    break;
                case not null when line.StartsWith("STDERR ", StringComparison.Ordinal):
                    throw new InvalidOperationException("the store host failed: " + line);
                default:
                    break; // READY, REJECTED, UNAVAILABLE
            }
        }

        return (admitted, false);
    }

    /// <summary>Reads to the end of the host's output (or, with <paramref name="untilUnavailable"/>, until it reports
    /// the store unavailable because the server is dead), counting the acknowledged admissions.</summary>
    private static async Task<long> DrainAdmissionsAsync(StoreHostProcess host, bool untilUnavailable = false)
    {
        long admitted = 0;
        while (true)
        {
            string? line = await host.ReadLineAsync(LineTimeout);
            if (line is null || (untilUnavailable && line is "UNAVAILABLE" or "EXHAUSTED"))
            {
                return admitted;
            }

            if (line.StartsWith("ADMITTED ", StringComparison.Ordinal))
            {
                admitted++;
            }
        }
    }
}
