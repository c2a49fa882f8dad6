using System.Globalization;
using Kars.Policy.Budgets;
using Kars.Policy.Redis.Tests.Infrastructure;
using Microsoft.Extensions.Time.Testing;
using NodaTime;
using StackExchange.Redis;

namespace Kars.Policy.Redis.Tests;

/// <summary>Redis-specific behaviour: round trips, server clock, key expiry, NOSCRIPT, failure modes. Each test
/// runs its own redis-server so command counts and outages are its own.</summary>
public sealed class RedisBudgetStoreTests
{
    private static readonly Instant FixedAt = Instant.FromUtc(2031, 6, 15, 12, 0);

    private static readonly string[] ScriptInternalCommands =
        ["time", "exists", "get", "set", "hmget", "hset", "hkeys", "hdel", "expire", "ttl", "zadd", "zrem", "zrangebyscore"];

    [Fact]
    public async Task TryReserveAsync_KeyAndParentAllWindows_OneRoundTripPerAdmissionAndSettlement()
    {
        await using RedisServer server = await RedisServer.StartAsync();
        await using ConnectionMultiplexer admin = await AdminAsync(server);
        await using var store = NewStore(server, "k:");
        var tenant = new BudgetLevel("tenant", new BudgetLimits(hour: 1_000_000, day: 1_000_000, week: 1_000_000, month: 1_000_000, year: 1_000_000));
        var agent = new BudgetLevel("agent", new BudgetLimits(hour: 100_000, day: 100_000, week: 100_000, month: 100_000, year: 100_000));
        // Warm-up: the first call of each script finds the server cache empty (NOSCRIPT) and sends EVAL once.
        await (await store.TryReserveAsync(new BudgetRequest(agent, 1, TimeSpan.FromMinutes(5), tenant))).Lease.SettleAsync(1);

        Dictionary<string, long> before = await CommandCallsAsync(admin);
        for (int i = 0; i < 100; i++)
        {
            BudgetDecision decision = await store.TryReserveAsync(new BudgetRequest(agent, 10, TimeSpan.FromMinutes(5), tenant));
            decision.IsAdmitted.Should().BeTrue();

            // The documented pattern: disposing the settled lease must not cost a second round trip.
            await using (decision.Lease)
            {
                (await decision.Lease.SettleAsync(5)).Status.Should().Be(BudgetSettlementStatus.Settled);
            }
        }

        Dictionary<string, long> delta = Delta(before, await CommandCallsAsync(admin));
        delta.GetValueOrDefault("evalsha").Should().Be(200, "one EVALSHA per admission and one per settlement; disposing a settled lease sends nothing");

        // commandstats also counts the commands a script runs; every other command must be one of those (the client
        // cannot send them: it only evaluates scripts). INFO is this test's own; PING/ECHO are client heartbeats.
        delta.Keys.Except(ScriptInternalCommands).Except(["evalsha", "info", "ping", "echo"]).Should().BeEmpty(
            "nothing but EVALSHA is sent: {0}", string.Join(", ", delta));
        delta.GetValueOrDefault("time").Should().Be(200, "each script reads the server clock once");
    }

    [Fact]
    public async Task TryReserveAsync_Decision_CarriesLimitsRemainingResetAndBlockingWindow()
    {
        await using RedisServer server = await RedisServer.StartAsync();
        await using var store = NewStore(server, "k:");
        var tenant = new BudgetLevel("tenant", new BudgetLimits(day: 50));
        var agent = new BudgetLevel("agent", new BudgetLimits(hour: 100, day: 1000));

        BudgetDecision admitted = await store.TryReserveAsync(new BudgetRequest(agent, 30, TimeSpan.FromMinutes(5), tenant, at: FixedAt));
        BudgetDecision rejected = await store.TryReserveAsync(new BudgetRequest(agent, 30, TimeSpan.FromMinutes(5), tenant, at: FixedAt));

        admitted.At.Should().Be(FixedAt);
        admitted.Limits.Should().Be(default(BudgetWindowValues).With(BudgetWindow.Hour, 100).With(BudgetWindow.Day, 50), "the tenant's day limit binds");
        admitted.Remaining.Should().Be(default(BudgetWindowValues).With(BudgetWindow.Hour, 70).With(BudgetWindow.Day, 20));
        admitted.BlockingWindow.Should().BeNull();
        admitted.IsUnmetered.Should().BeFalse();
        admitted.TryGetWindow(BudgetWindow.Day, out BudgetWindowQuota day).Should().BeTrue();
        day.ResetsAt.Should().Be(BudgetWindow.Day.PeriodContaining(FixedAt).End);
        rejected.Reason.Should().Be(BudgetReason.BudgetExceeded);
        rejected.BlockingWindow.Should().Be(BudgetWindow.Day);
        rejected.RetryAfter.Should().Be(TimeSpan.FromSeconds(Math.Ceiling(day.ResetAfter.TotalSeconds)));
        rejected.Remaining.Should().Be(admitted.Remaining, "a rejection changes nothing");
    }

