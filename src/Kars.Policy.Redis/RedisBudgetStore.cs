using System.Globalization;
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
/// (<see cref="RedisBudgetFailureMode.Open"/>). Settlement and status always throw.</description></item>
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
    private int _disposed;

    /// <summary>Initializes a store. Without <paramref name="connection"/> it creates (and owns) a connection from
    /// <see cref="RedisBudgetStoreOptions.Configuration"/> on first use; with one, it uses it and never disposes it.</summary>
    /// <param name="options">The options; validated and copied.</param>
    /// <param name="connection">An existing connection, or <see langword="null"/> to create one.</param>
    /// <param name="logger">The logger, or <see langword="null"/>.</param>
    /// <exception cref="ArgumentNullException"><paramref name="options"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option is invalid (the message names it).</exception>
    public RedisBudgetStore(RedisBudgetStoreOptions options, IConnectionMultiplexer? connection = null, ILogger<RedisBudgetStore>? logger = null)
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
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _timeProvider = options.TimeProvider ?? TimeProvider.System;

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

    /// <summary>Returns whether a lease was issued without a hold because Redis was unavailable and the store runs
    /// with <see cref="RedisBudgetFailureMode.Open"/>. Settling such a lease records nothing.</summary>
    /// <param name="lease">The lease.</param>
    /// <returns><see langword="true"/> for a fail-open lease of this store type.</returns>
    public static bool IsFailOpenLease(BudgetLease lease)
        => lease.Store is RedisBudgetStore && (lease.Id & FailOpenLeaseFlag) != 0;

    /// <inheritdoc/>
    protected override async ValueTask<BudgetDecision> TryReserveCoreAsync(BudgetRequest request, CancellationToken cancellationToken)
    {
        BudgetLevel level = request.Level;
        BudgetLevel? parent = request.Parent;
        BudgetWindowValues windows = Union(level, parent);
        int windowCount = windows.Count;
        int levels = parent is null ? 1 : 2;

        var args = new RedisValue[10 + (levels * (2 + (2 * windowCount)))];
        args[0] = _prefix;
        (args[1], args[2]) = Clock(request.At);
        args[3] = request.Tokens;
        args[4] = (long)Math.Ceiling(request.LeaseDuration.TotalMilliseconds);
        args[5] = request.Mode == BudgetMode.Observe ? One : Zero;
        args[6] = _margin;
        args[7] = _tombstoneTtl;
        args[8] = _sweepLimit;
        args[9] = levels;
        int i = 10;
        i = AddLevel(args, i, level, windows);
        if (parent is not null)
        {
            AddLevel(args, i, parent, windows);
        }

        RedisResult[] r;
        try
        {
            r = (RedisResult[])(await EvaluateAsync(RedisBudgetScripts.AdmitSha, RedisBudgetScripts.Admit, args, "admission", cancellationToken).ConfigureAwait(false))!;
        }
        catch (BudgetStoreUnavailableException ex) when (_failureMode == RedisBudgetFailureMode.Open)
        {
            return FailOpen(request, windows, ex);
        }

        int status = (int)r[0];
        long retrySeconds = (long)r[3];
        long leaseId = (long)r[4];
        long expiresMs = (long)r[5];

        BudgetWindowValues remaining = Remaining(r, 7, windows, level, parent);
        if (status == 0)
        {
            return new BudgetDecision(BudgetReason.BudgetExceeded, request.Tokens, default, TimeSpan.FromSeconds(Math.Max(1, retrySeconds)), remaining);
        }

        Instant expiresAt = request.At is { } at
            ? at + Duration.FromTimeSpan(request.LeaseDuration)
            : Instant.FromUnixTimeMilliseconds(expiresMs);
        var lease = new BudgetLease(this, leaseId, request.Tokens, expiresAt);
        return new BudgetDecision(status == 2 ? BudgetReason.Observed : BudgetReason.Admitted, request.Tokens, lease, null, remaining);
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
        BudgetWindowValues windows = Union(level, parent);
        int windowCount = windows.Count;
        int levels = parent is null ? 1 : 2;
        var args = new RedisValue[6 + (levels * (2 + windowCount))];
        args[0] = _prefix;
        (args[1], args[2]) = Clock(at);
        args[3] = _tombstoneTtl;
        args[4] = _sweepLimit;
        args[5] = levels;
        int i = 6;
        i = AddLevelCodes(args, i, level, windows);
        if (parent is not null)
        {
            AddLevelCodes(args, i, parent, windows);
        }

        var r = (RedisResult[])(await EvaluateAsync(RedisBudgetScripts.StatusSha, RedisBudgetScripts.Status, args, "status", cancellationToken).ConfigureAwait(false))!;
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

    private async ValueTask<BudgetSettlement> FinishAsync(long leaseId, long? actualTokens, Instant? at, CancellationToken cancellationToken)
    {
        if ((leaseId & FailOpenLeaseFlag) != 0)
        {
            Log.FailOpenLeaseFinished(_logger, leaseId);
            return new BudgetSettlement(BudgetSettlementStatus.Settled, 0);
        }

        var args = new RedisValue[6];
        args[0] = _prefix;
        (args[1], args[2]) = Clock(at);
        args[3] = leaseId;
        args[4] = actualTokens is { } actual ? actual : Empty;
        args[5] = _tombstoneTtl;
        var r = (RedisResult[])(await EvaluateAsync(RedisBudgetScripts.SettleSha, RedisBudgetScripts.Settle, args, "settlement", cancellationToken).ConfigureAwait(false))!;
        var status = (BudgetSettlementStatus)(int)r[0];
        return new BudgetSettlement(status, (long)r[1]);
    }

    private BudgetDecision FailOpen(BudgetRequest request, BudgetWindowValues windows, BudgetStoreUnavailableException ex)
    {
        Log.FailedOpen(_logger, request.Level.Key, request.Tokens, ex.InnerException?.GetType().Name ?? ex.GetType().Name);
        long id = FailOpenLeaseFlag | Interlocked.Increment(ref _failOpenSequence);
        var remaining = default(BudgetWindowValues);
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
            }
        }

        Instant expires = (request.At ?? Instant.FromDateTimeOffset(_timeProvider.GetUtcNow())) + Duration.FromTimeSpan(request.LeaseDuration);
        return new BudgetDecision(BudgetReason.Admitted, request.Tokens, new BudgetLease(this, id, request.Tokens, expires), null, remaining);
    }

    private async Task<RedisResult> EvaluateAsync(byte[] sha, string script, RedisValue[] args, string operation, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        try
        {
            IConnectionMultiplexer connection = await ConnectionAsync().WaitAsync(_operationTimeout, cancellationToken).ConfigureAwait(false);
            IDatabase db = connection.GetDatabase();
            try
            {
                return await db.ScriptEvaluateAsync(sha, keys: null, args).WaitAsync(_operationTimeout, cancellationToken).ConfigureAwait(false);
            }
            catch (RedisServerException ex) when (ex.Message.StartsWith("NOSCRIPT", StringComparison.Ordinal))
            {
                // The server lost its script cache (restart, failover, SCRIPT FLUSH): EVAL loads it again.
                Log.ScriptReloaded(_logger, operation);
                return await db.ScriptEvaluateAsync(script, keys: null, args).WaitAsync(_operationTimeout, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException or System.Net.Sockets.SocketException or IOException
            or ObjectDisposedException or OperationCanceledException)
        {
            // OperationCanceledException here is not the caller's cancellation (filtered above): the client gave up.
            Log.Unavailable(_logger, operation, ex.GetType().Name, ex);
            throw new BudgetStoreUnavailableException($"The Redis budget store could not complete the {operation}: {ex.Message}", ex);
        }
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
        args[i++] = level.Key;
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

    private static int AddLevelCodes(RedisValue[] args, int i, BudgetLevel level, BudgetWindowValues windows)
    {
        args[i++] = level.Key;
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

    private static BudgetWindowValues Remaining(RedisResult[] r, int offset, BudgetWindowValues windows, BudgetLevel level, BudgetLevel? parent)
    {
        int windowCount = windows.Count;
        var remaining = default(BudgetWindowValues);
        int k = 0;
        for (var w = BudgetWindow.Hour; w <= BudgetWindow.Year; w++)
        {
            if (!windows.Contains(w))
            {
                continue;
            }

            long room = long.MaxValue;
            if (level.Limits.TryGetLimit(w, out long limit))
            {
                int o = offset + (4 * k);
                room = Room(limit, (long)r[o], (long)r[o + 1]);
            }

            if (parent is not null && parent.Limits.TryGetLimit(w, out long parentLimit))
            {
                int o = offset + (4 * (windowCount + k));
                room = Math.Min(room, Room(parentLimit, (long)r[o], (long)r[o + 1]));
            }

            remaining = remaining.With(w, room);
            k++;
        }

        return remaining;
    }

    private static long Room(long limit, long used, long held)
    {
        long room = limit - used - held;
        return room < 0 ? 0 : room;
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

    private static void RequirePositive(TimeSpan value, string name)
    {
        if (value <= TimeSpan.Zero)
        {
            throw new ArgumentException($"RedisBudgetStoreOptions.{name} must be positive (was {value}).", "options");
        }
    }

    private static partial class Log
    {
        [LoggerMessage(4001, LogLevel.Error, "Redis budget store: the {Operation} failed ({ErrorType}); failing closed", EventName = "RedisBudgetStoreUnavailable")]
        public static partial void Unavailable(ILogger logger, string operation, string errorType, Exception exception);

        [LoggerMessage(4002, LogLevel.Warning, "Redis budget store unavailable ({ErrorType}): admitted {Tokens} tokens for budget key '{BudgetKey}' without a hold (FailureMode=Open)", EventName = "RedisBudgetStoreFailedOpen")]
        public static partial void FailedOpen(ILogger logger, string budgetKey, long tokens, string errorType);

        [LoggerMessage(4003, LogLevel.Information, "Redis budget store: the server had no cached script for the {Operation}; sent it again with EVAL", EventName = "RedisBudgetScriptReloaded")]
        public static partial void ScriptReloaded(ILogger logger, string operation);

        [LoggerMessage(4004, LogLevel.Warning, "Redis budget store: lease {LeaseId} was admitted while Redis was unavailable (FailureMode=Open); its usage is not recorded", EventName = "RedisBudgetFailOpenLeaseFinished")]
        public static partial void FailOpenLeaseFinished(ILogger logger, long leaseId);
    }
}
