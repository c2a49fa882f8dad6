using System.Buffers;
using System.Globalization;
using System.IO.Abstractions;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using NodaTime;
using NodaTime.Extensions;

namespace Kars.Policy.Budgets;

/// <summary>
/// A durable <see cref="BudgetStore"/> in a directory: a write-ahead log plus periodic snapshots, through
/// <see cref="IFileSystem"/>. No acknowledged admission or settlement is lost when the process is killed.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item><description>Every state change is appended to <c>budget.wal</c> and flushed to disk
/// (<c>fsync</c>) before the call returns. Concurrent calls share one flush (group commit).</description></item>
/// <item><description>After <see cref="FileBudgetStoreOptions.CompactAfterRecords"/> records, and on every open, the state is written to
/// <c>budget.snapshot</c> (temp file, fsync, rename) and the log restarts; the previous snapshot and the log that followed it are kept
/// as <c>budget.snapshot.bak</c> and <c>budget.wal.bak</c> (the backup generation).</description></item>
/// <item><description>On open, the snapshot and the log are replayed; holds whose lease has expired are charged
/// in full. A torn final log line (a write that was never acknowledged) is dropped. Anything else that does not
/// verify — a bad line in the middle, an unknown version, a log newer than its snapshot — is first retried from
/// the backup generation (previous snapshot + its log + the current log, sequence numbers chaining exactly); if that
/// does not restore it either, the open throws
/// <see cref="BudgetStateCorruptException"/>: the store never resets spend to zero.</description></item>
/// <item><description>Only a directory with no state at all starts a fresh store; it then writes <c>budget.wal</c>, <c>budget.snapshot</c>
/// and the identity file <c>budget.id</c>. The log is replaced atomically and never moved away, so once any state exists
/// (identity file, snapshot or backups) a missing <c>budget.wal</c> means lost records: the open throws
/// <see cref="BudgetStateCorruptException"/> and leaves every file untouched. A missing or damaged snapshot is restored from the backup
/// generation when the sequence numbers chain exactly.</description></item>
/// <item><description>An I/O failure while running throws <see cref="BudgetStoreUnavailableException"/> for
/// that call and every later one (the in-memory state may be ahead of the disk, so the store stops deciding).</description></item>
/// <item><description>One owner per directory: before recovery reads anything, the store takes an exclusive lock on
/// <c>budget.lock</c> (an OS file lock, held until the store is disposed or the process dies) and registers the
/// directory in this process; a second opener, in this or another process, gets <see cref="BudgetStoreInUseException"/>.</description></item>
/// </list>
/// Periods come from the injected <see cref="TimeProvider"/> unless a call passes an explicit instant. Safe for concurrent use.
/// </remarks>
public sealed class FileBudgetStore : BudgetStore, IBudgetLeaseIssuer
{
    /// <summary>The log file name inside the store directory.</summary>
    internal const string LogFileName = "budget.wal";

    /// <summary>The snapshot file name inside the store directory.</summary>
    internal const string SnapshotFileName = "budget.snapshot";

    /// <summary>The identity file inside the store directory, written once when the store is created in an empty directory.</summary>
    internal const string MarkerFileName = "budget.id";

    /// <summary>The lock file inside the store directory: held exclusively by the one store that owns the directory.
    /// It carries no state and is left in place when the store closes.</summary>
    public const string LockFileName = "budget.lock";

    private const string BackupSuffix = ".bak";
    private const string MarkerMagic = "kars-budget-store";

    private const int SharingViolation = unchecked((int)0x80070020);
    private const int LockViolation = unchecked((int)0x80070021);

    /// <summary>The directories open in this process, per file system (the OS lock does not exist on every file system).</summary>
    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<IFileSystem, HashSet<string>> OwnedDirectories = new();

    private readonly Lock _gate = new();
    private BudgetLedger _ledger = new();
    private readonly IFileSystem _fs;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly string _logPath;
    private readonly string _snapshotPath;
    private readonly string _markerPath;
    private readonly SemaphoreSlim _signal = new(0);
    private ArrayBufferWriter<byte> _pending = new(64 * 1024);
    private ArrayBufferWriter<byte> _writing = new(64 * 1024);
    private FlushBatch _batch = new();
    private FileSystemStream? _log;
    private FileSystemStream? _lock;
    private string? _ownedKey;
    private Task? _flusher;
    private Exception? _failure;
    private bool _signaled;
    private bool _disposed;
    private long _seq;
    private long _recordsSinceCompaction;