    [Fact]
    public async Task Dispose_Synchronous_ReleasesTheStore()
    {
        await using RedisServer server = await RedisServer.StartAsync();
        var store = NewStore(server, "k:");
        var level = new BudgetLevel("a", new BudgetLimits(day: 100));
        (await store.TryReserveAsync(new BudgetRequest(level, 1, TimeSpan.FromMinutes(5), at: FixedAt))).IsAdmitted.Should().BeTrue();

        store.Dispose();
        store.Dispose();

        var act = async () => await store.TryReserveAsync(new BudgetRequest(level, 1, TimeSpan.FromMinutes(5), at: FixedAt));
        await act.Should().ThrowAsync<ObjectDisposedException>();
    }

    [Fact]
    public async Task TryReserveAsync_TwoReplicasWith32CallersEach_NeverOverspend()
    {
        await using RedisServer server = await RedisServer.StartAsync();
        await using var replicaA = NewStore(server, "k:");
        await using var replicaB = NewStore(server, "k:");
        var tenant = new BudgetLevel("tenant", new BudgetLimits(day: 1000));
        var agent = new BudgetLevel("agent", new BudgetLimits(hour: 100_000, day: 100_000));
        int admitted = 0;

        var callers = Enumerable.Range(0, 64).Select(c => Task.Run(async () =>
        {
            RedisBudgetStore store = c % 2 == 0 ? replicaA : replicaB;
            for (int i = 0; i < 10; i++)
            {
                if ((await store.TryReserveAsync(new BudgetRequest(agent, 7, TimeSpan.FromMinutes(5), tenant, at: FixedAt))).IsAdmitted)
                {
                    Interlocked.Increment(ref admitted);
                }
            }
        }));
        await Task.WhenAll(callers);

        admitted.Should().Be(1000 / 7);
        BudgetWindowStatus day = (await replicaA.GetStatusAsync(tenant, null, FixedAt)).Windows.Single();
        day.Held.Should().Be(admitted * 7L);
    }

    [Fact]
    public async Task SettleAsync_OnAnotherReplica_SettlesOnceAcrossReplicas()
    {
        await using RedisServer server = await RedisServer.StartAsync();
        await using var replicaA = NewStore(server, "k:");
        await using var replicaB = NewStore(server, "k:");
        var level = new BudgetLevel("a", new BudgetLimits(day: 1000));
        BudgetDecision decision = await replicaA.TryReserveAsync(new BudgetRequest(level, 500, TimeSpan.FromMinutes(5), at: FixedAt));

        BudgetSettlement onB = await replicaB.SettleAsync(decision.Lease.Id, 120, FixedAt);
        BudgetSettlement againOnA = await replicaA.SettleAsync(decision.Lease.Id, 480, FixedAt);

        onB.Status.Should().Be(BudgetSettlementStatus.Settled);
        againOnA.Status.Should().Be(BudgetSettlementStatus.AlreadySettled);
        againOnA.Charged.Should().Be(120);
        BudgetWindowStatus day = (await replicaA.GetStatusAsync(level, null, FixedAt)).Windows.Single();
        day.Used.Should().Be(120);
        day.Held.Should().Be(0);
    }

    [Fact]
    public async Task TryReserveAsync_ScriptCacheFlushed_ReloadsAndAdmits()
    {
        await using RedisServer server = await RedisServer.StartAsync();
        await using ConnectionMultiplexer admin = await AdminAsync(server);
        await using var store = NewStore(server, "k:");
        var level = new BudgetLevel("a", new BudgetLimits(day: 100));
        (await store.TryReserveAsync(new BudgetRequest(level, 10, TimeSpan.FromMinutes(5)))).IsAdmitted.Should().BeTrue();

        await admin.GetServer(admin.GetEndPoints()[0]).ScriptFlushAsync();
        BudgetDecision decision = await store.TryReserveAsync(new BudgetRequest(level, 10, TimeSpan.FromMinutes(5)));

        decision.Reason.Should().Be(BudgetReason.Admitted);
        decision.Remaining.TryGetValue(BudgetWindow.Day, out long remaining).Should().BeTrue();
        remaining.Should().Be(80);
    }

