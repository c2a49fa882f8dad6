using System.Collections.Concurrent;
using System.Globalization;
using System.IO.Abstractions;
using System.Threading.RateLimiting;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Jobs;
using Kars.Policy.Budgets;

namespace Kars.Policy.Benchmarks;

/// <summary>
/// In-memory admission over all five windows (DESIGN §6: ≤ 150 ns median, 0 B). Every operation reserves and
/// then settles, so the lease table stays at steady state; the baselines do the equivalent work.
/// </summary>
[MemoryDiagnoser]
[ShortRunJob]
[MedianColumn]
public class BudgetAdmissionBenchmarks
{
    private const long Tokens = 10;
    private static readonly TimeSpan Lease = TimeSpan.FromMinutes(10);
    private readonly NaiveBudget _naive = new();
    private InMemoryBudgetStore _store = null!;
    private BudgetRequest _request;
    private PartitionedRateLimiter<string> _limiter = null!;

    [GlobalSetup]
    public void Setup()
    {
        _store = new InMemoryBudgetStore(TimeProvider.System);
        var level = new BudgetLevel("agent-a", new BudgetLimits(hour: long.MaxValue / 2, day: long.MaxValue / 2, week: long.MaxValue / 2, month: long.MaxValue / 2, year: long.MaxValue / 2));
        _request = new BudgetRequest(level, Tokens, Lease);
        _limiter = PartitionedRateLimiter.CreateChained(
            Window(TimeSpan.FromHours(1)),
            Window(TimeSpan.FromDays(1)),
            Window(TimeSpan.FromDays(7)),
            Window(TimeSpan.FromDays(30)),
            Window(TimeSpan.FromDays(365)));
    }

    [GlobalCleanup]
    public void Cleanup() => _limiter.Dispose();

    /// <summary>Naive: ConcurrentDictionary of per-period counters, one lock, calendar maths per call.</summary>
    [Benchmark(Baseline = true)]
    public bool ConcurrentDictionaryAndLock() => _naive.TryReserveAndSettle("agent-a", Tokens);

    /// <summary>System.Threading.RateLimiting: five chained fixed-window partitioned limiters (not calendar windows, no settlement).</summary>
    [Benchmark]
    public bool PartitionedRateLimiterChained()
    {
        using RateLimitLease lease = _limiter.AttemptAcquire("agent-a", (int)Tokens);
        return lease.IsAcquired;
    }

    /// <summary>Kars.Policy: InMemoryBudgetStore reserve + settle, five windows, store clock.</summary>
    [Benchmark]
    public bool InMemoryStoreReserveAndSettle()
    {
        BudgetDecision decision = _store.TryReserveAsync(_request).GetAwaiter().GetResult();
        _store.SettleAsync(decision.Lease.Id, Tokens).GetAwaiter().GetResult();
        return decision.IsAdmitted;
    }

    private static PartitionedRateLimiter<string> Window(TimeSpan window)
        => PartitionedRateLimiter.Create<string, string>(key => RateLimitPartition.GetFixedWindowLimiter(key, _ => new FixedWindowRateLimiterOptions
        {
            PermitLimit = int.MaxValue,
            Window = window,
            QueueLimit = 0,
            AutoReplenishment = false,
        }));
}


/// <summary>
/// The naive baseline of the admission benchmarks: a ConcurrentDictionary of per-period counters (held, used), one
/// lock, and the calendar maths done on every call.
/// </summary>
internal sealed class NaiveBudget
{
    private readonly ConcurrentDictionary<(string Key, int Window, long Start), long[]> _counters = new();
    private readonly object _gate = new();

    /// <summary>Reserves <paramref name="tokens"/> in all five windows (hold only).</summary>
    public bool TryReserve(string key, long tokens)
    {
        Span<long> starts = stackalloc long[5];
        WindowStarts(TimeProvider.System.GetUtcNow(), starts);
        lock (_gate)
        {
            return Reserve(key, tokens, starts);
        }
    }

