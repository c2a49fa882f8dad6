using System.Diagnostics;
using System.IO.Abstractions;
using System.IO.Abstractions.TestingHelpers;
using System.Text;
using Kars.Policy.Budgets;
using Microsoft.Extensions.Time.Testing;
using NodaTime;
using NodaTime.Text;

namespace Kars.Policy.Tests.Budgets;

public sealed class FileBudgetStoreContractTests : BudgetStoreContractTests
{
    protected override async ValueTask<BudgetStore> CreateStoreAsync(TimeProvider time)
        => await FileBudgetStore.OpenAsync("/budgets", options: null, new MockFileSystem(), time);
}

public sealed class FileBudgetStoreRealDiskContractTests : BudgetStoreContractTests
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "kars-budget-" + Guid.NewGuid().ToString("N"));

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        new FileSystem().Directory.Delete(_dir, recursive: true);
    }

    protected override async ValueTask<BudgetStore> CreateStoreAsync(TimeProvider time)
        => await FileBudgetStore.OpenAsync(_dir, options: null, new FileSystem(), time);
}

public sealed class FileBudgetStoreTests
{
    private const string Dir = "/budgets";
    private static readonly TimeSpan Lease = TimeSpan.FromMinutes(10);
    private readonly MockFileSystem _fs = new();
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2030, 5, 6, 12, 0, 0, TimeSpan.Zero));
    private readonly BudgetLevel _tenant = new("tenant", new BudgetLimits(day: 10_000));
    private readonly BudgetLevel _agent = new("agent a", new BudgetLimits(hour: 5000, day: 1000, month: 100_000));

    private string LogPath => _fs.Path.Combine(Dir, FileBudgetStore.LogFileName);

    private string SnapshotPath => _fs.Path.Combine(Dir, FileBudgetStore.SnapshotFileName);

    private ValueTask<FileBudgetStore> OpenAsync(FileBudgetStoreOptions? options = null) => FileBudgetStore.OpenAsync(Dir, options, _fs, _time);

    private BudgetRequest Request(long tokens) => new(_agent, tokens, Lease, _tenant);

    private static BudgetWindowStatus Day(BudgetStatus status) => status.Windows.Single(w => w.Window == BudgetWindow.Day);

    [Fact]
    public async Task OpenAsync_AfterRestart_KeepsCountersAndOpenLeases()
    {
        long openLease;
        await using (var store = await OpenAsync())
        {
            var settled = await store.TryReserveAsync(Request(300));
            await store.SettleAsync(settled.Lease.Id, 120);
            var abandoned = await store.TryReserveAsync(Request(50));
            await store.AbandonAsync(abandoned.Lease.Id);
            openLease = (await store.TryReserveAsync(Request(400))).Lease.Id;
        }

        await using var reopened = await OpenAsync();
        var day = Day(await reopened.GetStatusAsync(_agent, _tenant));
        day.Used.Should().Be(170);
        day.Held.Should().Be(400);
        Day(await reopened.GetStatusAsync(_tenant)).Used.Should().Be(170);
        (await reopened.SettleAsync(openLease, 10)).Status.Should().Be(BudgetSettlementStatus.Settled);
        Day(await reopened.GetStatusAsync(_agent, _tenant)).Used.Should().Be(180);
        var next = await reopened.TryReserveAsync(Request(1));
        next.Lease.Id.Should().BeGreaterThan(openLease);
    }

    [Fact]
    public async Task OpenAsync_AfterLeaseExpired_ChargesOrphanedHold()
    {
        await using (var store = await OpenAsync())
        {
            (await store.TryReserveAsync(Request(700))).IsAdmitted.Should().BeTrue();
        }

        _time.Advance(Lease + TimeSpan.FromSeconds(1));
        await using var reopened = await OpenAsync();

        var day = Day(await reopened.GetStatusAsync(_agent, _tenant));
        day.Used.Should().Be(700);
        day.Held.Should().Be(0);
    }

    [Fact]
    public async Task OpenAsync_SettledLease_StaysIdempotentAfterRestart()
    {
        long id;
        await using (var store = await OpenAsync())
        {
            id = (await store.TryReserveAsync(Request(10))).Lease.Id;
            await store.SettleAsync(id, 5);
        }

        await using var reopened = await OpenAsync();
        var again = await reopened.SettleAsync(id, 500);

        again.Status.Should().Be(BudgetSettlementStatus.AlreadySettled);
        again.Charged.Should().Be(5);
        Day(await reopened.GetStatusAsync(_agent)).Used.Should().Be(5);
    }

    [Fact]
    public async Task Compaction_ManyRecords_KeepsStateAndShortensLog()
    {
        await using (var store = await OpenAsync(new FileBudgetStoreOptions { CompactAfterRecords = 10 }))
        {
            for (int i = 0; i < 60; i++)
            {
                var d = await store.TryReserveAsync(Request(2));
                await store.SettleAsync(d.Lease.Id, 1);
            }

            _fs.File.ReadAllLines(LogPath).Length.Should().BeLessThan(40);
        }

        await using var reopened = await OpenAsync();
        Day(await reopened.GetStatusAsync(_agent)).Used.Should().Be(60);
        _fs.File.Exists(SnapshotPath + ".bak").Should().BeTrue();
    }

    [Fact]
    public async Task OpenAsync_TornFinalLine_DropsItAndKeepsTheRest()
    {
        await using (var store = await OpenAsync())
        {
            await store.TryReserveAsync(Request(100));
        }

        await using (var store = await OpenAsync())
        {
            await store.TryReserveAsync(Request(200));
        }

        _fs.File.AppendAllText(LogPath, "0123456789abcdef R 3 9 1 2 3 x");
        var logger = new CapturingLogger();

        await using var reopened = await FileBudgetStore.OpenAsync(Dir, options: null, _fs, _time, logger);
        Day(await reopened.GetStatusAsync(_agent)).Held.Should().Be(300);
        logger.EventIds.Should().Contain(3002).And.Contain(3001);
    }

    [Fact]
    public async Task OpenAsync_DamagedLineInTheMiddle_FailsClosed()
    {
        await using (var store = await OpenAsync())
        {
            await store.TryReserveAsync(Request(100));
            await store.TryReserveAsync(Request(200));
        }

        // Reopen compacts into the snapshot; write records to the log again, then damage the first one.
        await using (var store = await OpenAsync())
        {
            await store.TryReserveAsync(Request(1));
            await store.TryReserveAsync(Request(2));
        }

        string[] lines = _fs.File.ReadAllLines(LogPath);
        lines.Should().HaveCount(3);
        lines[1] = lines[1][..^1] + "X";
        _fs.File.WriteAllText(LogPath, string.Join("\n", lines) + "\n");

        var act = async () => await OpenAsync();

        (await act.Should().ThrowAsync<BudgetStateCorruptException>()).Which.Path.Should().Be(LogPath);
    }

    [Fact]
    public async Task OpenAsync_DamagedSnapshot_RestoresFromBackupGeneration()
    {
        await using (var store = await OpenAsync())
        {
            await store.TryReserveAsync(Request(100));
        }

        await using (var store = await OpenAsync())
        {
            var d = await store.TryReserveAsync(Request(50));
            await store.SettleAsync(d.Lease.Id, 20);
        }

        Damage(SnapshotPath);
        var logger = new CapturingLogger();

        await using var reopened = await FileBudgetStore.OpenAsync(Dir, options: null, _fs, _time, logger);

        var day = Day(await reopened.GetStatusAsync(_agent));
        day.Held.Should().Be(100);
        day.Used.Should().Be(20);
        logger.EventIds.Should().Contain(3005);
    }

    [Fact]
    public async Task OpenAsync_DamagedSnapshotAndBackup_FailsClosedNeverResets()
    {
        await using (var store = await OpenAsync())
        {
            await store.TryReserveAsync(Request(100));
        }

        await using (var store = await OpenAsync())
        {
        }

        Damage(SnapshotPath);
        Damage(SnapshotPath + ".bak");

        var act = async () => await OpenAsync();

        var ex = (await act.Should().ThrowAsync<BudgetStateCorruptException>()).Which;
        ex.Path.Should().Be(SnapshotPath);
        ex.Message.Should().Contain("corrupt");
    }

    [Fact]
    public async Task OpenAsync_UnknownVersion_FailsClosed()
    {
        await using (var store = await OpenAsync())
        {
            await store.TryReserveAsync(Request(100));
        }

        string payload = "kars-budget-snapshot 2 0 1";
        _fs.File.WriteAllBytes(SnapshotPath, Line(payload));

        var act = async () => await OpenAsync();

        (await act.Should().ThrowAsync<BudgetStateCorruptException>()).Which.Message.Should().Contain("unknown snapshot version '2'");
    }

    [Fact]
    public async Task OpenAsync_SnapshotAndBackupMissingButLogContinuesThem_FailsClosed()
    {
        await using (var store = await OpenAsync())
        {
            await store.TryReserveAsync(Request(100));
        }

        await using (var store = await OpenAsync())
        {
            await store.TryReserveAsync(Request(100));
        }

        _fs.File.Delete(SnapshotPath);
        _fs.File.Delete(SnapshotPath + ".bak");

        var act = async () => await OpenAsync();

        (await act.Should().ThrowAsync<BudgetStateCorruptException>()).Which.Message.Should().Contain("snapshot is missing");
    }

    [Fact]
    public async Task OpenAsync_SnapshotMissing_RestoresFromBackupGenerationWithoutLoss()
    {
        await using (var store = await OpenAsync())
        {
            await store.TryReserveAsync(Request(100));
        }

        await using (var store = await OpenAsync())
        {
            await store.TryReserveAsync(Request(200));
        }

        _fs.File.Delete(SnapshotPath);

        await using var reopened = await OpenAsync();
        Day(await reopened.GetStatusAsync(_agent)).Held.Should().Be(300);
    }

    [Fact]
    public async Task OpenAsync_GarbageLog_FailsClosed()
    {
        _fs.Directory.CreateDirectory(Dir);
        _fs.File.WriteAllText(LogPath, "not a log\nstill not a log\n");

        var act = async () => await OpenAsync();

        await act.Should().ThrowAsync<BudgetStateCorruptException>();
    }

    private string MarkerPath => _fs.Path.Combine(Dir, FileBudgetStore.MarkerFileName);

    private async Task TwoGenerationsAsync()
    {
        await using (var store = await OpenAsync())
        {
            await store.TryReserveAsync(Request(100));
        }

        await using (var store = await OpenAsync())
        {
            var d = await store.TryReserveAsync(Request(200));
            await store.SettleAsync(d.Lease.Id, 150);
        }
    }

    private Dictionary<string, byte[]> Files() => _fs.Directory.GetFiles(Dir).ToDictionary(f => f, f => _fs.File.ReadAllBytes(f));

    [Fact]
    public async Task OpenAsync_SnapshotAndLogDeletedWithBackups_FailsClosedAndKeepsBackups()
    {
        await TwoGenerationsAsync();
        _fs.File.Delete(SnapshotPath);
        _fs.File.Delete(LogPath);
        var before = Files();

        var act = async () => await OpenAsync();

        var ex = (await act.Should().ThrowAsync<BudgetStateCorruptException>()).Which;
        ex.Path.Should().Be(LogPath);
        ex.Message.Should().Contain("budget.wal is missing");
        Files().Should().BeEquivalentTo(before, "a refused open changes no file, least of all the backups");
    }

    [Fact]
    public async Task OpenAsync_OnlyBackupsPresent_FailsClosed()
    {
        await TwoGenerationsAsync();
        _fs.File.Delete(SnapshotPath);
        _fs.File.Delete(LogPath);
        _fs.File.Delete(MarkerPath);

        var act = async () => await OpenAsync();

        (await act.Should().ThrowAsync<BudgetStateCorruptException>()).Which.Message.Should().Contain("backup files exist");
        _fs.File.Exists(SnapshotPath).Should().BeFalse();
    }

    [Fact]
    public async Task OpenAsync_LogDeleted_FailsClosedInsteadOfDroppingRecordsSinceSnapshot()
    {
        await TwoGenerationsAsync();
        await using (var store = await OpenAsync())
        {
            (await store.TryReserveAsync(Request(300))).IsAdmitted.Should().BeTrue();
        }

        _fs.File.Delete(LogPath);

        var act = async () => await OpenAsync();

        (await act.Should().ThrowAsync<BudgetStateCorruptException>()).Which.Path.Should().Be(LogPath);
    }

    [Fact]
    public async Task OpenAsync_LogDeletedBeforeAnyCompaction_FailsClosed()
    {
        await using (var store = await OpenAsync())
        {
            (await store.TryReserveAsync(Request(300))).IsAdmitted.Should().BeTrue();
        }

        _fs.File.Delete(LogPath);
        _fs.File.Delete(LogPath + ".bak");

        var act = async () => await OpenAsync();

        (await act.Should().ThrowAsync<BudgetStateCorruptException>()).Which.Message.Should().Contain("store identity file");
    }

    [Fact]
    public async Task OpenAsync_MarkerOnly_FailsClosed()
    {
        await TwoGenerationsAsync();
        foreach (string file in _fs.Directory.GetFiles(Dir).Where(f => f != MarkerPath))
        {
            _fs.File.Delete(file);
        }

        var act = async () => await OpenAsync();

        await act.Should().ThrowAsync<BudgetStateCorruptException>();
        _fs.Directory.GetFiles(Dir).Where(f => !f.EndsWith(FileBudgetStore.LockFileName, StringComparison.Ordinal)).Should().Equal(MarkerPath);
    }

    [Fact]
    public async Task OpenAsync_DamagedMarker_FailsClosed()
    {
        await TwoGenerationsAsync();
        _fs.File.WriteAllText(MarkerPath, "hello\n");

        var act = async () => await OpenAsync();

        (await act.Should().ThrowAsync<BudgetStateCorruptException>()).Which.Path.Should().Be(MarkerPath);
    }

    [Fact]
    public async Task OpenAsync_MarkerDeletedButStateIntact_LoadsAndRewritesMarker()
    {
        await TwoGenerationsAsync();
        _fs.File.Delete(MarkerPath);

        await using var reopened = await OpenAsync();

        var day = Day(await reopened.GetStatusAsync(_agent));
        day.Held.Should().Be(100);
        day.Used.Should().Be(150);
        _fs.File.Exists(MarkerPath).Should().BeTrue();
    }

    [Fact]
    public async Task OpenAsync_ManyGenerations_LogNeverMissingAndStateKept()
    {
        await TwoGenerationsAsync();
        await using (var store = await OpenAsync(new FileBudgetStoreOptions { CompactAfterRecords = 3 }))
        {
            for (int i = 0; i < 10; i++)
            {
                var d = await store.TryReserveAsync(Request(1));
                await store.SettleAsync(d.Lease.Id, 1);
                _fs.File.Exists(LogPath).Should().BeTrue();
            }
        }

        await using var reopened = await OpenAsync();
        Day(await reopened.GetStatusAsync(_agent)).Used.Should().Be(160);
    }

    [Fact]
    public async Task OpenAsync_KeyWithSurrogatePair_SameKeyAfterRestart()
    {
        var level = new BudgetLevel("agent-\uD83D\uDE00 %/ü", new BudgetLimits(day: 1000));
        await using (var store = await OpenAsync())
        {
            (await store.TryReserveAsync(new BudgetRequest(level, 400, Lease))).IsAdmitted.Should().BeTrue();
        }

        await using var reopened = await OpenAsync();
        Day(await reopened.GetStatusAsync(level)).Held.Should().Be(400);
    }

    [Theory]
    [InlineData("P 1 0 864000000000 -500 0 k", "negative counter")]
    [InlineData("P 1 0 864000000000 0 -1 k", "negative counter")]
    [InlineData("L 7 0 6000000000 -5 k %", "holds -5 tokens")]
    [InlineData("L 7 0 6000000000 9007199254740993 k %", "holds 9007199254740993 tokens")]
    public async Task OpenAsync_SnapshotWithNegativeOrOversizedValues_FailsClosed(string record, string expected)
    {
        _fs.Directory.CreateDirectory(Dir);
        _fs.File.WriteAllBytes(SnapshotPath, [.. Line("kars-budget-snapshot 1 0 8"), .. Line(record), .. Line("E 1")]);
        _fs.File.WriteAllBytes(LogPath, Line("kars-budget-wal 1 0"));

        var act = async () => await OpenAsync();

        (await act.Should().ThrowAsync<BudgetStateCorruptException>()).Which.Message.Should().Contain(expected);
    }

    [Fact]
    public async Task OpenAsync_LogSettlementAboveMaxTokens_FailsClosed()
    {
        _fs.Directory.CreateDirectory(Dir);
        _fs.File.WriteAllBytes(SnapshotPath, [.. Line("kars-budget-snapshot 1 0 1"), .. Line("E 0")]);
        _fs.File.WriteAllBytes(LogPath, [.. Line("kars-budget-wal 1 0"), .. Line("R 1 1 0 6000000000 10 k %"), .. Line("S 2 1 9223372036854775807"), .. Line("S 3 1 1")]);

        var act = async () => await OpenAsync();

        (await act.Should().ThrowAsync<BudgetStateCorruptException>()).Which.Message.Should().Contain("settled with 9223372036854775807");
    }

    [Fact]
    public async Task OpenAsync_EmptyDirectory_StartsEmpty()
    {
        await using var store = await OpenAsync();

        Day(await store.GetStatusAsync(_agent)).Used.Should().Be(0);
        _fs.File.Exists(LogPath).Should().BeTrue();
        _fs.File.Exists(SnapshotPath).Should().BeTrue();
        _fs.File.Exists(MarkerPath).Should().BeTrue();
    }

    [Fact]
    public async Task OpenAsync_RealDiskLogDeleted_FailsClosedAndKeepsFiles()
    {
        var disk = new FileSystem();
        string dir = Path.Combine(Path.GetTempPath(), "kars-budget-" + Guid.NewGuid().ToString("N"));
        try
        {
            await using (var store = await FileBudgetStore.OpenAsync(dir, options: null, disk, _time))
            {
                (await store.TryReserveAsync(Request(300))).IsAdmitted.Should().BeTrue();
            }

            await using (var store = await FileBudgetStore.OpenAsync(dir, options: null, disk, _time))
            {
                (await store.TryReserveAsync(Request(200))).IsAdmitted.Should().BeTrue();
            }

            disk.File.Delete(disk.Path.Combine(dir, FileBudgetStore.LogFileName));
            disk.File.Delete(disk.Path.Combine(dir, FileBudgetStore.SnapshotFileName));
            string backup = disk.Path.Combine(dir, FileBudgetStore.SnapshotFileName + ".bak");
            byte[] before = disk.File.ReadAllBytes(backup);

            var act = async () => await FileBudgetStore.OpenAsync(dir, options: null, disk, _time);

            await act.Should().ThrowAsync<BudgetStateCorruptException>();
            disk.File.ReadAllBytes(backup).Should().Equal(before);
            disk.File.Exists(disk.Path.Combine(dir, FileBudgetStore.SnapshotFileName)).Should().BeFalse();
        }
        finally
        {
            disk.Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task OpenAsync_RealDiskEmptyDirectory_StartsFreshWithMarker()
    {
        var disk = new FileSystem();
        string dir = Path.Combine(Path.GetTempPath(), "kars-budget-" + Guid.NewGuid().ToString("N"));
        disk.Directory.CreateDirectory(dir);
        try
        {
            await using (var store = await FileBudgetStore.OpenAsync(dir, options: null, disk, _time))
            {
                (await store.TryReserveAsync(Request(300))).IsAdmitted.Should().BeTrue();
            }

            disk.File.Exists(disk.Path.Combine(dir, FileBudgetStore.MarkerFileName)).Should().BeTrue();
            await using var reopened = await FileBudgetStore.OpenAsync(dir, options: null, disk, _time);
            Day(await reopened.GetStatusAsync(_agent)).Held.Should().Be(300);
        }
        finally
        {
            disk.Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public async Task WriteFailure_FailsTheCallAndEveryLaterOne()
    {
        // Real disk: the directory disappears under the store, so the next compaction cannot create its files.
        string dir = Path.Combine(Path.GetTempPath(), "kars-fail-" + Guid.NewGuid().ToString("N"));
        var store = await FileBudgetStore.OpenAsync(dir, new FileBudgetStoreOptions { CompactAfterRecords = 1 }, new FileSystem(), _time);
        Directory.Delete(dir, recursive: true);

        var first = async () => await store.TryReserveAsync(Request(1));
        var second = async () => await store.TryReserveAsync(Request(1));

        await first.Should().ThrowAsync<BudgetStoreUnavailableException>();
        (await second.Should().ThrowAsync<BudgetStoreUnavailableException>()).Which.Message.Should().Contain("stopped");
        await store.DisposeAsync();
    }

    [Fact]
    public async Task DisposeAsync_ThenUse_Throws()
    {
        var store = await OpenAsync();
        await store.DisposeAsync();

        var act = async () => await store.TryReserveAsync(Request(1));

        await act.Should().ThrowAsync<ObjectDisposedException>();
    }

    /// <summary>A real child process admits from 16 loops and is killed mid-write; every admission it acknowledged is
    /// counted after the reopen and can still be settled. Child and parent use one fixed instant (passed to the child
    /// as its AT argument), so the day window the parent reads is the one the child wrote whatever the wall clock
    /// does: with the real clock a run across UTC midnight read the new, empty day and failed.</summary>
    [Fact]
    public async Task ChildProcessKilled_EveryAcknowledgedAdmissionSurvives()
    {
        var at = Instant.FromUtc(2100, 1, 1, 12, 0);
        string dir = Path.Combine(Path.GetTempPath(), "kars-crash-" + Guid.NewGuid().ToString("N"));
        string host = Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "Kars.Policy.StoreHost", "bin",
            new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)).Parent!.Name, "net10.0", "Kars.Policy.StoreHost.dll");
        File.Exists(host).Should().BeTrue($"the store host is built next to the tests ({host})");
        var acked = new List<(long Id, long Tokens)>();
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string arg in new[] { host, "file", dir, "16", "3", InstantPattern.ExtendedIso.Format(at) })
        {
            start.ArgumentList.Add(arg);
        }

        try
        {
            using (var child = Process.Start(start)!)
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
                while (acked.Count < 500)
                {
                    string? line = await child.StandardOutput.ReadLineAsync(timeout.Token);
                    if (line is null)
                    {
                        Assert.Fail("the store host exited: " + await child.StandardError.ReadToEndAsync());
                    }

                    string[] parts = line.Split(' ');
                    if (parts[0] == "ack")
                    {
                        acked.Add((long.Parse(parts[1]), long.Parse(parts[2])));
                    }
                }

                child.Kill(entireProcessTree: true);
                await child.WaitForExitAsync();
            }

            await using var store = await FileBudgetStore.OpenAsync(dir, options: null, new FileSystem(), new FakeTimeProvider(at.ToDateTimeOffset()));
            var level = new BudgetLevel("crash", new BudgetLimits(day: long.MaxValue / 4));
            var status = await store.GetStatusAsync(level, at: at);
            var day = status.Windows.Single();
            (day.Used + day.Held).Should().BeGreaterThanOrEqualTo(acked.Sum(a => a.Tokens));
            foreach (var (id, _) in acked.Take(50).Concat(acked.TakeLast(50)))
            {
                (await store.SettleAsync(id, 3, at)).Status.Should().Be(BudgetSettlementStatus.Settled, $"acknowledged lease {id} must survive the crash");
            }
        }
        finally
        {
            if (Directory.Exists(dir))
            {
                Directory.Delete(dir, recursive: true);
            }
        }
    }

    private sealed class CapturingLogger : Microsoft.Extensions.Logging.ILogger, Microsoft.Extensions.Logging.ILoggerFactory
    {
        public List<int> EventIds { get; } = [];

        public Microsoft.Extensions.Logging.ILogger CreateLogger(string categoryName) => this;

        public void AddProvider(Microsoft.Extensions.Logging.ILoggerProvider provider)
        {
        }

        public void Dispose()
        {
        }

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

    private void Damage(string path)
    {
        byte[] bytes = _fs.File.ReadAllBytes(path);
        bytes[bytes.Length / 2] ^= 0x20;
        _fs.File.WriteAllBytes(path, bytes);
    }

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
}
