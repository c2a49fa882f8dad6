using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using Kars.Policy.Budgets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using NodaTime;
using StackExchange.Redis;

namespace Kars.Policy.Redis;

/// <summary>
/// A <see cref="BudgetStore"/> in Redis, shared by every replica of a router: one atomic Lua round trip
/// (<c>EVALSHA</c>) per admission covering every limited window of the key and its parent, and one per settlement.
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item><description>Windows are UTC calendar periods computed inside the script from the Redis server clock
/// (<c>TIME</c>), so replicas with skewed clocks agree on the period; an explicit instant in the request (replay,
/// tests) replaces the server clock for that call.</description></item>
/// <item><description>Admitted iff <c>used + held + tokens ≤ limit</c> in every limited window at every level; a
/// rejection writes nothing. Counter keys expire after their window end plus
/// <see cref="RedisBudgetStoreOptions.CounterExpiryMargin"/>, set with a positive relative TTL.</description></item>
/// <item><description>Leases expire after the request's lease duration; an expired lease is charged its full hold
/// by the next admission or status read of any of its keys, or by a late settlement.</description></item>
/// <item><description>When Redis is unreachable or slow: <see cref="BudgetStoreUnavailableException"/>
/// (<see cref="RedisBudgetFailureMode.Closed"/>, the default), or an admission without a hold
/// (<see cref="RedisBudgetFailureMode.Open"/>). Settlement and status always throw. A script or data error (a
/// wrong-type key, an undecodable lease) throws <see cref="BudgetStateCorruptException"/> in both modes.</description></item>
/// <item><description>Lease ids are chosen by the client, so an admission whose caller was told it failed (time-out,
/// lost connection, cancellation after sending) is released in the background with charge 0.</description></item>
/// </list>
/// <para>Safe for concurrent use. Key layout, failure modes and clock skew: <c>docs/redis.md</c>.</para>
/// </remarks>
public sealed partial class RedisBudgetStore : BudgetStore
{
    private const long FailOpenLeaseFlag = 1L << 62;
    private const int SweepLimit = 32;
    private static readonly RedisValue[] WindowCodes = ["H", "D", "W", "M", "Y"];
    private static readonly RedisValue Empty = RedisValue.EmptyString;
    private static readonly RedisValue One = "1";
    private static readonly RedisValue Zero = "0";
    private const int MaxPendingReleases = 1024;
    private static readonly TimeSpan MaxReleaseDelay = TimeSpan.FromSeconds(5);