    /// <summary>Reserves then settles <paramref name="tokens"/> in all five windows.</summary>
    public bool TryReserveAndSettle(string key, long tokens)
    {
        Span<long> starts = stackalloc long[5];
        WindowStarts(TimeProvider.System.GetUtcNow(), starts);
        lock (_gate)
        {
            if (!Reserve(key, tokens, starts))
            {
                return false;
            }

            for (int w = 0; w < 5; w++)
            {
                long[] c = _counters[(key, w, starts[w])];
                c[1] -= tokens;
                c[0] += tokens;
            }
        }

        return true;
    }

    private static void WindowStarts(DateTimeOffset now, Span<long> starts)
    {
        starts[0] = new DateTimeOffset(now.Year, now.Month, now.Day, now.Hour, 0, 0, TimeSpan.Zero).UtcTicks;
        starts[1] = new DateTimeOffset(now.Year, now.Month, now.Day, 0, 0, 0, TimeSpan.Zero).UtcTicks;
        starts[2] = new DateTimeOffset(now.Year, now.Month, now.Day, 0, 0, 0, TimeSpan.Zero).AddDays(-(((int)now.DayOfWeek + 6) % 7)).UtcTicks;
        starts[3] = new DateTimeOffset(now.Year, now.Month, 1, 0, 0, 0, TimeSpan.Zero).UtcTicks;
        starts[4] = new DateTimeOffset(now.Year, 1, 1, 0, 0, 0, TimeSpan.Zero).UtcTicks;
    }

    private bool Reserve(string key, long tokens, ReadOnlySpan<long> starts)
    {
        for (int w = 0; w < 5; w++)
        {
            long[] c = _counters.GetOrAdd((key, w, starts[w]), _ => new long[2]);
            if (c[0] + c[1] + tokens > long.MaxValue / 2)
            {
                return false;
            }
        }

        for (int w = 0; w < 5; w++)
        {
            _counters[(key, w, starts[w])][1] += tokens;
        }

        return true;
    }
}

/// <summary>
/// Durable admissions through the file store with 64 concurrent callers on a real temp directory (DESIGN §6:
/// ≥ 20,000/s with group commit), against a naive log that fsyncs once per admission.
/// </summary>
[MemoryDiagnoser]
[ShortRunJob]
[MedianColumn]
public class BudgetFileStoreBenchmarks
{
    private const int Callers = 64;
    private const int PerCaller = 32;
    private string _dir = null!;
    private FileBudgetStore _store = null!;
    private BudgetRequest _request;
    private FileStream _naiveLog = null!;
    private readonly object _naiveGate = new();
    private long _naiveSeq;

    [GlobalSetup]
    public void Setup()
    {
        _dir = Path.Combine(Path.GetTempPath(), "kars-bench-" + Guid.NewGuid().ToString("N"));
        var fs = new FileSystem();
        fs.Directory.CreateDirectory(_dir);
        _store = FileBudgetStore.OpenAsync(fs.Path.Combine(_dir, "store"), options: null, fs, TimeProvider.System).AsTask().GetAwaiter().GetResult();
        _request = new BudgetRequest(new BudgetLevel("agent-a", new BudgetLimits(day: long.MaxValue / 2, month: long.MaxValue / 2)), 10, TimeSpan.FromMinutes(10));
        _naiveLog = new FileStream(fs.Path.Combine(_dir, "naive.log"), FileMode.Append, FileAccess.Write, FileShare.Read);
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _store.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _naiveLog.Dispose();
        new FileSystem().Directory.Delete(_dir, recursive: true);
    }

    /// <summary>Naive: append one record and fsync it, per admission, under a lock.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = Callers * PerCaller)]
    public Task FsyncPerAdmission() => RunCallers(() =>
    {
        lock (_naiveGate)
        {
            byte[] line = System.Text.Encoding.UTF8.GetBytes("R " + (++_naiveSeq).ToString(CultureInfo.InvariantCulture) + " agent-a 10\n");
            _naiveLog.Write(line);
            _naiveLog.Flush(flushToDisk: true);
        }

        return Task.CompletedTask;
    });

    /// <summary>Kars.Policy: FileBudgetStore reservations (write-ahead log, group commit, fsync before acknowledging).</summary>
    [Benchmark(OperationsPerInvoke = Callers * PerCaller)]
    public Task FileStoreGroupCommit() => RunCallers(async () =>
    {
        BudgetDecision decision = await _store.TryReserveAsync(_request).ConfigureAwait(false);
        if (!decision.IsAdmitted)
        {
            throw new InvalidOperationException("not admitted");
        }
    });