    [Fact]
    public async Task TryReserveAsync_NoInstant_UsesRedisServerClockNotTheHostClock()
    {
        await using RedisServer server = await RedisServer.StartAsync();
        await using ConnectionMultiplexer admin = await AdminAsync(server);
        var farFuture = new FakeTimeProvider(new DateTimeOffset(2045, 3, 1, 0, 0, 0, TimeSpan.Zero));
        await using var store = NewStore(server, "k:", timeProvider: farFuture);
        var level = new BudgetLevel("a", new BudgetLimits(hour: 1000, day: 1000));

        DateTime serverTime = await admin.GetServer(admin.GetEndPoints()[0]).TimeAsync();
        BudgetDecision decision = await store.TryReserveAsync(new BudgetRequest(level, 10, TimeSpan.FromMinutes(5)));
        BudgetStatus status = await store.GetStatusAsync(level);

        Instant serverNow = Instant.FromDateTimeUtc(DateTime.SpecifyKind(serverTime, DateTimeKind.Utc));
        BudgetWindowStatus day = status.Windows.Single(w => w.Window == BudgetWindow.Day);
        day.Start.Should().Be(serverNow.InUtc().Date.AtStartOfDayInZone(DateTimeZone.Utc).ToInstant());
        day.Held.Should().Be(10);
        (status.At - serverNow).Should().BeLessThan(Duration.FromMinutes(1));
        (decision.Lease.ExpiresAt - serverNow).Should().BeGreaterThan(Duration.FromMinutes(4)).And.BeLessThan(Duration.FromMinutes(6));
    }

    [Fact]
    public async Task TryReserveAsync_CounterAndLeaseKeys_HavePositiveTtlsBoundedByWindowEnd()
    {
        await using RedisServer server = await RedisServer.StartAsync();
        await using ConnectionMultiplexer admin = await AdminAsync(server);
        await using var store = NewStore(server, "k:", o => o.CounterExpiryMargin = TimeSpan.FromHours(1));
        var tenant = new BudgetLevel("tenant", new BudgetLimits(month: 1000));
        var agent = new BudgetLevel("agent", new BudgetLimits(hour: 1000, day: 1000, week: 1000, year: 1000));

        BudgetDecision decision = await store.TryReserveAsync(new BudgetRequest(agent, 10, TimeSpan.FromMinutes(5), tenant, at: FixedAt));

        decision.IsAdmitted.Should().BeTrue();
        IDatabase db = admin.GetDatabase();
        RedisKey[] keys = admin.GetServer(admin.GetEndPoints()[0]).Keys(pattern: "k:*").ToArray();
        string leaseKey = "k:l:" + decision.Lease.Id.ToString(CultureInfo.InvariantCulture);
        keys.Select(k => (string)k!).Should().BeEquivalentTo(leaseKey, "k:x:agent", "k:x:tenant", "k:c:agent", "k:c:tenant");
        static string End(int y, int mo, int d, int h = 0) => Instant.FromUtc(y, mo, d, h, 0).ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture);
        string[] bases =
        [
            "H2031061512:" + End(2031, 6, 15, 13),
            "D20310615:" + End(2031, 6, 16),
            "W2031W24:" + End(2031, 6, 16), // Monday 2031-06-16 starts the next ISO week
            "M203106:" + End(2031, 7, 1),
            "Y2031:" + End(2032, 1, 1),
        ];
        foreach (string level in new[] { "k:c:agent", "k:c:tenant" })
        {
            HashEntry[] fields = await db.HashGetAllAsync(level);
            fields.Select(f => (string)f.Name!).Should().BeEquivalentTo(bases.SelectMany(b => new[] { b + ":u", b + ":h" }), level);
            fields.Where(f => ((string)f.Name!).EndsWith(":h", StringComparison.Ordinal)).Select(f => (long)f.Value).Should().AllBeEquivalentTo(10);
            fields.Where(f => ((string)f.Name!).EndsWith(":u", StringComparison.Ordinal)).Select(f => (long)f.Value).Should().AllBeEquivalentTo(0);
        }

