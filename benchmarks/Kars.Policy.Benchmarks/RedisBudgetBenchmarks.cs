using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Engines;
using Kars.Policy.Budgets;
using Kars.Policy.Redis;
using StackExchange.Redis;

namespace Kars.Policy.Benchmarks;

/// <summary>
/// Redis store admission latency on loopback (DESIGN §6: one round trip per admission, median ≤ 100 µs) against a
/// naive GET-then-INCRBY admission (two round trips, racy) measured in the same run. Each benchmark process starts
/// its own redis-server (<c>$KARS_REDIS_SERVER</c> or <c>redis-server</c> on the PATH) on a free loopback port
/// without persistence, and prints the commands the server counted per operation when it ends.
/// </summary>
[MemoryDiagnoser]
[MedianColumn]
[SimpleJob(RunStrategy.Throughput, launchCount: 1, warmupCount: 3, iterationCount: 10)]
public class RedisBudgetBenchmarks
{
    private const long Tokens = 100;
    private static readonly TimeSpan Lease = TimeSpan.FromMinutes(10);
    private Process? _server;
    private int _port;
    private ConnectionMultiplexer? _naive;
    private IDatabase? _naiveDb;
    private RedisBudgetStore? _store;
    private BudgetLevel _oneWindow = null!;
    private BudgetLevel _agent = null!;
    private BudgetLevel _tenant = null!;
    private long _operations;

    [GlobalSetup]
    public void Setup()
    {
        _port = FreePort();
        string binary = Environment.GetEnvironmentVariable("KARS_REDIS_SERVER") is { Length: > 0 } configured ? configured : "redis-server";
        var psi = new ProcessStartInfo(binary) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in new[] { "--port", _port.ToString(CultureInfo.InvariantCulture), "--bind", "127.0.0.1", "--save", string.Empty, "--appendonly", "no" })
        {
            psi.ArgumentList.Add(arg);
        }

        _server = Process.Start(psi) ?? throw new InvalidOperationException("could not start redis-server: install redis-server (apt-get install -y redis-server)");
        _server.BeginOutputReadLine();
        _server.BeginErrorReadLine();
        string config = $"127.0.0.1:{_port},abortConnect=false,allowAdmin=true";
        var sw = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                _naive = ConnectionMultiplexer.Connect(config);
                _naiveDb = _naive.GetDatabase();
                _naiveDb.Ping();
                break;
            }
            catch (RedisConnectionException) when (sw.Elapsed < TimeSpan.FromSeconds(20))
            {
                _naive?.Dispose();
                Thread.Sleep(50);
            }
        }

        _store = new RedisBudgetStore(new RedisBudgetStoreOptions { Configuration = config, KeyPrefix = "bench:" });
        const long big = 1_000_000_000_000_000;
        _oneWindow = new BudgetLevel("one", new BudgetLimits(day: big));
        _agent = new BudgetLevel("agent", new BudgetLimits(hour: big, day: big, week: big, month: big, year: big));
        _tenant = new BudgetLevel("tenant", new BudgetLimits(hour: big, day: big, week: big, month: big, year: big));

        // Load the scripts (the first call of each finds the server cache empty).
        BudgetDecision warm = _store.TryReserveAsync(new BudgetRequest(_oneWindow, 1, Lease)).AsTask().GetAwaiter().GetResult();
        warm.Lease.SettleAsync(1).AsTask().GetAwaiter().GetResult();
        _naive.GetServer(_naive.GetEndPoints()[0]).ConfigResetStatistics();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        if (_naive is not null)
        {
            IServer server = _naive.GetServer(_naive.GetEndPoints()[0]);
            var counted = server.Info("commandstats").SelectMany(g => g)
                .Where(kv => kv.Key is "cmdstat_evalsha" or "cmdstat_eval" or "cmdstat_get" or "cmdstat_incrby")
                .Select(kv => $"{kv.Key[8..]}: {kv.Value}");
            Console.WriteLine($"// redis commands for {_operations} operations: {string.Join(" | ", counted)} (script-internal GET/INCRBY are counted too; usec_per_call is server time)");
        }

        _store?.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _naive?.Dispose();
        if (_server is { HasExited: false })
        {
            _server.Kill();
            _server.WaitForExit();
        }

        _server?.Dispose();
    }

    /// <summary>The naive admission: GET the day counter, compare, INCRBY. Two round trips and a race.</summary>
    [Benchmark(Baseline = true)]
    public async Task<bool> NaiveGetThenIncrBy()
    {
        _operations++;
        RedisValue used = await _naiveDb!.StringGetAsync("naive:one:day").ConfigureAwait(false);
        long current = used.IsNull ? 0 : (long)used;
        if (current + Tokens > 1_000_000_000_000_000)
        {
            return false;
        }

        await _naiveDb.StringIncrementAsync("naive:one:day", Tokens).ConfigureAwait(false);
        return true;
    }

    /// <summary>One key, one limited window: one EVALSHA.</summary>
    [Benchmark]
    public async Task<bool> AdmitOneWindow()
    {
        _operations++;
        BudgetDecision decision = await _store!.TryReserveAsync(new BudgetRequest(_oneWindow, Tokens, Lease)).ConfigureAwait(false);
        return decision.IsAdmitted;
    }

    /// <summary>Key and parent, all five windows each (ten counters): still one EVALSHA.</summary>
    [Benchmark]
    public async Task<bool> AdmitAllWindowsWithParent()
    {
        _operations++;
        BudgetDecision decision = await _store!.TryReserveAsync(new BudgetRequest(_agent, Tokens, Lease, _tenant)).ConfigureAwait(false);
        return decision.IsAdmitted;
    }

    /// <summary>The whole request cycle: admission and settlement, two EVALSHA.</summary>
    [Benchmark]
    public async Task<long> AdmitAndSettleAllWindowsWithParent()
    {
        _operations++;
        BudgetDecision decision = await _store!.TryReserveAsync(new BudgetRequest(_agent, Tokens, Lease, _tenant)).ConfigureAwait(false);
        BudgetSettlement settlement = await decision.Lease.SettleAsync(Tokens / 2).ConfigureAwait(false);
        return settlement.Charged;
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        int port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }
}