    /// <summary>Server errors that mean "not now" (loading, busy, failover, out of memory), not "never".</summary>
    private static readonly string[] TransientErrorPrefixes =
        ["LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "READONLY", "NOREPLICAS", "MISCONF", "OOM"];

    private readonly RedisValue _prefix;
    private readonly RedisBudgetFailureMode _failureMode;
    private readonly TimeSpan _operationTimeout;
    private readonly RedisValue _margin;
    private readonly RedisValue _tombstoneTtl;
    private readonly RedisValue _sweepLimit = SweepLimit.ToString(CultureInfo.InvariantCulture);
    private readonly ILogger _logger;
    private readonly TimeProvider _timeProvider;
    private readonly Func<Task<IConnectionMultiplexer>> _connect;
    private readonly Lock _connectLock = new();
    private Task<IConnectionMultiplexer>? _connection;
    private readonly bool _ownsConnection;
    private long _failOpenSequence;
    private int _pendingReleases;
    private int _disposed;

    /// <summary>Initializes a store. Without <paramref name="connection"/> it creates (and owns) a connection from
    /// <see cref="RedisBudgetStoreOptions.Configuration"/> on first use; with one, it uses it and never disposes it.</summary>
    /// <param name="options">The options; validated and copied.</param>
    /// <param name="connection">An existing connection, or <see langword="null"/> to create one.</param>
    /// <param name="timeProvider">The clock used only where Redis cannot supply one (the expiry and instant of a
    /// fail-open admission, release back-off); windows and lease expiries always come from the Redis server clock
    /// or the request's explicit instant. <see cref="TimeProvider.System"/> when <see langword="null"/>.</param>
    /// <param name="loggerFactory">The logger factory, or <see langword="null"/> for no logging.</param>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option is invalid (the message names it).</exception>
    public RedisBudgetStore(RedisBudgetStoreOptions options, IConnectionMultiplexer? connection = null, TimeProvider? timeProvider = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        if (string.IsNullOrEmpty(options.KeyPrefix))
        {
            throw new ArgumentException("RedisBudgetStoreOptions.KeyPrefix must not be empty.", nameof(options));
        }

        if (options.FailureMode is not (RedisBudgetFailureMode.Closed or RedisBudgetFailureMode.Open))
        {
            throw new ArgumentException($"RedisBudgetStoreOptions.FailureMode {options.FailureMode} is not defined.", nameof(options));
        }

        RequirePositive(options.OperationTimeout, nameof(options.OperationTimeout));
        RequirePositive(options.ConnectTimeout, nameof(options.ConnectTimeout));
        RequirePositive(options.CounterExpiryMargin, nameof(options.CounterExpiryMargin));
        RequirePositive(options.SettledLeaseRetention, nameof(options.SettledLeaseRetention));

        _prefix = options.KeyPrefix;
        _failureMode = options.FailureMode;
        _operationTimeout = options.OperationTimeout;
        _margin = Seconds(options.CounterExpiryMargin);
        _tombstoneTtl = Seconds(options.SettledLeaseRetention);
        _logger = (ILogger?)loggerFactory?.CreateLogger<RedisBudgetStore>() ?? NullLogger.Instance;
        _timeProvider = timeProvider ?? TimeProvider.System;

        if (connection is not null)
        {
            _connection = Task.FromResult(connection);
            _connect = () => Task.FromResult(connection);
            return;
        }

        if (string.IsNullOrWhiteSpace(options.Configuration))
        {
            throw new ArgumentException("RedisBudgetStoreOptions.Configuration is required when no connection is given.", nameof(options));
        }

        ConfigurationOptions config;
        try
        {
            config = ConfigurationOptions.Parse(options.Configuration);
        }
        catch (ArgumentException ex)
        {
            throw new ArgumentException($"RedisBudgetStoreOptions.Configuration is invalid: {ex.Message}", nameof(options), ex);
        }

        config.AbortOnConnectFail = false;

        // While disconnected, fail at once instead of queueing admissions until they time out.
        config.BacklogPolicy = BacklogPolicy.FailFast;
        config.ConnectTimeout = Milliseconds(options.ConnectTimeout);
        config.AsyncTimeout = Milliseconds(options.OperationTimeout);
        config.SyncTimeout = Milliseconds(options.OperationTimeout);
        _ownsConnection = true;
        _connect = async () => await ConnectionMultiplexer.ConnectAsync(config).ConfigureAwait(false);
    }

    /// <inheritdoc/>
    protected override async ValueTask<BudgetDecision> TryReserveCoreAsync(BudgetRequest request, CancellationToken cancellationToken)
    {
        BudgetLevel level = request.Level;
        BudgetLevel? parent = request.Parent;
        BudgetWindowValues windows = Union(level, parent);
        int windowCount = windows.Count;
        int levels = parent is null ? 1 : 2;

        var keys = new RedisKey[1 + (2 * levels)];
        keys[1] = CounterKey(level.Key);
        keys[2] = ExpiryKey(level.Key);
        if (parent is not null)
        {
            keys[3] = CounterKey(parent.Key);
            keys[4] = ExpiryKey(parent.Key);
        }

        var args = new RedisValue[11 + (levels * (1 + (2 * windowCount)))];
        args[0] = _prefix;
        (args[1], args[2]) = Clock(request.At);
        args[3] = request.Tokens;
        args[4] = (long)Math.Ceiling(request.LeaseDuration.TotalMilliseconds);
        args[5] = request.Mode == BudgetMode.Observe ? One : Zero;
        args[6] = _margin;
        args[7] = _tombstoneTtl;
        args[8] = _sweepLimit;
        args[9] = levels;
        int i = 11;
        i = AddLevel(args, i, level, windows);
        if (parent is not null)
        {
            AddLevel(args, i, parent, windows);
        }

        for (int attempt = 0; ; attempt++)
        {
            long leaseId = NewLeaseId();
            keys[0] = LeaseKey(leaseId);
            args[10] = leaseId;
            var sent = new StrongBox<bool>();
            RedisResult[] r;
            try
            {
                r = (RedisResult[])(await EvaluateAsync(RedisBudgetScripts.AdmitSha, RedisBudgetScripts.Admit, keys, args, "admission", sent, cancellationToken).ConfigureAwait(false))!;
            }
            catch (BudgetStoreUnavailableException ex)
            {
                // The script may have run (or may still run) although this caller is told it failed: release the
                // lease it would have created so that its hold is never charged.
                if (sent.Value)
                {
                    StartRelease(leaseId, request.LeaseDuration);
                }

                if (_failureMode == RedisBudgetFailureMode.Open && IsTransient(ex.InnerException))
                {
                    return FailOpen(request, windows, ex);
                }

                throw;
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                // A cancelled call admits nothing.
                if (sent.Value)
                {
                    StartRelease(leaseId, request.LeaseDuration);
                }

                throw;
            }

            int status = (int)r[0];
            if (status == 3)
            {
                // The id is taken (a random collision): nothing was written; try another id.
                if (attempt < 3)
                {
                    continue;
                }

                throw new BudgetStateCorruptException($"The Redis budget store found lease keys taken for {attempt + 1} random lease ids under prefix '{_prefix}'.", (string?)_prefix);
            }

            long retrySeconds = (long)r[3];
            long expiresMs = (long)r[4];
            Instant now = request.At ?? FromClock((long)r[1], (long)r[2]);

            // The script returns held tokens including this request when it admitted it; blocking is judged before.
            long admittedHold = status == 0 ? 0 : request.Tokens;
            var shape = Shape(r, 6, windows, level, parent, request.Tokens, admittedHold);
            BudgetWindow? blocking = shape.Blocking;
            if (status == 0)
            {
                // -1: the tokens exceed a limit outright (or the hold could not be represented); no rollover makes room.
                TimeSpan? retryAfter = retrySeconds < 0 ? null : TimeSpan.FromSeconds(Math.Max(1, retrySeconds));
                return new BudgetDecision(BudgetReason.BudgetExceeded, request.Tokens, default, retryAfter, now, shape.Limits, shape.Remaining, blocking);
            }

            Instant expiresAt = request.At is { } at
                ? at + Duration.FromTimeSpan(request.LeaseDuration)
                : Instant.FromUnixTimeMilliseconds(expiresMs);
            BudgetLease lease = CreateLease(leaseId, request.Tokens, expiresAt);
            return new BudgetDecision(status == 2 ? BudgetReason.Observed : BudgetReason.Admitted, request.Tokens, lease, null, now, shape.Limits, shape.Remaining, blocking);
        }
    }

    /// <inheritdoc/>
    protected override ValueTask<BudgetSettlement> SettleCoreAsync(long leaseId, long actualTokens, Instant? at, CancellationToken cancellationToken)
        => FinishAsync(leaseId, actualTokens, at, cancellationToken);

    /// <inheritdoc/>
    protected override ValueTask<BudgetSettlement> AbandonCoreAsync(long leaseId, Instant? at, CancellationToken cancellationToken)
        => FinishAsync(leaseId, actualTokens: null, at, cancellationToken);

    /// <inheritdoc/>
    protected override async ValueTask<BudgetStatus> GetStatusCoreAsync(BudgetLevel level, BudgetLevel? parent, Instant? at, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(level);
        BudgetWindowValues windows = Union(level, parent);
        int windowCount = windows.Count;
        int levels = parent is null ? 1 : 2;
        var keys = new RedisKey[2 * levels];
        keys[0] = CounterKey(level.Key);
        keys[1] = ExpiryKey(level.Key);
        if (parent is not null)
        {
            keys[2] = CounterKey(parent.Key);
            keys[3] = ExpiryKey(parent.Key);
        }

        var args = new RedisValue[6 + (levels * (1 + windowCount))];
        args[0] = _prefix;
        (args[1], args[2]) = Clock(at);
        args[3] = _tombstoneTtl;
        args[4] = _sweepLimit;
        args[5] = levels;
        int i = 6;
        i = AddLevelCodes(args, i, windows);
        if (parent is not null)
        {
            AddLevelCodes(args, i, windows);
        }

        var r = (RedisResult[])(await EvaluateAsync(RedisBudgetScripts.StatusSha, RedisBudgetScripts.Status, keys, args, "status", sent: null, cancellationToken).ConfigureAwait(false))!;
        Instant now = at ?? FromClock((long)r[0], (long)r[1]);
        var result = new List<BudgetWindowStatus>(windowCount);
        int k = 0;
        for (var w = BudgetWindow.Hour; w <= BudgetWindow.Year; w++)
        {
            if (!windows.Contains(w))
            {
                continue;
            }

            int own = 2 + (4 * k);
            long used = (long)r[own];
            long held = (long)r[own + 1];
            long remaining = long.MaxValue;
            if (level.Limits.TryGetLimit(w, out long limit))
            {
                remaining = Room(limit, used, held);
            }

            if (parent is not null && parent.Limits.TryGetLimit(w, out long parentLimit))
            {
                int p = 2 + (4 * (windowCount + k));
                remaining = Math.Min(remaining, Room(parentLimit, (long)r[p], (long)r[p + 1]));
            }

            result.Add(new BudgetWindowStatus(
                w,
                Instant.FromUnixTimeSeconds((long)r[own + 2]),
                Instant.FromUnixTimeSeconds((long)r[own + 3]),
                level.Limits[w],
                used,
                held,
                remaining));
            k++;
        }

        return new BudgetStatus(level.Key, now, result);
    }

    /// <inheritdoc/>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2215:Dispose methods should call base class dispose", Justification = "The base DisposeAsyncCore only calls Dispose(true), which here calls back into this method.")]
    protected override async ValueTask DisposeAsyncCore()
    {
        Task<IConnectionMultiplexer>? pending;
        lock (_connectLock)
        {
            pending = _connection;
        }

        if (Interlocked.Exchange(ref _disposed, 1) != 0 || !_ownsConnection || pending is null || pending.IsFaulted || pending.IsCanceled)
        {
            return;
        }

        try
        {
            IConnectionMultiplexer connection = await pending.ConfigureAwait(false);
            await connection.DisposeAsync().ConfigureAwait(false);
        }
        catch (RedisException)
        {
            // Nothing to release: the connection never came up.
        }
    }

    /// <inheritdoc/>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2215:Dispose methods should call base class dispose", Justification = "The base Dispose(bool) does nothing; calling it is not needed.")]
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            // Synchronous disposal (DI containers). Only an owned, connected multiplexer has anything to release.
            DisposeAsyncCore().AsTask().GetAwaiter().GetResult();
        }
    }

    private async ValueTask<BudgetSettlement> FinishAsync(long leaseId, long? actualTokens, Instant? at, CancellationToken cancellationToken, bool release = false)
    {
        if ((leaseId & FailOpenLeaseFlag) != 0)
        {
            Log.FailOpenLeaseFinished(_logger, leaseId);
            return new BudgetSettlement(BudgetSettlementStatus.Settled, 0);
        }

        var args = new RedisValue[7];
        args[0] = _prefix;
        (args[1], args[2]) = Clock(at);
        args[3] = leaseId;
        args[4] = actualTokens is { } actual ? actual : Empty;
        args[5] = _tombstoneTtl;
        args[6] = release ? One : Zero;
        RedisKey[] keys = [LeaseKey(leaseId)];
        var r = (RedisResult[])(await EvaluateAsync(RedisBudgetScripts.SettleSha, RedisBudgetScripts.Settle, keys, args, release ? "release" : "settlement", sent: null, cancellationToken).ConfigureAwait(false))!;
        var status = (BudgetSettlementStatus)(int)r[0];
        return new BudgetSettlement(status, (long)r[1]);
    }

    private BudgetDecision FailOpen(BudgetRequest request, BudgetWindowValues windows, BudgetStoreUnavailableException ex)
    {
        Log.FailedOpen(_logger, request.Tokens, ex.InnerException?.GetType().Name ?? ex.GetType().Name);
        long id = FailOpenLeaseFlag | Interlocked.Increment(ref _failOpenSequence);
        var remaining = default(BudgetWindowValues);
        var limits = default(BudgetWindowValues);
        for (var w = BudgetWindow.Hour; w <= BudgetWindow.Year; w++)
        {
            if (windows.Contains(w))
            {
                // Unknown: report the smallest limit so headers never promise more than the budget.
                long limit = long.MaxValue;
                if (request.Level.Limits.TryGetLimit(w, out long own))
                {
                    limit = own;
                }

                if (request.Parent is not null && request.Parent.Limits.TryGetLimit(w, out long parentLimit))
                {
                    limit = Math.Min(limit, parentLimit);
                }

                remaining = remaining.With(w, limit);
                limits = limits.With(w, limit);
            }
        }

        Instant now = request.At ?? Instant.FromDateTimeOffset(_timeProvider.GetUtcNow());
        Instant expires = now + Duration.FromTimeSpan(request.LeaseDuration);
        return new BudgetDecision(BudgetReason.Admitted, request.Tokens, CreateLease(id, request.Tokens, expires), null, now, limits, remaining, blockingWindow: null, isUnmetered: true);
    }

    /// <summary>Runs a script. Throws <see cref="BudgetStoreUnavailableException"/> when Redis cannot be reached, does
    /// not answer in time or reports a transient or configuration error, and <see cref="BudgetStateCorruptException"/>
    /// when the script fails on the stored data (a wrong-type key, an undecodable lease).</summary>
    /// <param name="sent">Set when the command may have reached the server (so its effects may exist).</param>
    private async Task<RedisResult> EvaluateAsync(byte[] sha, string script, RedisKey[] keys, RedisValue[] args, string operation, StrongBox<bool>? sent, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        try
        {
            IConnectionMultiplexer connection = await ConnectionAsync().WaitAsync(_operationTimeout, cancellationToken).ConfigureAwait(false);
            IDatabase db = connection.GetDatabase();
            try
            {
                sent?.Value = true;
                return await db.ScriptEvaluateAsync(sha, keys, args).WaitAsync(_operationTimeout, cancellationToken).ConfigureAwait(false);
            }
            catch (RedisServerException ex) when (ex.Message.StartsWith("NOSCRIPT", StringComparison.Ordinal))
            {
                // The server lost its script cache (restart, failover, SCRIPT FLUSH): EVAL loads it again.
                Log.ScriptReloaded(_logger, operation);
                return await db.ScriptEvaluateAsync(script, keys, args).WaitAsync(_operationTimeout, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (RedisServerException ex) when (!IsTransient(ex) && IsDataError(ex))
        {
            string code = ErrorCode(ex);
            Log.ScriptFailed(_logger, operation, code);
            throw new BudgetStateCorruptException($"The Redis budget store's {operation} script failed on the stored data under prefix '{_prefix}' ({code}).", (string?)_prefix, ex);
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException or System.Net.Sockets.SocketException or IOException
            or ObjectDisposedException or OperationCanceledException)
        {
            // OperationCanceledException here is not the caller's cancellation (filtered above): the client gave up.
            if (ex is RedisConnectionException { FailureType: ConnectionFailureType.UnableToResolvePhysicalConnection })
            {
                // No connection to write to (BacklogPolicy.FailFast): the command never left this process.
                sent?.Value = false;
            }

            string code = ErrorCode(ex);
            Log.Unavailable(_logger, operation, ex.GetType().Name, code);
            throw new BudgetStoreUnavailableException($"The Redis budget store could not complete the {operation} ({ex.GetType().Name}, {code}).", ex);
        }
    }

    /// <summary>What went wrong, in words that carry no key, value, endpoint or password: the client's messages do
    /// (StackExchange.Redis puts the command's key and the server endpoint in them), so they are never logged or
    /// copied into this store's exception messages. A server error gives its leading error code (<c>WRONGTYPE</c>,
    /// <c>LOADING</c>, <c>ERR</c>...), a connection error its failure type, anything else <c>-</c>.</summary>
    internal static string ErrorCode(Exception ex)
    {
        switch (ex)
        {
            case RedisConnectionException connection:
                return connection.FailureType.ToString();
            case RedisServerException server:
                string message = server.Message;
                int length = 0;
                while (length < message.Length && length < 32 && char.IsAsciiLetterUpper(message[length]))
                {
                    length++;
                }

                return length > 0 && (length == message.Length || message[length] == ' ') ? message[..length] : "-";
            default:
                return "-";
        }
    }

    /// <summary>Whether a failure is Redis being unreachable, slow or momentarily unable to serve (the only failures
    /// <see cref="RedisBudgetFailureMode.Open"/> may admit on), as opposed to a script, data or configuration error.</summary>
    private static bool IsTransient(Exception? ex) => ex switch
    {
        RedisServerException server => TransientErrorPrefixes.Any(p => server.Message.StartsWith(p, StringComparison.Ordinal)),
        RedisConnectionException or RedisTimeoutException or TimeoutException or System.Net.Sockets.SocketException or IOException
            or ObjectDisposedException or OperationCanceledException => true,
        _ => false,
    };

    /// <summary>Whether a server error comes from the script meeting data it cannot use (a wrong-type key, an
    /// undecodable lease) or from a runtime error in the script.</summary>
    private static bool IsDataError(RedisServerException ex)
        => ex.Message.StartsWith("WRONGTYPE", StringComparison.Ordinal)
            || ex.Message.Contains("user_script", StringComparison.Ordinal)
            || ex.Message.Contains("cjson", StringComparison.OrdinalIgnoreCase);

    /// <summary>Releases, in the background and with retries, a lease an admission may have created although its
    /// caller was told it failed: charge 0, or a tombstone that refuses the admission if it arrives later. Stops when
    /// the release is recorded, when the lease would have expired anyway (its expiry charges the hold), or on
    /// dispose.</summary>
    private void StartRelease(long leaseId, TimeSpan leaseDuration)
    {
        if (Interlocked.Increment(ref _pendingReleases) > MaxPendingReleases)
        {
            Interlocked.Decrement(ref _pendingReleases);
            Log.ReleaseSkipped(_logger, leaseId, MaxPendingReleases);
            return;
        }

        _ = Task.Run(() => ReleaseAsync(leaseId, leaseDuration));
    }

    private async Task ReleaseAsync(long leaseId, TimeSpan leaseDuration)
    {
        try
        {
            long started = _timeProvider.GetTimestamp();
            TimeSpan delay = TimeSpan.FromMilliseconds(100);
            while (Volatile.Read(ref _disposed) == 0)
            {
                try
                {
                    await FinishAsync(leaseId, 0, at: null, CancellationToken.None, release: true).ConfigureAwait(false);
                    Log.Released(_logger, leaseId);
                    return;
                }
                catch (BudgetStoreUnavailableException)
                {
                    // Retried below: a dropped connection may come back while the lease is still open.
                }

                if (_timeProvider.GetElapsedTime(started) + delay > leaseDuration)
                {
                    Log.ReleaseAbandoned(_logger, leaseId);
                    return;
                }

                await Task.Delay(delay, _timeProvider).ConfigureAwait(false);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, MaxReleaseDelay.Ticks));
            }
        }
        catch (Exception ex) when (ex is BudgetException or ObjectDisposedException)
        {
            Log.ReleaseAbandoned(_logger, leaseId);
        }
        finally
        {
            Interlocked.Decrement(ref _pendingReleases);
        }
    }

    private RedisKey LeaseKey(long leaseId) => string.Concat((string?)_prefix, "l:", leaseId.ToString(CultureInfo.InvariantCulture));

    private RedisKey CounterKey(string budgetKey) => string.Concat((string?)_prefix, "c:", budgetKey);

    private RedisKey ExpiryKey(string budgetKey) => string.Concat((string?)_prefix, "x:", budgetKey);

    /// <summary>A random lease id in [1, 2^62): bit 62 marks fail-open leases.</summary>
    private static long NewLeaseId()
    {
        Span<byte> bytes = stackalloc byte[8];
        long id;
        do
        {
            RandomNumberGenerator.Fill(bytes);
            id = BinaryPrimitives.ReadInt64LittleEndian(bytes) & (FailOpenLeaseFlag - 1);
        }
        while (id == 0);
        return id;
    }

    /// <summary>The connection, created on first use; a failed attempt is retried by the next call, never cached.</summary>
    private Task<IConnectionMultiplexer> ConnectionAsync()
    {
        lock (_connectLock)
        {
            if (_connection is null || _connection.IsFaulted || _connection.IsCanceled)
            {
                _connection = _connect();
            }

            return _connection;
        }
    }

    private static BudgetWindowValues Union(BudgetLevel level, BudgetLevel? parent)
    {
        BudgetWindowValues windows = default;
        for (var w = BudgetWindow.Hour; w <= BudgetWindow.Year; w++)
        {
            if (level.Limits.TryGetLimit(w, out _) || (parent is not null && parent.Limits.TryGetLimit(w, out _)))
            {
                windows = windows.With(w, 0);
            }
        }

        return windows;
    }

    private static int AddLevel(RedisValue[] args, int i, BudgetLevel level, BudgetWindowValues windows)
    {
        args[i++] = windows.Count;
        for (var w = BudgetWindow.Hour; w <= BudgetWindow.Year; w++)
        {
            if (!windows.Contains(w))
            {
                continue;
            }

            args[i++] = WindowCodes[(int)w];
            args[i++] = level.Limits.TryGetLimit(w, out long limit) ? limit : Empty;
        }

        return i;
    }

    private static int AddLevelCodes(RedisValue[] args, int i, BudgetWindowValues windows)
    {
        args[i++] = windows.Count;
        for (var w = BudgetWindow.Hour; w <= BudgetWindow.Year; w++)
        {
            if (windows.Contains(w))
            {
                args[i++] = WindowCodes[(int)w];
            }
        }

        return i;
    }

    /// <summary>Per limited window: the binding limit (the level with the least room; the smaller limit on a tie),
    /// the remaining tokens, and the blocking window (of the windows without room for the request before it was
    /// admitted, the one whose period ends last; the longer on a tie).</summary>
    private static (BudgetWindowValues Limits, BudgetWindowValues Remaining, BudgetWindow? Blocking) Shape(
        RedisResult[] r, int offset, BudgetWindowValues windows, BudgetLevel level, BudgetLevel? parent, long tokens, long admittedHold)
    {
        int windowCount = windows.Count;
        var limits = default(BudgetWindowValues);
        var remaining = default(BudgetWindowValues);
        BudgetWindow? blocking = null;
        long blockingEnd = long.MinValue;
        int k = 0;
        for (var w = BudgetWindow.Hour; w <= BudgetWindow.Year; w++)
        {
            if (!windows.Contains(w))
            {
                continue;
            }

            long room = long.MaxValue;
            long bound = long.MaxValue;
            bool blocked = false;
            long end = 0;
            if (level.Limits.TryGetLimit(w, out long limit))
            {
                int o = offset + (4 * k);
                long used = (long)r[o];
                long held = (long)r[o + 1];
                room = Room(limit, used, held);
                bound = limit;
                blocked |= !Fits(limit, used, held - admittedHold, tokens);
                end = (long)r[o + 3];
            }

            if (parent is not null && parent.Limits.TryGetLimit(w, out long parentLimit))
            {
                int o = offset + (4 * (windowCount + k));
                long used = (long)r[o];
                long held = (long)r[o + 1];
                long parentRoom = Room(parentLimit, used, held);
                if (parentRoom < room || (parentRoom == room && parentLimit < bound))
                {
                    room = parentRoom;
                    bound = parentLimit;
                }

                blocked |= !Fits(parentLimit, used, held - admittedHold, tokens);
                end = (long)r[o + 3];
            }

            limits = limits.With(w, bound);
            remaining = remaining.With(w, room);
            if (blocked && end >= blockingEnd)
            {
                blocking = w;
                blockingEnd = end;
            }

            k++;
        }

        return (limits, remaining, blocking);
    }

    /// <summary>The script's admission test: a saturated load never fits; nor does a request above the whole limit.</summary>
    private static bool Fits(long limit, long used, long held, long tokens)
    {
        long load = used + held;
        if (load < 0)
        {
            load = long.MaxValue;
        }

        return load != long.MaxValue && tokens <= limit && load <= limit - tokens;
    }

    private static long Room(long limit, long used, long held)
    {
        // Saturating: counters stick at long.MaxValue (see RedisBudgetScripts), and a saturated load leaves no room.
        long load = used + held;
        if (load < 0)
        {
            load = long.MaxValue;
        }

        return load >= limit ? 0 : limit - load;
    }

    private static (RedisValue Seconds, RedisValue Micros) Clock(Instant? at)
    {
        if (at is not { } instant)
        {
            return (Empty, Empty);
        }

        long seconds = instant.ToUnixTimeSeconds();
        long micros = (instant.ToUnixTimeTicks() - (seconds * NodaConstants.TicksPerSecond)) / 10;
        return (seconds, micros);
    }

    private static Instant FromClock(long seconds, long micros)
        => Instant.FromUnixTimeSeconds(seconds).PlusTicks(micros * 10);

    private static RedisValue Seconds(TimeSpan span) => (long)Math.Ceiling(span.TotalSeconds);

    private static int Milliseconds(TimeSpan span) => (int)Math.Min(int.MaxValue, Math.Ceiling(span.TotalMilliseconds));

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2208:Instantiate argument exceptions correctly", Justification = "The invalid value comes from the caller's options parameter; ParamName names it (a public, tested behaviour).")]
    private static void RequirePositive(TimeSpan value, string name)
    {
        if (value <= TimeSpan.Zero)
        {
            throw new ArgumentException($"RedisBudgetStoreOptions.{name} must be positive (was {value}).", "options");
        }
    }

    private static partial class Log
    {
        // No event carries a budget key, a Redis key or the client's exception (whose message names the key and the
        // endpoint): see docs/telemetry.md.
        [LoggerMessage(4001, LogLevel.Error, "Redis budget store: the {Operation} failed ({ErrorType}, {ErrorCode}); failing closed", EventName = "RedisBudgetStoreUnavailable")]
        public static partial void Unavailable(ILogger logger, string operation, string errorType, string errorCode);

        [LoggerMessage(4002, LogLevel.Warning, "Redis budget store unavailable ({ErrorType}): admitted {Tokens} tokens without a hold (FailureMode=Open)", EventName = "RedisBudgetStoreFailedOpen")]
        public static partial void FailedOpen(ILogger logger, long tokens, string errorType);

        [LoggerMessage(4003, LogLevel.Information, "Redis budget store: the server had no cached script for the {Operation}; sent it again with EVAL", EventName = "RedisBudgetScriptReloaded")]
        public static partial void ScriptReloaded(ILogger logger, string operation);

        [LoggerMessage(4004, LogLevel.Warning, "Redis budget store: lease {LeaseId} was admitted while Redis was unavailable (FailureMode=Open); its usage is not recorded", EventName = "RedisBudgetFailOpenLeaseFinished")]
        public static partial void FailOpenLeaseFinished(ILogger logger, long leaseId);

        [LoggerMessage(4005, LogLevel.Error, "Redis budget store: the {Operation} script failed on the stored data ({ErrorCode}); failing closed", EventName = "RedisBudgetScriptFailed")]
        public static partial void ScriptFailed(ILogger logger, string operation, string errorCode);

        [LoggerMessage(4006, LogLevel.Information, "Redis budget store: released lease {LeaseId} of an admission whose caller was told it failed", EventName = "RedisBudgetLeaseReleased")]
        public static partial void Released(ILogger logger, long leaseId);

        [LoggerMessage(4007, LogLevel.Warning, "Redis budget store: could not release lease {LeaseId} of a failed admission; if the admission ran, its hold is charged at lease expiry", EventName = "RedisBudgetLeaseReleaseAbandoned")]
        public static partial void ReleaseAbandoned(ILogger logger, long leaseId);

        [LoggerMessage(4008, LogLevel.Warning, "Redis budget store: {MaxPending} releases already pending; lease {LeaseId} of a failed admission is not released (its hold, if any, is charged at lease expiry)", EventName = "RedisBudgetLeaseReleaseSkipped")]
        public static partial void ReleaseSkipped(ILogger logger, long leaseId, int maxPending);
    }
}
