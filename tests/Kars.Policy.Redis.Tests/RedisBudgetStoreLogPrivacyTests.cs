using System.Globalization;
using Kars.Policy.Budgets;
using Kars.Policy.Redis.Tests.Infrastructure;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using StackExchange.Redis;

namespace Kars.Policy.Redis.Tests;

/// <summary>The store's failure paths log and throw without the budget key, the Redis key built from it or the server
/// endpoint (budget keys may be API keys or tenant ids; StackExchange.Redis puts the command's key and the endpoint in
/// its exception messages). Each test runs its own redis-server.</summary>
public sealed class RedisBudgetStoreLogPrivacyTests
{
    private const string SecretKey = "sk-live-7f3a9c1e5b";

    [Theory]
    [InlineData(RedisBudgetFailureMode.Open)]
    [InlineData(RedisBudgetFailureMode.Closed)]
    public async Task TryReserveAsync_RedisDown_LogsAndErrorsNameNoKeyNorEndpoint(RedisBudgetFailureMode mode)
    {
        await using RedisServer server = await RedisServer.StartAsync();
        var logs = new FakeLogCollector();
        using var factory = LoggerFactory.Create(b => b.AddProvider(new FakeLoggerProvider(logs)));
        await using var store = NewStore(server, mode, factory);
        var level = new BudgetLevel(SecretKey, new BudgetLimits(day: 1_000));
        (await store.TryReserveAsync(new BudgetRequest(level, 10, TimeSpan.FromMinutes(5)))).IsAdmitted.Should().BeTrue();

        await server.KillAsync();
        Exception? thrown = null;
        try
        {
            BudgetDecision decision = await store.TryReserveAsync(new BudgetRequest(level, 20, TimeSpan.FromMinutes(5)));
            decision.IsUnmetered.Should().Be(mode == RedisBudgetFailureMode.Open);
        }
        catch (BudgetStoreUnavailableException ex)
        {
            thrown = ex;
        }

        (thrown is null).Should().Be(mode == RedisBudgetFailureMode.Open);
        logs.GetSnapshot().Select(e => e.Id.Id).Should().Contain(4001);
        if (mode == RedisBudgetFailureMode.Open)
        {
            logs.GetSnapshot().Select(e => e.Id.Id).Should().Contain(4002);
        }

        AssertNoSecret(logs, server);
        if (thrown is not null)
        {
            thrown.Message.Should().NotContain(SecretKey).And.NotContain(Endpoint(server));
            thrown.InnerException.Should().NotBeNull("the client's exception stays available to code that inspects it");
        }
    }

    [Fact]
    public async Task TryReserveAsync_WrongTypeAtCounterKey_LogsAndErrorNameNoKey()
    {
        await using RedisServer server = await RedisServer.StartAsync();
        await using (ConnectionMultiplexer admin = await ConnectionMultiplexer.ConnectAsync(server.ConnectionString))
        {
            await admin.GetDatabase().StringSetAsync("k:c:" + SecretKey, "not a hash");
        }

        var logs = new FakeLogCollector();
        using var factory = LoggerFactory.Create(b => b.AddProvider(new FakeLoggerProvider(logs)));
        await using var store = NewStore(server, RedisBudgetFailureMode.Closed, factory);
        var level = new BudgetLevel(SecretKey, new BudgetLimits(day: 1_000));

        var reserve = async () => await store.TryReserveAsync(new BudgetRequest(level, 10, TimeSpan.FromMinutes(5)));

        var thrown = (await reserve.Should().ThrowAsync<BudgetStateCorruptException>()).Which;
        thrown.Message.Should().Contain("WRONGTYPE").And.NotContain(SecretKey);
        logs.GetSnapshot().Should().ContainSingle(e => e.Id.Id == 4005).Which.Message.Should().Contain("WRONGTYPE");
        AssertNoSecret(logs, server);
    }

    [Theory]
    [InlineData("WRONGTYPE Operation against a key holding the wrong kind of value", "WRONGTYPE")]
    [InlineData("LOADING Redis is loading the dataset in memory", "LOADING")]
    [InlineData("ERR user_script:1: Script attempted to access key k:c:sk-1", "ERR")]
    [InlineData("sk-1 is not a code", "-")]
    [InlineData("NOTANERRORCODEBUTAVERYLONGWORDTHATGOESON and more", "-")]
    [InlineData("", "-")]
    public void ErrorCode_ServerError_OnlyTheLeadingCode(string message, string expected)
        => RedisBudgetStore.ErrorCode(new RedisServerException(message)).Should().Be(expected);

    private static void AssertNoSecret(FakeLogCollector logs, RedisServer server)
    {
        // Everything a provider could print: the message, every structured value, the exception's full text.
        var all = logs.GetSnapshot()
            .Select(r => $"{r.Id.Id} {r.Message} {string.Join(" ", r.StructuredState?.Select(p => $"{p.Key}={p.Value}") ?? [])} {r.Exception}")
            .ToList();
        all.Should().NotBeEmpty();
        all.Should().AllSatisfy(line => line.Should().NotContain(SecretKey).And.NotContain(Endpoint(server)));
    }

    private static string Endpoint(RedisServer server) => string.Create(CultureInfo.InvariantCulture, $":{server.Port}");

    private static RedisBudgetStore NewStore(RedisServer server, RedisBudgetFailureMode mode, ILoggerFactory logs)
    {
        var options = new RedisBudgetStoreOptions
        {
            Configuration = server.ConnectionString,
            KeyPrefix = "k:",
            FailureMode = mode,
            OperationTimeout = TimeSpan.FromSeconds(2),
        };
        return new RedisBudgetStore(options, connection: null, timeProvider: null, loggerFactory: logs);
    }
}
