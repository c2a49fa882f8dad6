using System.Diagnostics;
using System.IO.Abstractions;
using System.IO.Abstractions.TestingHelpers;
using System.Text;
using Kars.Policy.Budgets;
using Microsoft.Extensions.Time.Testing;
using NodaTime;

namespace Kars.Policy.Tests.Budgets;

/// <summary>Issue 7, items 1–4 and hostile files: one owner per directory, a damaged log tail, time going back.</summary>
public sealed class FileBudgetStoreFaultTests : IDisposable
{
    private const string Dir = "/budgets";
    private static readonly TimeSpan Lease = TimeSpan.FromMinutes(10);
    private readonly MockFileSystem _fs = new();
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2030, 5, 6, 12, 0, 0, TimeSpan.Zero));
    private readonly BudgetLevel _agent = new("agent", new BudgetLimits(day: 100_000));
    private readonly string _disk = Path.Combine(Path.GetTempPath(), "kars-faults-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_disk))
        {
            Directory.Delete(_disk, recursive: true);
        }
    }

    private string LogPath => _fs.Path.Combine(Dir, FileBudgetStore.LogFileName);

    private ValueTask<FileBudgetStore> OpenAsync() => FileBudgetStore.OpenAsync(Dir, null, _fs, _time);

    private BudgetRequest Request(long tokens) => new(_agent, tokens, Lease);

    private static BudgetWindowStatus Day(BudgetStatus status) => status.Windows.Single(w => w.Window == BudgetWindow.Day);

    // ----- 1. One owner per directory -----

    [Fact]
    public async Task OpenAsync_SameDirectoryTwiceInOneProcess_SecondThrowsInUseNamingTheFolder()
    {
        await using (var first = await OpenAsync())
        {
            await first.TryReserveAsync(Request(100));

            var second = async () => await OpenAsync();

            var ex = (await second.Should().ThrowAsync<BudgetStoreInUseException>()).Which;
            ex.Location.Should().Be(Dir);
            ex.Message.Should().Contain($"'{Dir}'").And.NotContain("\n");
            (await first.TryReserveAsync(Request(1))).IsAdmitted.Should().BeTrue("the owner keeps working");
        }

        await using var reopened = await OpenAsync();
        Day(await reopened.GetStatusAsync(_agent)).Held.Should().Be(101, "the lock is released on dispose");
    }

    [Fact]
    public async Task OpenAsync_RealDiskTwoFileSystemInstances_OsLockRefusesTheSecond()
    {
        // Two IFileSystem instances share no in-process registry: only the OS lock on budget.lock can refuse this.
        await using (var first = await FileBudgetStore.OpenAsync(_disk, null, new FileSystem(), _time))
        {
            await first.TryReserveAsync(Request(100));
            byte[] log = File.ReadAllBytes(Path.Combine(_disk, FileBudgetStore.LogFileName));

            var second = async () => await FileBudgetStore.OpenAsync(_disk, null, new FileSystem(), _time);

            (await second.Should().ThrowAsync<BudgetStoreInUseException>()).Which.Location.Should().Be(_disk);
            File.ReadAllBytes(Path.Combine(_disk, FileBudgetStore.LogFileName)).Should().Equal(log, "the refused opener ran no recovery");
        }

        await using var again = await FileBudgetStore.OpenAsync(_disk, null, new FileSystem(), _time);
        Day(await again.GetStatusAsync(_agent)).Held.Should().Be(100);
    }

    [Fact]
    public async Task OpenAsync_WhileAnotherProcessOwnsTheDirectory_ThrowsInUseUntilThatProcessDies()
    {
        using var child = StoreHost.Start("file", _disk, "1", "7");
        await child.WaitForLineAsync(l => l == "ready");
        var acked = await child.WaitForLineAsync(l => l.StartsWith("ack ", StringComparison.Ordinal));

        var act = async () => await FileBudgetStore.OpenAsync(_disk, null, new FileSystem(), TimeProvider.System);
        (await act.Should().ThrowAsync<BudgetStoreInUseException>()).Which.Location.Should().Be(_disk);

        child.Kill();
        await using var store = await FileBudgetStore.OpenAsync(_disk, null, new FileSystem(), TimeProvider.System);
        long id = long.Parse(acked.Split(' ')[1]);
        (await store.SettleAsync(id, 7)).Status.Should().Be(BudgetSettlementStatus.Settled, "the killed owner's acknowledged lease survives and the OS released its lock");
    }

    [Fact]
    public async Task OpenAsync_InAnotherProcessWhileThisOneOwnsTheDirectory_ChildIsRefused()
    {
        await using var store = await FileBudgetStore.OpenAsync(_disk, null, new FileSystem(), TimeProvider.System);
        (await store.TryReserveAsync(Request(5))).IsAdmitted.Should().BeTrue();

        using var child = StoreHost.Start("file", _disk, "1", "7");
        string line = await child.WaitForLineAsync(_ => true);
        int exit = await child.WaitForExitAsync();

        line.Should().Be("in-use " + _disk);
        exit.Should().Be(3);
        (await store.TryReserveAsync(Request(5))).IsAdmitted.Should().BeTrue();
        Day(await store.GetStatusAsync(_agent)).Held.Should().Be(10, "the refused child admitted nothing");
    }

    // ----- 2. Damaged log tail -----

    private async Task<byte[]> LogWithRecordsAsync(params long[] tokens)
    {
        await using (var store = await OpenAsync())
        {
            foreach (long t in tokens)
            {
                (await store.TryReserveAsync(Request(t))).IsAdmitted.Should().BeTrue();
            }
        }

        return _fs.File.ReadAllBytes(LogPath);
    }

    [Fact]
    public async Task OpenAsync_LastRecordCutInHalf_OpensAndReportsTheTornBytes()
    {
        await LogWithRecordsAsync();
        byte[] log = await AppendRecordsAfterReopenAsync(100, 200);
        int lastStart = Array.LastIndexOf(log, (byte)'\n', log.Length - 2) + 1;
        int cut = lastStart + ((log.Length - lastStart) / 2);
        _fs.File.WriteAllBytes(LogPath, log[..cut]);
        var logger = new EventLogger();

        await using var reopened = await FileBudgetStore.OpenAsync(Dir, null, _fs, _time, logger);

        reopened.TornBytesDiscarded.Should().Be(cut - lastStart);
        logger.EventIds.Should().Contain(3002);
        Day(await reopened.GetStatusAsync(_agent)).Held.Should().Be(100, "the complete record is kept, the torn one was never acknowledged");
    }

    [Fact]
    public async Task OpenAsync_CleanLog_ReportsNoTornBytes()
    {
        await AppendRecordsAfterReopenAsync(100);

        await using var reopened = await OpenAsync();

        reopened.TornBytesDiscarded.Should().Be(0);
    }

    [Fact]
    public async Task OpenAsync_ByteFlippedInTheLastCompleteRecord_FailsClosed()
    {
        byte[] log = await AppendRecordsAfterReopenAsync(100, 200);
        log[^5] ^= 0x01;
        _fs.File.WriteAllBytes(LogPath, log);

        var act = async () => await OpenAsync();

        var ex = (await act.Should().ThrowAsync<BudgetStateCorruptException>()).Which;
        ex.Path.Should().Be(LogPath);
        ex.Message.Should().Contain("line 3 is complete but does not verify");
    }

    [Fact]
    public async Task OpenAsync_LogCutBelowWhatTheSnapshotCounts_FailsClosed()
    {
        // A crash between the snapshot and the log rename leaves the new snapshot with the previous log, which must
        // still hold every record the snapshot counts. Simulate it: a new snapshot (seq 2) next to a log cut to seq 1.
        await using (var store = await OpenAsync())
        {
            await store.TryReserveAsync(Request(100));
            await store.TryReserveAsync(Request(200));
        }

        byte[] full = await AppendRecordsAfterReopenAsync(300, 400);
        string[] lines = Encoding.UTF8.GetString(full).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        lines.Should().HaveCount(3);
        _fs.File.Copy(LogPath, LogPath + ".keep");
        await using (await OpenAsync())
        {
        }

        // The snapshot now counts 4 records; put back the log with its header (base 2) and one record only.
        _fs.File.WriteAllText(LogPath, lines[0] + "\n" + lines[1] + "\n");

        var act = async () => await OpenAsync();

        (await act.Should().ThrowAsync<BudgetStateCorruptException>()).Which.Message.Should().Contain("records are missing from the log");
    }

    [Fact]
    public async Task OpenAsync_LogCutToHalf_NeverOpensWithASilentLoss()
    {
        byte[] log = await AppendRecordsAfterReopenAsync(100, 200, 300, 400);
        _fs.File.WriteAllBytes(LogPath, log[..(log.Length / 2)]);

        // The cut either lands inside a record (a torn tail: reported) or, if it removes the header, fails closed.
        var logger = new EventLogger();
        await using var reopened = await FileBudgetStore.OpenAsync(Dir, null, _fs, _time, logger);

        reopened.TornBytesDiscarded.Should().BeGreaterThan(0);
        logger.EventIds.Should().Contain(3002);
    }

    [Theory]
    [InlineData("R 3 1 0 6000000000 10 agent %", "admitted again while it is open")]
    [InlineData("R 3 1 0 6000000000 10 other %", "admitted again while it is open")]
    [InlineData("S 3 99 5", "is settled but is not open")]
    public async Task OpenAsync_ForgedRecordReusingALeaseId_FailsClosed(string forged, string expected)
    {
        // Lease 1 is open; the forged record reuses it (or settles one that never existed).
        byte[] log = await AppendRecordsAfterReopenAsync(100, 200);
        string[] lines = Encoding.UTF8.GetString(log).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        string secondLeaseSeq = lines[2].Split(' ')[2];
        _fs.File.WriteAllBytes(LogPath, [.. Encoding.UTF8.GetBytes(lines[0] + "\n" + lines[1] + "\n"), .. Line(forged.Replace("R 3 ", "R " + secondLeaseSeq + " ").Replace("S 3 ", "S " + secondLeaseSeq + " "))]);

        var act = async () => await OpenAsync();

        (await act.Should().ThrowAsync<BudgetStateCorruptException>()).Which.Message.Should().Contain(expected);
    }

    [Fact]
    public async Task OpenAsync_LeaseIdOlderThanTheLastIssued_FailsClosed()
    {
        byte[] log = await AppendRecordsAfterReopenAsync(100, 200);
        string[] lines = Encoding.UTF8.GetString(log).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        string[] second = lines[2].Split(' ');
        string[] first = lines[1].Split(' ');

        // Lease of the first record is settled, then a record re-admits that closed id.
        string settle = $"S {second[2]} {first[3]} 10";
        string readmit = $"R {long.Parse(second[2]) + 1} {first[3]} 0 6000000000 10 agent %";
        _fs.File.WriteAllBytes(LogPath, [.. Encoding.UTF8.GetBytes(lines[0] + "\n" + lines[1] + "\n"), .. Line(settle), .. Line(readmit)]);

        var act = async () => await OpenAsync();

        (await act.Should().ThrowAsync<BudgetStateCorruptException>()).Which.Message.Should().Contain("lease ids only grow");
    }

    /// <summary>Opens the store (which compacts), admits <paramref name="tokens"/> so the log holds a header and one
    /// record each, closes it and returns the log bytes.</summary>
    private async Task<byte[]> AppendRecordsAfterReopenAsync(params long[] tokens)
    {
        await using (await OpenAsync())
        {
        }

        return await LogWithRecordsAsync(tokens);
    }

    // ----- Hostile file-system objects -----

    [Theory]
    [InlineData(FileBudgetStore.LogFileName)]
    [InlineData(FileBudgetStore.SnapshotFileName)]
    [InlineData(FileBudgetStore.MarkerFileName)]
    public async Task OpenAsync_StoreFileIsAFifo_FailsClosedWithoutHanging(string name)
    {
        await using (var store = await FileBudgetStore.OpenAsync(_disk, null, new FileSystem(), _time))
        {
            await store.TryReserveAsync(Request(100));
        }

        string path = Path.Combine(_disk, name);
        File.Delete(path);
        using (var mkfifo = Process.Start("mkfifo", [path]))
        {
            await mkfifo.WaitForExitAsync();
            mkfifo.ExitCode.Should().Be(0);
        }

        var open = FileBudgetStore.OpenAsync(_disk, null, new FileSystem(), _time).AsTask();
        var finished = await Task.WhenAny(open, Task.Delay(TimeSpan.FromSeconds(30)));

        finished.Should().BeSameAs(open, "a FIFO must be refused, not waited on");
        var act = async () => await open;
        (await act.Should().ThrowAsync<BudgetStateCorruptException>()).Which.Message.Should().Contain("not a regular file");
    }

    // ----- 4. Time going back -----

    [Fact]
    public async Task TryReserveAsync_InstantInAPrunedPeriod_IsRefusedAfterRestartToo()
    {
        var level = new BudgetLevel("agent", new BudgetLimits(day: 1000));
        Instant jan1 = Instant.FromUtc(2030, 1, 1, 10, 0);
        await using (var store = await OpenAsync())
        {
            (await store.TryReserveAsync(new BudgetRequest(level, 900, Lease, at: jan1))).IsAdmitted.Should().BeTrue();
            await store.SettleAsync(1, 900, jan1 + Duration.FromMinutes(1));
            (await store.TryReserveAsync(new BudgetRequest(level, 10, Lease, at: Instant.FromUtc(2030, 1, 3, 9, 0)))).IsAdmitted.Should().BeTrue();

            var back = async () => await store.TryReserveAsync(new BudgetRequest(level, 900, Lease, at: jan1 + Duration.FromMinutes(30)));

            var ex = (await back.Should().ThrowAsync<BudgetPeriodPrunedException>()).Which;
            ex.At.Should().Be(jan1 + Duration.FromMinutes(30));
        }

        await using var reopened = await OpenAsync();
        var again = async () => await reopened.TryReserveAsync(new BudgetRequest(level, 900, Lease, at: jan1 + Duration.FromMinutes(30)));
        await again.Should().ThrowAsync<BudgetPeriodPrunedException>("the pruned horizon is part of the snapshot");
    }

    [Fact]
    public async Task TryReserveAsync_InMemoryInstantInAPrunedPeriod_IsRefusedAndLaterInstantsStillWork()
    {
        var store = new InMemoryBudgetStore(_time);
        var level = new BudgetLevel("agent", new BudgetLimits(day: 1000));
        Instant jan1 = Instant.FromUtc(2030, 1, 1, 10, 0);
        (await store.TryReserveAsync(new BudgetRequest(level, 900, Lease, at: jan1))).IsAdmitted.Should().BeTrue();
        await store.SettleAsync(1, 900, jan1);
        Instant jan3 = Instant.FromUtc(2030, 1, 3, 9, 0);
        (await store.TryReserveAsync(new BudgetRequest(level, 10, Lease, at: jan3))).IsAdmitted.Should().BeTrue();

        var back = async () => await store.TryReserveAsync(new BudgetRequest(level, 900, Lease, at: jan1 + Duration.FromMinutes(30)));
        var slightlyLate = await store.TryReserveAsync(new BudgetRequest(level, 10, Lease, at: jan3 - Duration.FromMinutes(30)));

        await back.Should().ThrowAsync<BudgetPeriodPrunedException>();
        slightlyLate.IsAdmitted.Should().BeTrue("an instant in a period the store still has is decided normally");
    }

    // ----- Helpers -----

    private static byte[] Line(string payload)
    {
        ulong hash = 14695981039346656037UL;
        foreach (byte b in Encoding.UTF8.GetBytes(payload))
        {
            hash ^= b;
            hash *= 1099511628211UL;
        }

        return Encoding.UTF8.GetBytes($"{hash:x16} {payload}\n");
    }

    private sealed class EventLogger : Microsoft.Extensions.Logging.ILogger, Microsoft.Extensions.Logging.ILoggerFactory
    {
        public Microsoft.Extensions.Logging.ILogger CreateLogger(string categoryName) => this;

        public void AddProvider(Microsoft.Extensions.Logging.ILoggerProvider provider)
        {
        }

        public void Dispose()
        {
        }

        public List<int> EventIds { get; } = [];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(Microsoft.Extensions.Logging.LogLevel logLevel) => true;

        public void Log<TState>(Microsoft.Extensions.Logging.LogLevel logLevel, Microsoft.Extensions.Logging.EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (EventIds)
            {
                EventIds.Add(eventId.Id);
            }
        }
    }
}