    /// <summary>Kars.Policy: a durable reservation followed by its durable settlement (two log records, one operation counted).</summary>
    [Benchmark(OperationsPerInvoke = Callers * PerCaller)]
    public Task FileStoreReserveAndSettle() => RunCallers(async () =>
    {
        BudgetDecision decision = await _store.TryReserveAsync(_request).ConfigureAwait(false);
        await _store.SettleAsync(decision.Lease.Id, 7).ConfigureAwait(false);
    });

    private static Task RunCallers(Func<Task> admission)
        => Task.WhenAll(Enumerable.Range(0, Callers).Select(_ => Task.Run(async () =>
        {
            for (int i = 0; i < PerCaller; i++)
            {
                await admission().ConfigureAwait(false);
            }
        })));
}

/// <summary>
/// Admission alone (DESIGN §6): <c>TryReserveAsync</c> over five windows, store clock. Each iteration runs 65,536
/// admissions; the leases are settled in <c>[IterationCleanup]</c>, outside the measurement, so the lease table
/// returns to empty between iterations (its capacity stays, so nothing is allocated in steady state).
/// Baseline: the naive dictionary + lock reservation (no settlement) in the same class.
/// </summary>
[MemoryDiagnoser]
[ShortRunJob]
[MedianColumn]
[InvocationCount(65_536)]
public class BudgetAdmissionOnlyBenchmarks
{
    private const long Tokens = 10;
    private readonly NaiveBudget _naive = new();
    private readonly List<long> _leases = new(70_000);
    private InMemoryBudgetStore _store = null!;
    private BudgetRequest _request;

    [GlobalSetup]
    public void Setup()
    {
        _store = new InMemoryBudgetStore(TimeProvider.System);
        var level = new BudgetLevel("agent-a", new BudgetLimits(hour: long.MaxValue / 2, day: long.MaxValue / 2, week: long.MaxValue / 2, month: long.MaxValue / 2, year: long.MaxValue / 2));
        _request = new BudgetRequest(level, Tokens, TimeSpan.FromMinutes(10));
    }

    [IterationCleanup]
    public void SettleAll()
    {
        foreach (long id in _leases)
        {
            _store.SettleAsync(id, Tokens).GetAwaiter().GetResult();
        }

        _leases.Clear();
    }

    /// <summary>Naive: ConcurrentDictionary of per-period counters, one lock, calendar maths per call; reserve only.</summary>
    [Benchmark(Baseline = true)]
    public bool ConcurrentDictionaryAndLockReserve() => _naive.TryReserve("agent-a", Tokens);

    /// <summary>Kars.Policy: InMemoryBudgetStore.TryReserveAsync, five windows, store clock.</summary>
    [Benchmark]
    public bool InMemoryStoreReserve()
    {
        BudgetDecision decision = _store.TryReserveAsync(_request).GetAwaiter().GetResult();
        _leases.Add(decision.Lease.Id);
        return decision.IsAdmitted;
    }
}

/// <summary>
/// Contended admission (issue 8): 2, 8 and 64 callers on dedicated threads, all on one key or each on its own key,
/// every operation a reserve plus its settlement through the lease (two lock acquisitions). Compares, in one run,
/// the in-memory store on <see cref="System.Threading.Lock"/>, the same store on the compare-and-swap spin lock
/// (<c>BudgetSpinLock</c>), and the naive baseline (ConcurrentDictionary + one lock). The total work per invocation
/// is fixed (<see cref="TotalOperations"/>, split over the callers), so per-operation times compare across caller
/// counts. The threads are created once per case and released by a barrier per invocation.
/// </summary>
[MemoryDiagnoser]
[Config(typeof(ContendedConfig))]
[MedianColumn]
public class BudgetContendedBenchmarks
{
    private const int TotalOperations = 65_536;
    private const long Tokens = 10;
    private readonly NaiveBudget _naive = new();
    private InMemoryBudgetStore _lockStore = null!;
    private InMemoryBudgetStore _spinStore = null!;
    private BudgetRequest[] _requests = null!;
    private string[] _keys = null!;
    private Thread[] _threads = null!;
    private Barrier _start = null!;
    private CountdownEvent _done = null!;
    private Action<int> _work = null!;
    private volatile bool _stop;

