using System.Net;
using System.Net.Http;
using System.Text.Json;
using FluentAssertions;
using Xunit;

namespace Kars.Policy.AspNetCore.Tests.Budgets;

/// <summary>
/// A request that names no completion bound is forwarded with the bound its hold assumed (the default completion
/// tokens here), so an upstream cannot generate more than the hold charged when the response ends without usage.
/// </summary>
public sealed class TokenBudgetWrittenBoundTests
{
    private const string Usage = """{"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2,"input_tokens":1,"output_tokens":1}}""";

    [Theory]
    [InlineData("/v1/chat/completions", """{"model":"m","messages":[{"role":"user","content":"hi"}]}""", "max_completion_tokens")]
    [InlineData("/v1/completions", """{"model":"m","prompt":"hi"}""", "max_tokens")]
    [InlineData("/v1/responses", """{"model":"m","input":"hi"}""", "max_output_tokens")]
    [InlineData("/v1/responses", """{"model":"m","max_output_tokens":null,"input":"hi"}""", "max_output_tokens")]
    [InlineData("/v1/chat/completions", """{"model":"m","max_completion_tokens":null,"stream":true,"messages":[]}""", "max_completion_tokens")]
    public async Task NoBound_TheHoldsBoundIsWrittenIntoTheForwardedBody(string path, string body, string member)
    {
        await using GateHost gate = await GateHost.StartAsync(Upstream.Json(Usage), configure: o => o.DefaultCompletionTokens = 777);

        using HttpResponseMessage response = await gate.Client.PostAsync(path, GateHost.Json(body));

        response.StatusCode.Should().Be(HttpStatusCode.OK);
        using JsonDocument forwarded = JsonDocument.Parse(gate.LastUpstreamBody!);
        forwarded.RootElement.EnumerateObject().Count(p => p.Name == member).Should().Be(1, "the bound is set once, never duplicated");
        forwarded.RootElement.GetProperty(member).GetInt64().Should().Be(777);
        forwarded.RootElement.GetProperty("model").GetString().Should().Be("m");
    }

    [Theory]
    [InlineData("/v1/chat/completions", """{"model":"m","max_tokens":12,"messages":[]}""")]
    [InlineData("/v1/responses", """{"model":"m","max_output_tokens":12,"input":"hi"}""")]
    [InlineData("/v1/embeddings", """{"model":"m","input":"hi"}""")]
    public async Task BoundGivenOrNoCompletion_TheBodyIsForwardedAsSent(string path, string body)
    {
        await using GateHost gate = await GateHost.StartAsync(Upstream.Json(Usage));

        using HttpResponseMessage response = await gate.Client.PostAsync(path, GateHost.Json(body));

        response.StatusCode.Should().Be(HttpStatusCode.OK);
        gate.LastUpstreamBody.Should().Be(body);
    }
}