/// <summary>The child-process store host (tests/Kars.Policy.StoreHost), started with <c>dotnet</c>.</summary>
internal sealed class StoreHost : IDisposable
{
    private readonly Process _process;

    private StoreHost(Process process) => _process = process;

    public static StoreHost Start(params string[] args)
    {
        string host = Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "Kars.Policy.StoreHost", "bin",
            new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)).Parent!.Name, "net10.0", "Kars.Policy.StoreHost.dll");
        File.Exists(host).Should().BeTrue($"the store host is built next to the tests ({host})");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(host);
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        return new StoreHost(Process.Start(start)!);
    }

    /// <summary>Reads stdout until a line matches; fails if the host exits first or after two minutes.</summary>
    public async Task<string> WaitForLineAsync(Func<string, bool> match)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        while (true)
        {
            string? line = await _process.StandardOutput.ReadLineAsync(timeout.Token);
            if (line is null)
            {
                throw new InvalidOperationException("the store host exited: " + await _process.StandardError.ReadToEndAsync());
            }

            if (match(line))
            {
                return line;
            }
        }
    }

    /// <summary>Reads one stdout line, or null at the end.</summary>
    public Task<string?> ReadLineAsync(CancellationToken cancellationToken) => _process.StandardOutput.ReadLineAsync(cancellationToken).AsTask();

    /// <summary>Kills the process with SIGKILL (no clean-up runs) and waits for it.</summary>
    public void Kill()
    {
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit();
    }

    public async Task<int> WaitForExitAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await _process.WaitForExitAsync(timeout.Token);
        return _process.ExitCode;
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }

        _process.Dispose();
    }
}