    /// <summary>Gets or sets the number of concurrent callers.</summary>
    [Params(2, 8, 64)]
    public int Callers { get; set; }

    /// <summary>Gets or sets whether each caller uses its own key (else all share one).</summary>
    [Params(false, true)]
    public bool DistinctKeys { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _lockStore = new InMemoryBudgetStore(TimeProvider.System, BudgetLedgerGate.ForLock());
        _spinStore = new InMemoryBudgetStore(TimeProvider.System, BudgetLedgerGate.ForSpinLock());
        var limits = new BudgetLimits(hour: long.MaxValue / 2, day: long.MaxValue / 2, week: long.MaxValue / 2, month: long.MaxValue / 2, year: long.MaxValue / 2);
        _keys = Enumerable.Range(0, Callers).Select(i => DistinctKeys ? "agent-" + i.ToString(CultureInfo.InvariantCulture) : "agent").ToArray();
        BudgetLevel shared = new("agent", limits);
        _requests = _keys.Select(k => new BudgetRequest(DistinctKeys ? new BudgetLevel(k, limits) : shared, Tokens, TimeSpan.FromMinutes(10))).ToArray();
        _start = new Barrier(Callers + 1);
        _done = new CountdownEvent(Callers);
        _threads = Enumerable.Range(0, Callers).Select(i => new Thread(() => Worker(i)) { IsBackground = true }).ToArray();
        foreach (Thread thread in _threads)
        {
            thread.Start();
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _stop = true;
        _start.SignalAndWait();
        foreach (Thread thread in _threads)
        {
            thread.Join();
        }

        _start.Dispose();
        _done.Dispose();
    }

    /// <summary>Naive: ConcurrentDictionary of per-period counters, one lock, calendar maths per call.</summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = TotalOperations)]
    public void NaiveDictionaryAndLock() => Run(caller =>
    {
        string key = _keys[caller];
        for (int i = TotalOperations / Callers; i > 0; i--)
        {
            _naive.TryReserveAndSettle(key, Tokens);
        }
    });

    /// <summary>Kars.Policy: InMemoryBudgetStore on System.Threading.Lock, reserve + settle through the lease.</summary>
    [Benchmark(OperationsPerInvoke = TotalOperations)]
    public void StoreWithLock() => Run(caller => ReserveAndSettle(_lockStore, caller));

    /// <summary>Kars.Policy: InMemoryBudgetStore on the compare-and-swap spin lock, reserve + settle through the lease.</summary>
    [Benchmark(OperationsPerInvoke = TotalOperations)]
    public void StoreWithSpinLock() => Run(caller => ReserveAndSettle(_spinStore, caller));

    private void ReserveAndSettle(InMemoryBudgetStore store, int caller)
    {
        BudgetRequest request = _requests[caller];
        for (int i = TotalOperations / Callers; i > 0; i--)
        {
            BudgetDecision decision = store.TryReserveAsync(request).GetAwaiter().GetResult();
            decision.Lease.SettleAsync(Tokens).GetAwaiter().GetResult();
        }
    }

    private void Run(Action<int> work)
    {
        _work = work;
        _done.Reset();
        _start.SignalAndWait();
        _done.Wait();
    }

    /// <summary>One invocation per iteration (each is tens of milliseconds of work), run in the benchmark process
    /// itself: the generated-project build of the default toolchain does not finish on the shared 2-core machine.</summary>
    private sealed class ContendedConfig : BenchmarkDotNet.Configs.ManualConfig
    {
        public ContendedConfig()
            => AddJob(Job.Default
                .WithStrategy(BenchmarkDotNet.Engines.RunStrategy.Monitoring)
                .WithLaunchCount(1)
                .WithWarmupCount(3)
                .WithIterationCount(9)
                .WithInvocationCount(1)
                .WithUnrollFactor(1)
                .WithToolchain(BenchmarkDotNet.Toolchains.InProcess.Emit.InProcessEmitToolchain.Instance));
    }

    private void Worker(int caller)
    {
        while (true)
        {
            _start.SignalAndWait();
            if (_stop)
            {
                return;
            }

            _work(caller);
            _done.Signal();
        }
    }
}
