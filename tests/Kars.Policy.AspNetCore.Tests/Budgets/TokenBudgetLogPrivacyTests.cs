using System.Net;
using Kars.Policy.Budgets;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;

namespace Kars.Policy.AspNetCore.Tests.Budgets;

/// <summary>The gate's store-failure events (5302, 5305) name the exception types only: a store's exception text
/// (its own message or its client's inner one) may carry the budget key or the server endpoint.</summary>
public sealed class TokenBudgetLogPrivacyTests
{
    private const string SecretKey = "sk-live-4e1d77c0aa";
    private const string Endpoint = "redis.internal.example:6380";
    private const string Body = """{"model":"m","messages":[{"role":"user","content":"hello there"}],"max_tokens":100}""";

    [Fact]
    public async Task StoreUnavailable_LogNamesTypesNotTheStoreText()
    {
        var logs = new FakeLogCollector();
        using var factory = LoggerFactory.Create(b => b.AddProvider(new FakeLoggerProvider(logs)));
        await using var gate = await GateHost.StartAsync(Upstream.Json("{}"), store: new UnavailableStore(Leak), logging: factory);
        gate.Client.DefaultRequestHeaders.Add("x-test-key", SecretKey);

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(Body));

        response.StatusCode.Should().Be(HttpStatusCode.ServiceUnavailable);
        var entry = logs.GetSnapshot().Should().ContainSingle(e => e.Id.Id == 5302).Which;
        entry.Message.Should().Contain("BudgetStoreUnavailableException/InvalidOperationException");
        AssertNoSecret(logs);
    }

    [Fact]
    public async Task SettlementFailed_LogNamesTypesNotTheStoreText()
    {
        var logs = new FakeLogCollector();
        using var factory = LoggerFactory.Create(b => b.AddProvider(new FakeLoggerProvider(logs)));
        await using var gate = await GateHost.StartAsync(Upstream.Json("""{"usage":{"total_tokens":5}}"""), store: new SettleFailsStore(Leak), logging: factory);
        gate.Client.DefaultRequestHeaders.Add("x-test-key", SecretKey);

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(Body));

        response.StatusCode.Should().Be(HttpStatusCode.OK);
        logs.GetSnapshot().Should().ContainSingle(e => e.Id.Id == 5305);
        AssertNoSecret(logs);
    }

    private static void AssertNoSecret(FakeLogCollector logs)
        => logs.GetSnapshot()
            .Select(r => $"{r.Id.Id} {r.Message} {string.Join(" ", r.StructuredState?.Select(p => $"{p.Key}={p.Value}") ?? [])} {r.Exception}")
            .Should().NotBeEmpty().And.AllSatisfy(line => line.Should().NotContain(SecretKey).And.NotContain(Endpoint));

    private static BudgetStoreUnavailableException Leak()
        => new($"could not reach {Endpoint} for key {SecretKey}", new InvalidOperationException($"EVALSHA kars:budget:c:{SecretKey} on {Endpoint}"));
}