        Instant yearEnd = Instant.FromUtc(2032, 1, 1, 0, 0);
        TimeSpan longest = (yearEnd - FixedAt).ToTimeSpan() + TimeSpan.FromHours(1);
        foreach (RedisKey key in keys)
        {
            TimeSpan? ttl = await db.KeyTimeToLiveAsync(key);
            ttl.Should().NotBeNull($"{key} expires");
            ttl!.Value.Should().BePositive();
            ttl.Value.Should().BeLessThanOrEqualTo(longest, $"{key} lives at most until the latest window end plus the margin");
            ttl.Value.Should().BeCloseTo(longest, TimeSpan.FromMinutes(1), $"{key} lives as long as the year window it counts in");
        }
    }

    [Fact]
    public async Task TryReserveAsync_NewPeriod_PrunesCountersOfPeriodsEndedBeforeTheMargin()
    {
        await using RedisServer server = await RedisServer.StartAsync();
        await using ConnectionMultiplexer admin = await AdminAsync(server);
        await using var store = NewStore(server, "k:", o => o.CounterExpiryMargin = TimeSpan.FromHours(2));
        var level = new BudgetLevel("a", new BudgetLimits(hour: 1000, day: 10_000));
        Instant t0 = Instant.FromUtc(2031, 6, 15, 9, 30);

        foreach (int hour in new[] { 0, 1, 2, 3 })
        {
            (await store.TryReserveAsync(new BudgetRequest(level, 10, TimeSpan.FromMinutes(5), at: t0 + Duration.FromHours(hour)))).IsAdmitted.Should().BeTrue();
        }

        // At 12:30 the 09:00 hour ended 2.5 h ago (pruned); 10:00 ended 1.5 h ago and 11:00 0.5 h ago (kept).
        HashEntry[] fields = await admin.GetDatabase().HashGetAllAsync("k:c:a");
        fields.Select(f => ((string)f.Name!).Split(':')[0]).Distinct().Should().BeEquivalentTo("H2031061510", "H2031061511", "H2031061512", "D20310615");
        BudgetWindowStatus day = (await store.GetStatusAsync(level, null, t0 + Duration.FromHours(3))).Windows.Single(w => w.Window == BudgetWindow.Day);
        (day.Used + day.Held).Should().Be(40, "pruning never touches the current periods (earlier leases expired and were charged)");
        day.Held.Should().Be(10);
    }

    [Fact]
    public async Task TryReserveAsync_ExplicitInstantInThePast_KeysStillExist()
    {
        // EXPIREAT with a past timestamp would delete the key at once; the store uses relative TTLs.
        await using RedisServer server = await RedisServer.StartAsync();
        await using var store = NewStore(server, "k:");
        var level = new BudgetLevel("a", new BudgetLimits(day: 100));
        Instant past = Instant.FromUtc(2020, 2, 29, 23, 0);

        (await store.TryReserveAsync(new BudgetRequest(level, 60, TimeSpan.FromMinutes(5), at: past))).IsAdmitted.Should().BeTrue();
        BudgetDecision second = await store.TryReserveAsync(new BudgetRequest(level, 60, TimeSpan.FromMinutes(5), at: past));

        second.Reason.Should().Be(BudgetReason.BudgetExceeded);
        BudgetWindowStatus day = (await store.GetStatusAsync(level, null, past)).Windows.Single();
        day.Held.Should().Be(60);
        day.Start.Should().Be(Instant.FromUtc(2020, 2, 29, 0, 0));
    }

    [Fact]
    public async Task TryReserveAsync_SiblingLeaseExpired_ParentHoldChargedByNextAdmission()
    {
        await using RedisServer server = await RedisServer.StartAsync();
        await using var store = NewStore(server, "k:");
        var tenant = new BudgetLevel("tenant", new BudgetLimits(day: 100));
        var a = new BudgetLevel("a", BudgetLimits.None);
        var b = new BudgetLevel("b", BudgetLimits.None);
        (await store.TryReserveAsync(new BudgetRequest(a, 80, TimeSpan.FromMinutes(1), tenant, at: FixedAt))).IsAdmitted.Should().BeTrue();
        (await store.TryReserveAsync(new BudgetRequest(b, 30, TimeSpan.FromMinutes(1), tenant, at: FixedAt))).IsAdmitted.Should().BeFalse();

        Instant later = FixedAt + Duration.FromMinutes(2);
        BudgetDecision decision = await store.TryReserveAsync(new BudgetRequest(b, 20, TimeSpan.FromMinutes(1), tenant, at: later));

        decision.Reason.Should().Be(BudgetReason.Admitted);
        BudgetWindowStatus parent = (await store.GetStatusAsync(tenant, null, later)).Windows.Single();
        parent.Used.Should().Be(80, "a's expired lease was charged its full hold");
        parent.Held.Should().Be(20);
        BudgetWindowStatus child = (await store.GetStatusAsync(a, tenant, later)).Windows.Single();
        child.Used.Should().Be(80);
        child.Held.Should().Be(0);
    }

    [Fact]
    public async Task TryReserveAsync_ServerStopped_FailsClosedWithTypedError()
    {
        await using RedisServer server = await RedisServer.StartAsync();
        await using var store = NewStore(server, "k:", o => o.OperationTimeout = TimeSpan.FromSeconds(2));
        var level = new BudgetLevel("a", new BudgetLimits(day: 100));
        (await store.TryReserveAsync(new BudgetRequest(level, 10, TimeSpan.FromMinutes(5)))).IsAdmitted.Should().BeTrue();

        await server.KillAsync();
        var reserve = async () => await store.TryReserveAsync(new BudgetRequest(level, 10, TimeSpan.FromMinutes(5)));
        var status = async () => await store.GetStatusAsync(level);

        await reserve.Should().ThrowAsync<BudgetStoreUnavailableException>();
        await status.Should().ThrowAsync<BudgetStoreUnavailableException>();
    }

    [Fact]
    public async Task TryReserveAsync_NeverReachable_FailsClosedWithTypedError()
    {
        await using RedisServer server = await RedisServer.StartAsync();
        string config = server.ConnectionString;
        await server.KillAsync();
        await using var store = new RedisBudgetStore(new RedisBudgetStoreOptions { Configuration = config, KeyPrefix = "k:", ConnectTimeout = TimeSpan.FromMilliseconds(500), OperationTimeout = TimeSpan.FromSeconds(2) });
        var level = new BudgetLevel("a", new BudgetLimits(day: 100));

        var reserve = async () => await store.TryReserveAsync(new BudgetRequest(level, 10, TimeSpan.FromMinutes(5)));

        (await reserve.Should().ThrowAsync<BudgetStoreUnavailableException>()).Which.InnerException.Should().NotBeNull();
    }

    [Fact]
    public async Task TryReserveAsync_ServerPaused_TimesOutWithTypedError()
    {
        await using RedisServer server = await RedisServer.StartAsync();
        await using var store = NewStore(server, "k:", o => o.OperationTimeout = TimeSpan.FromMilliseconds(300));
        var level = new BudgetLevel("a", new BudgetLimits(day: 100));
        (await store.TryReserveAsync(new BudgetRequest(level, 10, TimeSpan.FromMinutes(5)))).IsAdmitted.Should().BeTrue();

        (await server.SendRawAsync("CLIENT", "PAUSE", "1500", "ALL")).Should().Be("+OK");
        var reserve = async () => await store.TryReserveAsync(new BudgetRequest(level, 10, TimeSpan.FromMinutes(5)));

        (await reserve.Should().ThrowAsync<BudgetStoreUnavailableException>()).Which.InnerException.Should().BeAssignableTo<TimeoutException>();
        (await server.SendRawAsync("CLIENT", "UNPAUSE")).Should().Be("+OK");
    }

    [Fact]
    public async Task TryReserveAsync_FailOpenAndServerStopped_AdmitsWithMarkedLease()
    {
        await using RedisServer server = await RedisServer.StartAsync();
        await using var store = NewStore(server, "k:", o =>
        {
            o.FailureMode = RedisBudgetFailureMode.Open;
            o.OperationTimeout = TimeSpan.FromSeconds(2);
        });
        var level = new BudgetLevel("a", new BudgetLimits(day: 100));
        BudgetDecision healthy = await store.TryReserveAsync(new BudgetRequest(level, 10, TimeSpan.FromMinutes(5)));
        healthy.IsUnmetered.Should().BeFalse();

        await server.KillAsync();
        BudgetDecision decision = await store.TryReserveAsync(new BudgetRequest(level, 500, TimeSpan.FromMinutes(5)));
        var status = async () => await store.GetStatusAsync(level);

        decision.Reason.Should().Be(BudgetReason.Admitted);
        decision.Lease.IsValid.Should().BeTrue();
        decision.IsUnmetered.Should().BeTrue();
        decision.Remaining.TryGetValue(BudgetWindow.Day, out long remaining).Should().BeTrue();
        remaining.Should().Be(100);
        decision.Limits.TryGetValue(BudgetWindow.Day, out long limit).Should().BeTrue();
        limit.Should().Be(100);
        decision.BlockingWindow.Should().BeNull();
        BudgetSettlement settlement = await decision.Lease.SettleAsync(400);
        settlement.Status.Should().Be(BudgetSettlementStatus.Settled);
        settlement.Charged.Should().Be(0, "nothing could be recorded");
        await status.Should().ThrowAsync<BudgetStoreUnavailableException>();
    }

    [Fact]
    public async Task TryReserveAsync_ServerRestartedWithoutPersistence_RecoversConnection()
    {
        await using RedisServer server = await RedisServer.StartAsync();
        await using var store = NewStore(server, "k:", o => o.OperationTimeout = TimeSpan.FromSeconds(2));
        var level = new BudgetLevel("a", new BudgetLimits(day: 100));
        (await store.TryReserveAsync(new BudgetRequest(level, 10, TimeSpan.FromMinutes(5), at: FixedAt))).IsAdmitted.Should().BeTrue();

        await server.KillAsync();
        await server.RestartAsync();
        BudgetDecision decision = default;
        for (int attempt = 0; attempt < 100 && !decision.IsAdmitted; attempt++)
        {
            try
            {
                decision = await store.TryReserveAsync(new BudgetRequest(level, 10, TimeSpan.FromMinutes(5), at: FixedAt));
            }
            catch (BudgetStoreUnavailableException)
            {
                await Task.Delay(100);
            }
        }

        decision.Reason.Should().Be(BudgetReason.Admitted, "the store reconnects and reloads its script (NOSCRIPT) after a restart");
    }

    [Fact]
    public async Task SettleAsync_MaxTokensRepeated_CounterSaturatesAndRejects()
    {
        // Lua numbers are doubles and %d of a value at or above 2^63 is LLONG_MIN: without saturation the counter
        // would wrap negative and admit everything after, even under a limit of long.MaxValue.
        await using RedisServer server = await RedisServer.StartAsync();
        await using var store = NewStore(server, "k:");
        var level = new BudgetLevel("a", new BudgetLimits(day: long.MaxValue));
        // 1100 × 2^53 > 2^63: enough settlements of the largest accepted actual to wrap an unsaturated counter.
        var leases = new List<long>();
        for (int i = 0; i < 1100; i++)
        {
            BudgetDecision admitted = await store.TryReserveAsync(new BudgetRequest(level, 1, TimeSpan.FromMinutes(5), at: FixedAt));
            admitted.IsAdmitted.Should().BeTrue();
            leases.Add(admitted.Lease.Id);
        }

        foreach (long id in leases)
        {
            (await store.SettleAsync(id, BudgetStore.MaxTokens, FixedAt)).Status.Should().Be(BudgetSettlementStatus.Settled);
        }

        BudgetDecision decision = await store.TryReserveAsync(new BudgetRequest(level, 1, TimeSpan.FromMinutes(5), at: FixedAt));

        decision.Reason.Should().Be(BudgetReason.BudgetExceeded, "a saturated counter rejects");
        decision.Remaining.TryGetValue(BudgetWindow.Day, out long remaining).Should().BeTrue();
        remaining.Should().Be(0);
        BudgetWindowStatus day = (await store.GetStatusAsync(level, null, FixedAt)).Windows.Single();
        day.Used.Should().Be(long.MaxValue, "the counter saturates at long.MaxValue and never wraps negative");
        day.Held.Should().Be(0);
        day.Remaining.Should().Be(0);
    }

    [Fact]
    public async Task TryReserveAsync_ReplyArrivesAfterTimeout_LeaseReleasedNoPhantomSpend()
    {
        await using RedisServer server = await RedisServer.StartAsync();
        await using ConnectionMultiplexer admin = await AdminAsync(server);
        await using var store = NewStore(server, "k:", o => o.OperationTimeout = TimeSpan.FromSeconds(1));
        var tenant = new BudgetLevel("tenant", new BudgetLimits(day: 1000));
        var level = new BudgetLevel("a", new BudgetLimits(day: 100));
        // Warm-up on another key: connects and loads the admission script (a cold EVALSHA would only get NOSCRIPT).
        BudgetDecision warmUp = await store.TryReserveAsync(new BudgetRequest(new BudgetLevel("w", BudgetLimits.None), 1, TimeSpan.FromMinutes(1), at: FixedAt));
        string warmUpKey = "k:l:" + warmUp.Lease.Id.ToString(CultureInfo.InvariantCulture);
        await store.SettleAsync(warmUp.Lease.Id, 1, FixedAt);
        await store.GetStatusAsync(level, tenant, FixedAt);

        // The server stops answering, so the admission is sent but its reply comes after the client's timeout.
        (await server.SendRawAsync("CLIENT", "PAUSE", "3000", "ALL")).Should().Be("+OK");
        var reserve = async () => await store.TryReserveAsync(new BudgetRequest(level, 40, TimeSpan.FromMinutes(1), tenant, at: FixedAt));
        await reserve.Should().ThrowAsync<BudgetStoreUnavailableException>();

        // Once the server answers (PING waits out the pause), the admission runs and then the release: the lease
        // ends settled with charge 0.
        (await server.SendRawAsync("PING")).Should().Be("+PONG");
        IDatabase db = admin.GetDatabase();
        IServer srv = admin.GetServer(admin.GetEndPoints()[0]);
        RedisKey[] leases = [];
        string? lease = null;
        for (int attempt = 0; attempt < 200; attempt++)
        {
            leases = srv.Keys(pattern: "k:l:*").Where(k => k != warmUpKey).ToArray();
            lease = leases.Length == 1 ? (string?)await db.StringGetAsync(leases[0]) : null;
            if (lease is not null && lease.Contains("\"s\":\"S\"", StringComparison.Ordinal))
            {
                break;
            }

            await Task.Delay(50);
        }

        leases.Should().ContainSingle("the admission reached the server and created its lease");
        lease.Should().Contain("\"s\":\"S\"").And.Contain("\"c\":\"0\"", "the release settled the lease with charge 0");
        (await db.SortedSetLengthAsync("k:x:a")).Should().Be(0);
        (await db.SortedSetLengthAsync("k:x:tenant")).Should().Be(0);

        // After the lease would have expired nothing is charged: no phantom spend.
        Instant later = FixedAt + Duration.FromMinutes(2);
        foreach (BudgetLevel l in new[] { level, tenant })
        {
            BudgetWindowStatus day = (await store.GetStatusAsync(l, null, later)).Windows.Single();
            day.Used.Should().Be(0, l.Key);
            day.Held.Should().Be(0, l.Key);
        }

        (await store.TryReserveAsync(new BudgetRequest(level, 100, TimeSpan.FromMinutes(1), tenant, at: later))).Reason.Should().Be(BudgetReason.Admitted);
    }

    [Fact]
    public async Task SettleAsync_ReleaseBeforeAdmission_LateAdmissionWritesNothing()
    {
        // A release that overtakes its admission (reconnect) leaves a tombstone; an admission with that id writes nothing.
        await using RedisServer server = await RedisServer.StartAsync();
        await using ConnectionMultiplexer admin = await AdminAsync(server);
        IDatabase db = admin.GetDatabase();
        RedisResult released = await db.ScriptEvaluateAsync(
            RedisBudgetScripts.Settle, ["k:l:77"], ["k:", "", "", "77", "0", "3600", "1"]);
        await db.ScriptEvaluateAsync(RedisBudgetScripts.Admit, ["k:l:77", "k:c:a", "k:x:a"], ["k:", "", "", "10", "60000", "0", "3600", "3600", "32", "1", "77", "1", "D", "100"]);

        ((long)((RedisResult[])released!)[0]).Should().Be(0, "the lease was unknown");
        ((string?)await db.StringGetAsync("k:l:77")).Should().Contain("\"s\":\"S\"");
        (await db.KeyExistsAsync("k:c:a")).Should().BeFalse("the refused admission wrote no counter");
        (await db.KeyExistsAsync("k:x:a")).Should().BeFalse();
    }

    [Fact]
    public async Task SettleAsync_ReleaseOfLeasePastExpiry_ChargesNothing()
    {
        // A release (the caller never got the lease) charges 0 even when the server clock is past the lease's
        // expiry, e.g. for an admission at an explicit instant in the past.
        await using RedisServer server = await RedisServer.StartAsync();
        await using ConnectionMultiplexer admin = await AdminAsync(server);
        await using var store = NewStore(server, "k:");
        var level = new BudgetLevel("a", new BudgetLimits(day: 100));
        Instant past = Instant.FromUtc(2020, 2, 29, 12, 0);
        BudgetDecision decision = await store.TryReserveAsync(new BudgetRequest(level, 40, TimeSpan.FromMinutes(1), at: past));
        string id = decision.Lease.Id.ToString(CultureInfo.InvariantCulture);

        var r = (RedisResult[])(await admin.GetDatabase().ScriptEvaluateAsync(
            RedisBudgetScripts.Settle, ["k:l:" + id], ["k:", "", "", id, "0", "3600", "1"]))!;

        ((long)r[0]).Should().Be(1, "settled now");
        ((long)r[1]).Should().Be(0);
        BudgetWindowStatus day = (await store.GetStatusAsync(level, null, past)).Windows.Single();
        day.Used.Should().Be(0);
        day.Held.Should().Be(0);
    }

    [Fact]
    public async Task TryReserveAsync_FailOpenAfterTimeout_ScriptHoldReleased()
    {
        // Open mode admits without a hold on a time-out; the hold the late script creates must not count as well.
        await using RedisServer server = await RedisServer.StartAsync();
        await using var store = NewStore(server, "k:", o =>
        {
            o.FailureMode = RedisBudgetFailureMode.Open;
            o.OperationTimeout = TimeSpan.FromSeconds(1);
        });
        var level = new BudgetLevel("a", new BudgetLimits(day: 100));
        (await store.TryReserveAsync(new BudgetRequest(level, 1, TimeSpan.FromMinutes(1), at: FixedAt))).IsAdmitted.Should().BeTrue();

        (await server.SendRawAsync("CLIENT", "PAUSE", "3000", "ALL")).Should().Be("+OK");
        BudgetDecision decision = await store.TryReserveAsync(new BudgetRequest(level, 60, TimeSpan.FromMinutes(1), at: FixedAt));
        decision.IsUnmetered.Should().BeTrue();
        (await server.SendRawAsync("PING")).Should().Be("+PONG");

        BudgetWindowStatus day = default!;
        for (int attempt = 0; attempt < 200; attempt++)
        {
            day = (await store.GetStatusAsync(level, null, FixedAt)).Windows.Single();
            if (day.Held == 1)
            {
                break;
            }

            await Task.Delay(50);
        }

        day.Held.Should().Be(1, "only the first admission holds tokens; the timed-out one was released");
        day.Used.Should().Be(0);
    }

    [Theory]
    [InlineData(RedisBudgetFailureMode.Open)]
    [InlineData(RedisBudgetFailureMode.Closed)]
    public async Task TryReserveAsync_WrongTypeAtCounterKey_ThrowsCorruptNotAdmitted(RedisBudgetFailureMode mode)
    {
        await using RedisServer server = await RedisServer.StartAsync();
        await using ConnectionMultiplexer admin = await AdminAsync(server);
        await admin.GetDatabase().StringSetAsync("k:c:a", "not a hash");
        await using var store = NewStore(server, "k:", o => o.FailureMode = mode);
        var level = new BudgetLevel("a", new BudgetLimits(day: 100));

        var reserve = async () => await store.TryReserveAsync(new BudgetRequest(level, 10, TimeSpan.FromMinutes(5)));

        (await reserve.Should().ThrowAsync<BudgetStateCorruptException>("a data error fails closed in every mode"))
            .Which.InnerException.Should().BeOfType<RedisServerException>().Which.Message.Should().Contain("WRONGTYPE");
        ((string?)await admin.GetDatabase().StringGetAsync("k:c:a")).Should().Be("not a hash");
    }

    [Fact]
    public async Task SettleAsync_UndecodableLease_ThrowsCorrupt()
    {
        await using RedisServer server = await RedisServer.StartAsync();
        await using ConnectionMultiplexer admin = await AdminAsync(server);
        await admin.GetDatabase().StringSetAsync("k:l:5", "{not json");
        await using var store = NewStore(server, "k:", o => o.FailureMode = RedisBudgetFailureMode.Open);

        var settle = async () => await store.SettleAsync(5, 1);

        await settle.Should().ThrowAsync<BudgetStateCorruptException>();
    }

    [Theory]
    [InlineData(BudgetMode.Enforce, BudgetReason.BudgetExceeded)]
    [InlineData(BudgetMode.Observe, BudgetReason.Observed)]
    public async Task TryReserveAsync_TokensAboveParentLimitOutright_NoRetryAfter(BudgetMode mode, BudgetReason expected)
    {
        await using RedisServer server = await RedisServer.StartAsync();
        await using var store = NewStore(server, "k:");
        var tenant = new BudgetLevel("tenant", new BudgetLimits(hour: 1000, day: 50));
        var level = new BudgetLevel("a", new BudgetLimits(hour: 10_000));

        BudgetDecision decision = await store.TryReserveAsync(new BudgetRequest(level, 60, TimeSpan.FromMinutes(5), tenant, at: FixedAt, mode: mode));

        decision.Reason.Should().Be(expected);
        decision.RetryAfter.Should().BeNull("no rollover makes room for 60 tokens under a limit of 50");
    }

    [Fact]
    public void Constructor_InvalidOptions_ThrowsNamingTheOption()
    {
        var noConfig = () => new RedisBudgetStore(new RedisBudgetStoreOptions());
        var noPrefix = () => new RedisBudgetStore(new RedisBudgetStoreOptions { Configuration = "127.0.0.1:1", KeyPrefix = "" });
        var timeout = () => new RedisBudgetStore(new RedisBudgetStoreOptions { Configuration = "127.0.0.1:1", OperationTimeout = TimeSpan.Zero });
        var mode = () => new RedisBudgetStore(new RedisBudgetStoreOptions { Configuration = "127.0.0.1:1", FailureMode = (RedisBudgetFailureMode)7 });

        noConfig.Should().Throw<ArgumentException>().WithMessage("*Configuration*");
        noPrefix.Should().Throw<ArgumentException>().WithMessage("*KeyPrefix*");
        timeout.Should().Throw<ArgumentException>().WithMessage("*OperationTimeout*");
        mode.Should().Throw<ArgumentException>().WithMessage("*FailureMode*");
    }

    [Fact]
    public async Task Options_ChangedAfterConstruction_HaveNoEffect()
    {
        await using RedisServer server = await RedisServer.StartAsync();
        var options = new RedisBudgetStoreOptions { Configuration = server.ConnectionString, KeyPrefix = "first:" };
        await using var store = new RedisBudgetStore(options);
        options.KeyPrefix = "second:";
        var level = new BudgetLevel("a", new BudgetLimits(day: 100));

        (await store.TryReserveAsync(new BudgetRequest(level, 10, TimeSpan.FromMinutes(5), at: FixedAt))).IsAdmitted.Should().BeTrue();

        await using ConnectionMultiplexer admin = await AdminAsync(server);
        (await admin.GetDatabase().KeyExistsAsync("first:c:a")).Should().BeTrue();
        (await admin.GetDatabase().KeyExistsAsync("second:c:a")).Should().BeFalse();
    }

    private static RedisBudgetStore NewStore(RedisServer server, string prefix, Action<RedisBudgetStoreOptions>? configure = null, TimeProvider? timeProvider = null)
    {
        var options = new RedisBudgetStoreOptions { Configuration = server.ConnectionString, KeyPrefix = prefix, OperationTimeout = TimeSpan.FromSeconds(10) };
        configure?.Invoke(options);
        return new RedisBudgetStore(options, connection: null, timeProvider);
    }

    private static async Task<ConnectionMultiplexer> AdminAsync(RedisServer server)
        => await ConnectionMultiplexer.ConnectAsync(server.ConnectionString + ",allowAdmin=true");

    private static async Task<Dictionary<string, long>> CommandCallsAsync(ConnectionMultiplexer admin)
    {
        IServer srv = admin.GetServer(admin.GetEndPoints()[0]);
        var calls = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (IGrouping<string, KeyValuePair<string, string>> section in await srv.InfoAsync("commandstats"))
        {
            foreach (KeyValuePair<string, string> entry in section)
            {
                // cmdstat_evalsha: calls=12,usec=...,...
                string name = entry.Key.Replace("cmdstat_", string.Empty, StringComparison.Ordinal);
                string count = entry.Value.Split(',')[0].Split('=')[1];
                calls[name] = long.Parse(count, CultureInfo.InvariantCulture);
            }
        }

        return calls;
    }

    private static Dictionary<string, long> Delta(Dictionary<string, long> before, Dictionary<string, long> after)
        => after.Select(kv => (kv.Key, Value: kv.Value - before.GetValueOrDefault(kv.Key)))
            .Where(x => x.Value != 0)
            .ToDictionary(x => x.Key, x => x.Value, StringComparer.Ordinal);
}