    private FileBudgetStore(string directory, FileBudgetStoreOptions options, IFileSystem fileSystem, TimeProvider time, ILogger logger)
    {
        Directory = directory;
        CompactAfterRecords = options.CompactAfterRecords;
        _fs = fileSystem;
        _time = time;
        _logger = logger;
        _logPath = fileSystem.Path.Combine(directory, LogFileName);
        _snapshotPath = fileSystem.Path.Combine(directory, SnapshotFileName);
        _markerPath = fileSystem.Path.Combine(directory, MarkerFileName);
    }

    /// <summary>Gets the store directory.</summary>
    public string Directory { get; }

    /// <summary>Gets how many bytes of an incomplete final log record (a write cut short by a crash, never
    /// acknowledged) the open discarded; 0 when the log ended cleanly. Logged as event 3002 too.</summary>
    public long TornBytesDiscarded { get; private set; }

    /// <summary>How many log records trigger a compaction (copied from the options at open).</summary>
    private long CompactAfterRecords { get; }

    /// <summary>Opens the store in <paramref name="directory"/>, replaying its snapshot and log; creates a fresh, empty
    /// store only when the directory holds no state at all (no identity file, log, snapshot or backup).</summary>
    /// <param name="directory">The store directory; created when missing.</param>
    /// <param name="options">The options (validated and copied); the defaults when <see langword="null"/>.</param>
    /// <param name="fileSystem">The file system; the real one when <see langword="null"/>.</param>
    /// <param name="timeProvider">The clock; <see cref="TimeProvider.System"/> when <see langword="null"/>.</param>
    /// <param name="loggerFactory">Where recovery, compaction and failures are logged; nowhere when <see langword="null"/>.</param>
    /// <param name="cancellationToken">Cancels the open.</param>
    /// <returns>The open store.</returns>
    /// <exception cref="ArgumentException"><paramref name="directory"/> is empty, or an option is invalid.</exception>
    /// <exception cref="BudgetStateCorruptException">The persisted state is corrupt, incomplete (for example the log is missing
    /// while a snapshot, backup or identity file exists) or of an unknown version; no file is changed.</exception>
    /// <exception cref="BudgetStoreInUseException">Another store, in this or another process, has the directory open.</exception>
    /// <exception cref="BudgetStoreUnavailableException">The directory cannot be read or written.</exception>
    public static async ValueTask<FileBudgetStore> OpenAsync(string directory, FileBudgetStoreOptions? options = null, IFileSystem? fileSystem = null, TimeProvider? timeProvider = null, ILoggerFactory? loggerFactory = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(directory);
        FileBudgetStoreOptions copy = FileBudgetStoreOptions.Validated(options);
        cancellationToken.ThrowIfCancellationRequested();
        ILogger logger = (ILogger?)loggerFactory?.CreateLogger<FileBudgetStore>() ?? NullLogger.Instance;
        var store = new FileBudgetStore(directory, copy, fileSystem ?? new FileSystem(), timeProvider ?? TimeProvider.System, logger);
        try
        {
            await Task.Run(store.Recover, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            if (store._log is not null)
            {
                await store._log.DisposeAsync().ConfigureAwait(false);
            }

            store.ReleaseOwnership();
            throw new BudgetStoreUnavailableException($"The budget store in '{directory}' cannot be opened: {ex.Message}", ex);
        }
        catch
        {
            if (store._log is not null)
            {
                await store._log.DisposeAsync().ConfigureAwait(false);
            }

            store.ReleaseOwnership();
            throw;
        }

        store._flusher = Task.Run(store.FlushLoopAsync, CancellationToken.None);
        return store;
    }

    /// <inheritdoc/>
    BudgetLease IBudgetLeaseIssuer.Issue(long leaseId, long tokens, Instant expiresAt) => CreateLease(leaseId, tokens, expiresAt);

    /// <inheritdoc/>
    protected override async ValueTask<BudgetDecision> TryReserveCoreAsync(BudgetRequest request, CancellationToken cancellationToken)
    {
        Instant now = request.At ?? _time.GetCurrentInstant();
        BudgetDecision decision;
        FlushBatch batch;
        lock (_gate)
        {
            ThrowIfUnusable();
            decision = _ledger.Reserve(this, request, now);
            if (!decision.IsAdmitted)
            {
                return decision;
            }

            BudgetLease lease = decision.Lease;
            batch = Append(string.Join(
                ' ',
                "R",
                FormatSeq(),
                BudgetFileFormat.Invariant(lease.Id),
                BudgetFileFormat.Invariant(now.ToUnixTimeTicks()),
                BudgetFileFormat.Invariant(lease.ExpiresAt.ToUnixTimeTicks()),
                BudgetFileFormat.Invariant(lease.Tokens),
                BudgetFileFormat.EncodeKey(request.Level.Key),
                BudgetFileFormat.EncodeKey(request.Parent?.Key)));
        }

        // The hold is applied: wait for durability regardless of cancellation, or the caller would drop a live lease.
        await batch.Task.ConfigureAwait(false);
        return decision;
    }

    /// <inheritdoc/>
    protected override ValueTask<BudgetSettlement> SettleCoreAsync(long leaseId, long actualTokens, Instant? at, CancellationToken cancellationToken)
        => CloseAsync(leaseId, actualTokens, at);

    /// <inheritdoc/>
    protected override ValueTask<BudgetSettlement> AbandonCoreAsync(long leaseId, Instant? at, CancellationToken cancellationToken)
        => CloseAsync(leaseId, null, at);

    /// <inheritdoc/>
    protected override ValueTask<BudgetStatus> GetStatusCoreAsync(BudgetLevel level, BudgetLevel? parent, Instant? at, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(level);
        Instant now = at ?? _time.GetCurrentInstant();
        lock (_gate)
        {
            ThrowIfUnusable();
            return new ValueTask<BudgetStatus>(_ledger.Status(level, parent, now));
        }
    }

    /// <inheritdoc/>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2215:Dispose methods should call base class dispose", Justification = "The base DisposeAsyncCore only calls Dispose(true), which here calls back into this method.")]
    protected override async ValueTask DisposeAsyncCore()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            Signal();
        }

