using System.Text;
using Kars.Policy.Budgets;

namespace Kars.Policy.AspNetCore.Tests.Budgets;

/// <summary>Each API's completion bound is read only from the members that API honours: a member the upstream
/// ignores must not lower the hold below what the upstream may generate.</summary>
public sealed class TokenBudgetBoundFieldTests
{
    private const long Default = 333;

    [Theory]
    [InlineData("/v1/chat/completions", """{"model":"m","max_output_tokens":1}""", Default)]
    [InlineData("/v1/chat/completions", """{"model":"m","max_tokens":7}""", 7)]
    [InlineData("/v1/chat/completions", """{"model":"m","max_completion_tokens":8}""", 8)]
    [InlineData("/v1/completions", """{"model":"m","max_completion_tokens":1}""", Default)]
    [InlineData("/v1/completions", """{"model":"m","max_output_tokens":1}""", Default)]
    [InlineData("/v1/completions", """{"model":"m","max_tokens":9}""", 9)]
    [InlineData("/v1/responses", """{"model":"m","max_tokens":1}""", Default)]
    [InlineData("/v1/responses", """{"model":"m","max_completion_tokens":1}""", Default)]
    [InlineData("/v1/responses", """{"model":"m","max_output_tokens":11}""", 11)]
    [InlineData("/v1/messages", """{"model":"m","max_completion_tokens":1}""", Default)]
    [InlineData("/v1/messages", """{"model":"m","max_output_tokens":1}""", Default)]
    [InlineData("/v1/messages", """{"model":"m","max_tokens":12}""", 12)]
    public async Task BoundReadOnlyFromTheMembersTheApiHonours(string path, string body, long bound)
    {
        long? held = null;
        BudgetMeter? meter = null;
        await using var gate = await GateHost.StartAsync(
            async ctx =>
            {
                held = (await meter!.GetStatusAsync(GateHost.Key)).Windows.Single(w => w.Window == BudgetWindow.Day).Held;
                await Upstream.Json("""{"usage":{"total_tokens":3}}""")(ctx);
            },
            configure: o => o.DefaultCompletionTokens = Default);
        meter = gate.Meter;

        using var response = await gate.Client.PostAsync(path, GateHost.Json(body));

        held.Should().Be(((Encoding.UTF8.GetByteCount(body) + 3) / 4) + bound);
    }
}

/// <summary>Requests whose spend one hold cannot bound are refused before anything is reserved.</summary>
public sealed class TokenBudgetUnboundedRequestTests
{
    [Theory]
    [InlineData("/v1/chat/completions", """{"model":"m","max_tokens":10,"n":2}""")]
    [InlineData("/v1/chat/completions", """{"model":"m","max_tokens":10,"n":1,"n":3}""")]
    [InlineData("/v1/completions", """{"model":"m","max_tokens":10,"best_of":4}""")]
    [InlineData("/v1/completions", """{"model":"m","max_tokens":10,"n":5}""")]
    [InlineData("/v1/responses", """{"model":"m","max_output_tokens":10,"background":true}""")]
    [InlineData("/v1/chat/completions", """{"model":"m","n":"2"}""")]
    public async Task MoreThanOneCompletionOrBackground_400NothingReserved(string path, string body)
    {
        int forwarded = 0;
        await using var gate = await GateHost.StartAsync(ctx =>
        {
            Interlocked.Increment(ref forwarded);
            return Upstream.Json("""{"usage":{"total_tokens":1}}""")(ctx);
        });

        using var response = await gate.Client.PostAsync(path, GateHost.Json(body));

        response.StatusCode.Should().Be(System.Net.HttpStatusCode.BadRequest);
        forwarded.Should().Be(0);
        (await gate.DayAsync()).Should().Be((0L, 0L));
    }

    [Theory]
    [InlineData("/v1/chat/completions", """{"model":"m","max_tokens":10,"n":1}""")]
    [InlineData("/v1/completions", """{"model":"m","max_tokens":10,"n":1,"best_of":1}""")]
    [InlineData("/v1/responses", """{"model":"m","max_output_tokens":10,"background":false}""")]
    public async Task OneCompletionInTheForeground_Forwarded(string path, string body)
    {
        await using var gate = await GateHost.StartAsync(Upstream.Json("""{"usage":{"total_tokens":1}}"""));

        using var response = await gate.Client.PostAsync(path, GateHost.Json(body));

        response.StatusCode.Should().Be(System.Net.HttpStatusCode.OK);
        (await gate.DayAsync()).Should().Be((1L, 0L));
    }
}
