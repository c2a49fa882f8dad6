using System.Net;
using System.Net.Http;
using System.Text;
using System.Text.Json;

namespace Kars.Policy.AspNetCore.Tests.Budgets;

/// <summary>Escaped member names that do not unescape to valid UTF-16 (a lone surrogate): System.Text.Json throws
/// <see cref="InvalidOperationException"/> when comparing them, which must never escape the gate.</summary>
public sealed class TokenBudgetEscapeTests
{
    private const string ChatBody = """{"model":"m","messages":[{"role":"user","content":"hello there"}],"max_tokens":100}""";

    private static long Hold(string body, long bound) => (Encoding.UTF8.GetByteCount(body) + 3) / 4 + bound;

    [Theory]
    [InlineData("""{"\uD800abcd":1}""")]
    [InlineData("""{"model":"m","\uDC00abcdefghijklmnopqrstu":5}""")]
    [InlineData("""{"model":"m","stream":true,"stream_options":{"\uD800abcdefg":true}}""")]
    public async Task RequestMemberNameWithLoneSurrogate_400NothingReserved(string body)
    {
        int forwarded = 0;
        await using var gate = await GateHost.StartAsync(ctx =>
        {
            Interlocked.Increment(ref forwarded);
            return Upstream.Json("""{"usage":{"total_tokens":1}}""")(ctx);
        });

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(body));

        response.StatusCode.Should().Be(HttpStatusCode.BadRequest);
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error").GetProperty("code").GetString().Should().Be("invalid_request_body");
        forwarded.Should().Be(0);
        (await gate.DayAsync()).Should().Be((0L, 0L));
    }

    [Fact]
    public void ParserRefusesLoneSurrogateName_WithoutThrowing()
        => InferenceRequestBody.TryRead("""{"\uD800abcd":1}"""u8, out _).Should().NotBeNull();

    [Fact]
    public async Task JsonResponseMemberNameWithLoneSurrogate_DeliveredAndHoldCharged()
    {
        const string upstream = """{"\uD800a":1,"\uD800ab":2,"\uD800abcd":3,"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}""";
        await using var gate = await GateHost.StartAsync(Upstream.Json(upstream));

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(ChatBody));

        response.StatusCode.Should().Be(HttpStatusCode.OK);
        (await response.Content.ReadAsStringAsync()).Should().Be(upstream);
        (await gate.DayAsync()).Should().Be((Hold(ChatBody, 100), 0L), "usage that cannot be read is no evidence: the hold is charged and the lease is not left held");
    }

    [Fact]
    public async Task StreamEventMemberNameWithLoneSurrogate_DeliveredAndHoldCharged()
    {
        const string streamBody = """{"model":"m","messages":[{"role":"user","content":"hello there"}],"max_tokens":100,"stream":true}""";
        await using var gate = await GateHost.StartAsync(Upstream.Sse(
            "data: {\"\\uD800a\":1,\"\\uD800ab\":2,\"choices\":[]}\n\n",
            "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":13}}\n\n",
            "data: [DONE]\n\n"));

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(streamBody));
        string text = await response.Content.ReadAsStringAsync();

        response.StatusCode.Should().Be(HttpStatusCode.OK);
        text.Should().EndWith("data: [DONE]\n\n");
        long used = (await gate.DayAsync()).Used;
        used.Should().Be(Hold(streamBody, 100));
    }
}