        if (_flusher is not null)
        {
            await _flusher.ConfigureAwait(false);
        }

        if (_log is not null)
        {
            await _log.DisposeAsync().ConfigureAwait(false);
        }

        ReleaseOwnership();
        _signal.Dispose();
    }

    /// <inheritdoc/>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2215:Dispose methods should call base class dispose", Justification = "The base Dispose(bool) does nothing; calling it is not needed.")]
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            // Synchronous disposal (DI containers): the flusher runs on the thread pool, so waiting for it here
            // cannot deadlock on a synchronization context.
            DisposeAsyncCore().AsTask().GetAwaiter().GetResult();
        }
    }

    private async ValueTask<BudgetSettlement> CloseAsync(long leaseId, long? actual, Instant? at)
    {
        Instant now = at ?? _time.GetCurrentInstant();
        BudgetSettlement settlement;
        FlushBatch batch;
        lock (_gate)
        {
            ThrowIfUnusable();
            settlement = actual is { } tokens ? _ledger.Settle(leaseId, tokens, now) : _ledger.Abandon(leaseId, now);
            if (settlement.Status != BudgetSettlementStatus.Settled)
            {
                return settlement;
            }

            batch = Append(actual is { } a
                ? string.Join(' ', "S", FormatSeq(), BudgetFileFormat.Invariant(leaseId), BudgetFileFormat.Invariant(a))
                : string.Join(' ', "A", FormatSeq(), BudgetFileFormat.Invariant(leaseId)));
        }

        await batch.Task.ConfigureAwait(false);
        return settlement;
    }

    private string FormatSeq() => BudgetFileFormat.Invariant(++_seq);

    private FlushBatch Append(string payload)
    {
        _pending.Write(BudgetFileFormat.Line(payload));
        _recordsSinceCompaction++;
        Signal();
        return _batch;
    }

    private void Signal()
    {
        if (!_signaled)
        {
            _signaled = true;
            _signal.Release();
        }
    }

    private void ThrowIfUnusable()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_failure is not null)
        {
            throw new BudgetStoreUnavailableException($"The budget store in '{Directory}' stopped after a write failure: {_failure.Message}", _failure);
        }
    }

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Performance", "CA1849:Call async methods when in an async method", Justification = "Flush(flushToDisk: true) is the fsync that makes a record durable; there is no asynchronous equivalent.")]
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1031:Do not catch general exception types", Justification = "A background flusher must not crash the host; every failure is logged and fails the waiting admissions closed.")]
    private async Task FlushLoopAsync()
    {
        bool wait = true;
        while (true)
        {
            if (wait)
            {
                await _signal.WaitAsync().ConfigureAwait(false);
            }

            FlushBatch batch;
            ArrayBufferWriter<byte> data;
            BudgetLedgerImage? image = null;
            long snapshotSeq = 0;
            bool stop;
            lock (_gate)
            {
                _signaled = false;
                stop = _disposed;
                if (_failure is not null)
                {
                    _batch.Fail(_failure, Directory);
                    if (stop)
                    {
                        return;
                    }

                    continue;
                }

                batch = _batch;
                data = _pending;
                _pending = _writing;
                _writing = data;
                _batch = new FlushBatch();
                if (_recordsSinceCompaction >= CompactAfterRecords)
                {
                    // Only a copy of the counter values is taken under the lock; the snapshot text is built after
                    // releasing it, so admissions are not held up by the formatting.
                    _recordsSinceCompaction = 0;
                    snapshotSeq = _seq;
                    image = BudgetLedgerImage.Capture(_ledger, _seq);
                }
            }

            try
            {
                if (data.WrittenCount > 0)
                {
                    _log!.Write(data.WrittenSpan);
                    _log.Flush(flushToDisk: true);
                }

                data.ResetWrittenCount();
                string? snapshot = null;
                if (image is not null)
                {
                    try
                    {
                        snapshot = Snapshot(image);
                    }
                    catch (Exception ex) when (ex is not OutOfMemoryException)
                    {
                        // Not fatal: this batch is still written; the next batch tries to compact again.
                        lock (_gate)
                        {
                            _recordsSinceCompaction = Math.Max(_recordsSinceCompaction, CompactAfterRecords);
                        }
                    }
                }

                if (snapshot is not null)
                {
                    WriteSnapshotAndResetLog(snapshot, snapshotSeq);
                    BudgetLog.Compacted(_logger, Directory, snapshotSeq);
                }

                batch.Complete();
            }
            catch (Exception ex)
            {
                // Any failure to persist stops the store (memory may now be ahead of the disk): fail closed.
                lock (_gate)
                {
                    _failure = ex;
                    _batch.Fail(ex, Directory);
                }

                BudgetLog.WriteFailed(_logger, ex, Directory);

                batch.Fail(ex, Directory);
            }

            if (stop)
            {
                lock (_gate)
                {
                    if (_pending.WrittenCount == 0)
                    {
                        return;
                    }
                }

                wait = false;
            }
        }
    }

    // ----- Recovery -----

    private void Recover()
    {
        _fs.Directory.CreateDirectory(Directory);
        TakeOwnership();
        bool marker = _fs.File.Exists(_markerPath);
        bool log = _fs.File.Exists(_logPath);
        bool snapshot = _fs.File.Exists(_snapshotPath);
        bool backups = _fs.File.Exists(_snapshotPath + BackupSuffix) || _fs.File.Exists(_logPath + BackupSuffix);
        if (!marker && !log && !snapshot && !backups)
        {
            // Only a directory without any state (leftover *.tmp files were never acknowledged) starts a fresh store.
            CreateFresh();
            return;
        }

        if (marker)
        {
            VerifyMarker();
        }

        if (!log)
        {
            // The log is never absent once a store exists (it is replaced atomically, never moved away), so its
            // records since the last snapshot are gone; the backup generation ends before them and cannot prove
            // otherwise. Fail closed instead of silently dropping spend.
            string found = marker ? "the store identity file" : snapshot ? "the snapshot" : "backup files";
            throw new BudgetStateCorruptException(
                $"The budget state in '{Directory}' is corrupt: {LogFileName} is missing although {found} exists, so the records written since the last snapshot cannot be accounted for. Refusing to start rather than reset or lose spend; restore the files, or remove the whole directory deliberately to start from zero.",
                _logPath);
        }

        long replayed;
        try
        {
            replayed = Load(_snapshotPath, [_logPath]);
        }
        catch (BudgetStateCorruptException ex) when (_fs.File.Exists(_snapshotPath + BackupSuffix) && _fs.File.Exists(_logPath + BackupSuffix))
        {
            // The backup generation: the previous snapshot, the log written after it, then the current log.
            // Sequence numbers must chain exactly, so this restores the same state or fails closed.
            _ledger = new BudgetLedger();
            TornBytesDiscarded = 0;
            try
            {
                replayed = Load(_snapshotPath + BackupSuffix, [_logPath + BackupSuffix, _logPath]);
            }
            catch (BudgetStateCorruptException)
            {
                throw ex;
            }

            BudgetLog.RecoveredFromBackup(_logger, ex, Directory);
        }

        Instant now = _time.GetCurrentInstant();
        _ledger.ExpireDue(now);
        WriteSnapshotAndResetLog(Snapshot(BudgetLedgerImage.Capture(_ledger, _seq)), _seq);
        if (!marker)
        {
            // A store created before the identity file existed, or whose creation was interrupted after its log was written.
            WriteMarker();
        }

        BudgetLog.StoreOpened(_logger, Directory, _ledger.Keys.Count, _ledger.OpenLeases.Count, replayed);
    }

    /// <summary>
    /// Makes this store the one owner of the directory before anything is read: registers the directory for this
    /// file system in this process (which also covers file systems without OS locks) and holds an exclusive lock on
    /// <see cref="LockFileName"/> (<see cref="FileShare.None"/>: an advisory <c>flock</c> on Unix, a share lock on
    /// Windows), which the OS releases when the process dies.
    /// </summary>
    private void TakeOwnership()
    {
        string key = _fs.Path.GetFullPath(Directory);
        HashSet<string> owned = OwnedDirectories.GetValue(_fs, _ => new HashSet<string>(StringComparer.Ordinal));
        lock (owned)
        {
            if (!owned.Add(key))
            {
                throw InUse(null);
            }
        }

        _ownedKey = key;
        string path = _fs.Path.Combine(Directory, LockFileName);
        try
        {
            _lock = _fs.FileStream.New(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException ex) when (IsLockConflict(ex))
        {
            throw InUse(ex);
        }
    }

    /// <summary>Whether opening the lock file failed because another handle holds it: a sharing or lock violation on
    /// Windows; on Unix .NET reports the <c>flock</c> conflict with the raw <c>EWOULDBLOCK</c> errno (11 on Linux, 35 on macOS/BSD).</summary>
    private static bool IsLockConflict(IOException ex)
        => ex.HResult is SharingViolation or LockViolation
            || (!OperatingSystem.IsWindows() && ex.HResult == (OperatingSystem.IsLinux() ? 11 : 35));

    private void ReleaseOwnership()
    {
        _lock?.Dispose();
        _lock = null;
        if (_ownedKey is { } key && OwnedDirectories.TryGetValue(_fs, out HashSet<string>? owned))
        {
            lock (owned)
            {
                owned.Remove(key);
            }
        }

        _ownedKey = null;
    }

    private BudgetStoreInUseException InUse(Exception? inner)
        => new($"The budget store in '{Directory}' is already open in this or another process (it holds {LockFileName}); one store owns a directory at a time.{(inner is null ? string.Empty : " " + inner.Message)}", Directory, inner);

    private void CreateFresh()
    {
        // Order matters for a crash in between: the log first (a log from sequence 0 without a snapshot is a
        // complete history), then the snapshot, then the identity file that marks the store as created.
        string logTemp = _logPath + ".tmp";
        WriteDurably(logTemp, BudgetFileFormat.Line(string.Join(' ', BudgetFileFormat.LogMagic, BudgetFileFormat.Version.ToString(CultureInfo.InvariantCulture), "0")));
        _fs.File.Move(logTemp, _logPath, overwrite: true);
        WriteSnapshotAndResetLog(Snapshot(BudgetLedgerImage.Capture(_ledger, _seq)), 0);
        WriteMarker();
        BudgetLog.StoreOpened(_logger, Directory, 0, 0, 0);
    }

    private void WriteMarker()
    {
        string temp = _markerPath + ".tmp";
        WriteDurably(temp, BudgetFileFormat.Line(string.Join(' ', MarkerMagic, BudgetFileFormat.Version.ToString(CultureInfo.InvariantCulture), Guid.NewGuid().ToString("N"))));
        _fs.File.Move(temp, _markerPath, overwrite: true);
    }

    private void VerifyMarker()
    {
        var lines = new List<(int Number, string Payload)>();
        BudgetFileFormat.Split(ReadStoreFile(_markerPath), lines, out long torn, out int bad);
        string[] f = lines.Count == 1 ? lines[0].Payload.Split(' ') : [];
        if (bad != 0 || torn >= 0 || f.Length != 3 || f[0] != MarkerMagic || !Guid.TryParseExact(f[2], "N", out _))
        {
            throw new BudgetStateCorruptException($"The budget state in '{Directory}' is corrupt: {MarkerFileName} does not verify. Refusing to start; restore it or remove the whole directory deliberately.", _markerPath);
        }

        if (f[1] != BudgetFileFormat.Version.ToString(CultureInfo.InvariantCulture))
        {
            throw new BudgetStateCorruptException($"The budget state in '{Directory}' is of unknown version '{f[1]}' (this library reads version {BudgetFileFormat.Version}).", _markerPath);
        }
    }

    private long Load(string snapshotPath, string[] logPaths)
    {
        long snapshotSeq = 0;
        bool haveSnapshot = _fs.File.Exists(snapshotPath);
        if (haveSnapshot)
        {
            snapshotSeq = LoadSnapshot(snapshotPath);
        }

        _seq = snapshotSeq;
        foreach (string logPath in logPaths)
        {
            if (_fs.File.Exists(logPath))
            {
                ReplayLog(logPath, _seq, haveSnapshot || _seq > 0);
            }
        }

        return _seq - snapshotSeq;
    }

    private long LoadSnapshot(string path)
    {
        var lines = new List<(int Number, string Payload)>();
        BudgetFileFormat.Split(ReadStoreFile(path), lines, out long torn, out int bad);
        if (bad != 0 || torn >= 0)
        {
            throw Corrupt(path, $"line {(bad != 0 ? bad : lines.Count + 1)} does not verify (the snapshot is written atomically, so this is damage, not a torn write)");
        }

        if (lines.Count == 0)
        {
            throw Corrupt(path, "the snapshot is empty");
        }

        string[] header = lines[0].Payload.Split(' ');
        if (header.Length != 4 || header[0] != BudgetFileFormat.SnapshotMagic)
        {
            throw Corrupt(path, "line 1 is not a snapshot header");
        }

        if (header[1] != BudgetFileFormat.Version.ToString(CultureInfo.InvariantCulture))
        {
            throw Corrupt(path, $"unknown snapshot version '{header[1]}' (this library reads version {BudgetFileFormat.Version})");
        }

        long seq = ParseLong(header[2], path, 1);
        _ledger.RestoreNextLeaseId(ParseLong(header[3], path, 1));
        bool ended = false;
        for (int i = 1; i < lines.Count; i++)
        {
            (int number, string payload) = lines[i];
            if (ended)
            {
                throw Corrupt(path, $"line {number} follows the end marker");
            }

            string[] f = payload.Split(' ');
            try
            {
                switch (f[0])
                {
                    case "P" when f.Length == 7:
                        _ledger.RestoreCounter(
                            BudgetFileFormat.DecodeKey(f[6]) ?? throw new FormatException("missing key"),
                            ParseWindow(f[1]),
                            Instant.FromUnixTimeTicks(ParseLong(f[2], path, number)),
                            Instant.FromUnixTimeTicks(ParseLong(f[3], path, number)),
                            ParseLong(f[4], path, number),
                            ParseLong(f[5], path, number));
                        break;
                    case "L" when f.Length == 7:
                        _ledger.RestoreHold(
                            ParseLong(f[1], path, number),
                            Instant.FromUnixTimeTicks(ParseLong(f[2], path, number)),
                            Instant.FromUnixTimeTicks(ParseLong(f[3], path, number)),
                            ParseLong(f[4], path, number),
                            BudgetFileFormat.DecodeKey(f[5]) ?? throw new FormatException("missing key"),
                            BudgetFileFormat.DecodeKey(f[6]),
                            addToCounters: false);
                        break;
                    case "C" when f.Length == 4:
                        _ledger.RestoreClosed(new BudgetClosedLease
                        {
                            Id = ParseLong(f[1], path, number),
                            Status = ParseClosedStatus(f[2]),
                            Charged = ParseLong(f[3], path, number),
                        });
                        break;
                    case "F" when f.Length == 3:
                        _ledger.RestoreForgotten(
                            BudgetFileFormat.DecodeKey(f[2]) ?? throw new FormatException("missing key"),
                            Instant.FromUnixTimeTicks(ParseLong(f[1], path, number)));
                        break;
                    case "E" when f.Length == 2:
                        if (ParseLong(f[1], path, number) != lines.Count - 2)
                        {
                            throw Corrupt(path, $"line {number}: the end marker counts {f[1]} records, the file has {lines.Count - 2}");
                        }

                        ended = true;
                        break;
                    default:
                        throw Corrupt(path, $"line {number}: unknown record '{f[0]}'");
                }
            }
            catch (Exception ex) when (ex is FormatException or ArgumentException or OverflowException)
            {
                throw Corrupt(path, $"line {number}: {ex.Message}", ex);
            }
        }

        if (!ended)
        {
            throw Corrupt(path, "the end marker is missing");
        }

        return seq;
    }

    private void ReplayLog(string path, long snapshotSeq, bool haveSnapshot)
    {
        var lines = new List<(int Number, string Payload)>();
        byte[] content = ReadStoreFile(path);
        BudgetFileFormat.Split(content, lines, out long torn, out int bad);
        if (bad != 0)
        {
            throw Corrupt(path, $"line {bad} is complete but does not verify (its checksum or text is damaged; a torn write only ever leaves an incomplete last line)");
        }

        if (lines.Count == 0)
        {
            throw Corrupt(path, "the log has no header");
        }

        string[] header = lines[0].Payload.Split(' ');
        if (header.Length != 3 || header[0] != BudgetFileFormat.LogMagic)
        {
            throw Corrupt(path, "line 1 is not a log header");
        }

        if (header[1] != BudgetFileFormat.Version.ToString(CultureInfo.InvariantCulture))
        {
            throw Corrupt(path, $"unknown log version '{header[1]}' (this library reads version {BudgetFileFormat.Version})");
        }

        long baseSeq = ParseLong(header[2], path, 1);
        if (baseSeq > snapshotSeq)
        {
            throw Corrupt(path, haveSnapshot
                ? $"the log continues sequence {baseSeq} but the snapshot ends at {snapshotSeq}: the snapshot is older than the log"
                : $"the log continues sequence {baseSeq} but the snapshot is missing");
        }

        long expected = baseSeq + 1;
        for (int i = 1; i < lines.Count; i++)
        {
            (int number, string payload) = lines[i];
            string[] f = payload.Split(' ');
            try
            {
                long seq = ParseLong(f.Length > 1 ? f[1] : string.Empty, path, number);
                if (seq != expected)
                {
                    throw Corrupt(path, $"line {number}: sequence {seq} where {expected} was expected");
                }

                expected++;
                if (seq <= snapshotSeq)
                {
                    continue;
                }

                switch (f[0])
                {
                    case "R" when f.Length == 8:
                        _ledger.RestoreHold(
                            ParseLong(f[2], path, number),
                            Instant.FromUnixTimeTicks(ParseLong(f[3], path, number)),
                            Instant.FromUnixTimeTicks(ParseLong(f[4], path, number)),
                            ParseLong(f[5], path, number),
                            BudgetFileFormat.DecodeKey(f[6]) ?? throw new FormatException("missing key"),
                            BudgetFileFormat.DecodeKey(f[7]),
                            addToCounters: true);
                        break;
                    case "S" when f.Length == 4:
                        _ledger.RestoreSettle(ParseLong(f[2], path, number), ParseLong(f[3], path, number));
                        break;
                    case "A" when f.Length == 3:
                        _ledger.RestoreSettle(ParseLong(f[2], path, number), null);
                        break;
                    default:
                        throw Corrupt(path, $"line {number}: unknown record '{f[0]}'");
                }

                _seq = seq;
            }
            catch (Exception ex) when (ex is FormatException or ArgumentException or OverflowException)
            {
                throw Corrupt(path, $"line {number}: {ex.Message}", ex);
            }
        }

        if (expected - 1 < snapshotSeq)
        {
            // The snapshot was taken after these records were flushed, so the log holds at least up to its sequence.
            throw Corrupt(path, $"the log ends at sequence {expected - 1} but the snapshot already counts up to {snapshotSeq}: records are missing from the log");
        }

        if (torn >= 0)
        {
            // Never acknowledged (the fsync did not complete); the log is rewritten without it on open.
            TornBytesDiscarded += content.Length - torn;
            BudgetLog.TornTail(_logger, path, torn, content.Length - torn);
        }
    }

    /// <summary>Formats a snapshot from an image of the ledger (taken under the lock; formatted outside it).</summary>
    private static string Snapshot(BudgetLedgerImage image)
    {
        var builder = new StringBuilder();
        BudgetFileFormat.AppendLine(builder, string.Join(' ', BudgetFileFormat.SnapshotMagic, BudgetFileFormat.Version.ToString(CultureInfo.InvariantCulture), BudgetFileFormat.Invariant(image.Sequence), BudgetFileFormat.Invariant(image.NextLeaseId)));
        long count = 0;
        foreach (BudgetLedgerImage.Counter c in image.Counters)
        {
            BudgetFileFormat.AppendLine(builder, string.Join(
                ' ',
                "P",
                ((int)c.Window).ToString(CultureInfo.InvariantCulture),
                BudgetFileFormat.Invariant(c.Start.ToUnixTimeTicks()),
                BudgetFileFormat.Invariant(c.End.ToUnixTimeTicks()),
                BudgetFileFormat.Invariant(c.Used),
                BudgetFileFormat.Invariant(c.Held),
                BudgetFileFormat.EncodeKey(c.Key)));
            count++;
        }

        foreach (BudgetLedgerImage.Forgotten f in image.ForgottenKeys)
        {
            BudgetFileFormat.AppendLine(builder, string.Join(' ', "F", BudgetFileFormat.Invariant(f.Before.ToUnixTimeTicks()), BudgetFileFormat.EncodeKey(f.Key)));
            count++;
        }

        foreach (BudgetLedgerImage.Lease lease in image.OpenLeases)
        {
            BudgetFileFormat.AppendLine(builder, string.Join(
                ' ',
                "L",
                BudgetFileFormat.Invariant(lease.Id),
                BudgetFileFormat.Invariant(lease.At.ToUnixTimeTicks()),
                BudgetFileFormat.Invariant(lease.ExpiresAt.ToUnixTimeTicks()),
                BudgetFileFormat.Invariant(lease.Tokens),
                BudgetFileFormat.EncodeKey(lease.Key),
                BudgetFileFormat.EncodeKey(lease.Parent)));
            count++;
        }

        foreach (BudgetClosedLease closed in image.ClosedLeases)
        {
            if (closed.Id > 0)
            {
                BudgetFileFormat.AppendLine(builder, string.Join(' ', "C", BudgetFileFormat.Invariant(closed.Id), ((int)closed.Status).ToString(CultureInfo.InvariantCulture), BudgetFileFormat.Invariant(closed.Charged)));
                count++;
            }
        }

        BudgetFileFormat.AppendLine(builder, "E " + BudgetFileFormat.Invariant(count));
        return builder.ToString();
    }

    private void WriteSnapshotAndResetLog(string snapshot, long seq)
    {
        string snapshotTemp = _snapshotPath + ".tmp";
        WriteDurably(snapshotTemp, Encoding.UTF8.GetBytes(snapshot));
        if (_fs.File.Exists(_snapshotPath))
        {
            _fs.File.Copy(_snapshotPath, _snapshotPath + BackupSuffix, overwrite: true);
        }

        _fs.File.Move(snapshotTemp, _snapshotPath, overwrite: true);

        string logTemp = _logPath + ".tmp";
        WriteDurably(logTemp, BudgetFileFormat.Line(string.Join(' ', BudgetFileFormat.LogMagic, BudgetFileFormat.Version.ToString(CultureInfo.InvariantCulture), BudgetFileFormat.Invariant(seq))));
        _log?.Dispose();
        _log = null;
        if (_fs.File.Exists(_logPath))
        {
            // Keep the log that led from the previous snapshot (now budget.snapshot.bak) to this one. Copied, not
            // moved: the log is never absent, so a missing log always means lost records (see Recover).
            _fs.File.Copy(_logPath, _logPath + BackupSuffix, overwrite: true);
        }

        _fs.File.Move(logTemp, _logPath, overwrite: true);
        _log = _fs.FileStream.New(_logPath, FileMode.Append, FileAccess.Write, FileShare.Read);
    }

    /// <summary>
    /// Reads a whole store file, which must be a regular file. Opened for reading and writing: on Linux that open does
    /// not wait for a writer when the path is a FIFO (a read-only open would block forever), and a FIFO, socket or
    /// terminal is then refused because it cannot seek. Exactly <c>Length</c> bytes are read, so a device that
    /// reports length 0 (such as <c>/dev/zero</c>) reads as empty instead of without end.
    /// </summary>
    private byte[] ReadStoreFile(string path)
    {
        using FileSystemStream stream = _fs.FileStream.New(path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
        if (!stream.CanSeek)
        {
            throw new BudgetStateCorruptException($"The budget state in '{Directory}' is not usable: '{path}' is not a regular file (a FIFO, socket or device). Refusing to start; store files must be regular files.", path);
        }

        long length = stream.Length;
        if (length > int.MaxValue - 64)
        {
            throw new BudgetStateCorruptException($"The budget state in '{Directory}' is not usable: '{path}' is larger than 2 GiB.", path);
        }

        byte[] bytes = new byte[length];
        stream.ReadExactly(bytes);
        return bytes;
    }

    private void WriteDurably(string path, byte[] bytes)
    {
        using FileSystemStream stream = _fs.FileStream.New(path, FileMode.Create, FileAccess.Write, FileShare.None);
        stream.Write(bytes);
        stream.Flush(flushToDisk: true);
    }

    private static long ParseLong(string text, string path, int line)
        => long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long value)
            ? value
            : throw Corrupt(path, $"line {line}: '{text}' is not a number");

    private static BudgetSettlementStatus ParseClosedStatus(string text)
        => text switch
        {
            "1" => BudgetSettlementStatus.Settled,
            "3" => BudgetSettlementStatus.Expired,
            _ => throw new FormatException($"unknown closed-lease status '{text}'"),
        };

    private static BudgetWindow ParseWindow(string text)
        => int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int w) && w is >= 0 and < BudgetPeriods.WindowCount
            ? (BudgetWindow)w
            : throw new FormatException($"unknown window '{text}'");

    private static BudgetStateCorruptException Corrupt(string path, string detail, Exception? inner = null)
        => new($"The budget state in '{path}' is corrupt: {detail}. Refusing to start rather than reset spend; the backup generation (budget.snapshot.bak + budget.wal.bak) did not restore it either; repair or remove the state deliberately.", path, inner);

    private sealed class FlushBatch
    {
        private readonly TaskCompletionSource _tcs = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task Task => _tcs.Task;

        public void Complete() => _tcs.TrySetResult();

        public void Fail(Exception ex, string directory)
            => _tcs.TrySetException(new BudgetStoreUnavailableException($"The budget store in '{directory}' could not write its log: {ex.Message}", ex));
    }
}
