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
