using System.Net;
using System.Net.Http;
using System.Text;
using System.Text.Json;
using Kars.Policy.Budgets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace Kars.Policy.AspNetCore.Tests.Budgets;

/// <summary>The token-budget gate through TestServer, against a fake upstream.</summary>
public sealed class TokenBudgetMiddlewareTests
{
    private const string ChatBody = """{"model":"m","messages":[{"role":"user","content":"hello there"}],"max_tokens":100}""";
    private const string StreamChatBody = """{"model":"m","messages":[{"role":"user","content":"hello there"}],"max_tokens":100,"stream":true}""";

    private static long Hold(string body, long bound) => (Encoding.UTF8.GetByteCount(body) + 3) / 4 + bound;

    private static async Task<JsonElement> ErrorOf(HttpResponseMessage response)
        => JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("error");

    [Fact]
    public async Task JsonUsage_SettlesExact()
    {
        await using var gate = await GateHost.StartAsync(Upstream.Json("""{"id":"x","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42}}"""));

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(ChatBody));

        response.StatusCode.Should().Be(HttpStatusCode.OK);
        (await gate.DayAsync()).Should().Be((42L, 0L));
    }

    [Fact]
    public async Task JsonWithoutUsage_ChargesHold()
    {
        await using var gate = await GateHost.StartAsync(Upstream.Json("""{"id":"x","choices":[]}"""));

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(ChatBody));

        response.StatusCode.Should().Be(HttpStatusCode.OK);
        (await gate.DayAsync()).Should().Be((Hold(ChatBody, 100), 0L));
    }

    [Fact]
    public async Task UpstreamErrorWithoutUsage_ChargesHold()
    {
        await using var gate = await GateHost.StartAsync(Upstream.Json("""{"error":{"message":"bad","type":"invalid_request_error"}}""", 400));

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(ChatBody));

        response.StatusCode.Should().Be(HttpStatusCode.BadRequest);
        (await gate.DayAsync()).Should().Be((Hold(ChatBody, 100), 0L));
    }

    [Theory]
    [InlineData(5_000L, 5_000L)]
    [InlineData(3L, null)]
    public async Task UpstreamErrorWithUsage_ChargesTheReportedUsageOnlyAboveTheHold(long reported, long? charged)
    {
        // A complete body with an error is no clean evidence, but the usage it reports is a floor (read in the same
        // single parse of the body as the clean usage).
        await using var gate = await GateHost.StartAsync(Upstream.Json($$$"""{"error":{"message":"bad","type":"server_error"},"usage":{"prompt_tokens":{{{reported}}},"completion_tokens":0,"total_tokens":{{{reported}}}}}""", 500));

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(ChatBody));

        response.StatusCode.Should().Be(HttpStatusCode.InternalServerError);
        Hold(ChatBody, 100).Should().BeInRange(4, 4_999);
        (await gate.DayAsync()).Should().Be((charged ?? Hold(ChatBody, 100), 0L));
    }

    [Fact]
    public async Task Stream_IncludeUsageSwitchedOn_AndSettledFromUsageChunk()
    {
        await using var gate = await GateHost.StartAsync(Upstream.Sse(
            "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n",
            "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":13}}\n\n",
            "data: [DONE]\n\n"));

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(StreamChatBody));
        string text = await response.Content.ReadAsStringAsync();

        text.Should().EndWith("data: [DONE]\n\n");
        var forwarded = JsonDocument.Parse(gate.LastUpstreamBody!).RootElement;
        forwarded.GetProperty("stream_options").GetProperty("include_usage").GetBoolean().Should().BeTrue();
        gate.LastUpstreamBody.Should().StartWith(StreamChatBody[..^1], "every other byte is forwarded as sent");
        (await gate.DayAsync()).Should().Be((13L, 0L));
    }

    [Fact]
    public async Task Stream_WithoutUsage_ChargesHold()
    {
        await using var gate = await GateHost.StartAsync(Upstream.Sse(
            "data: {\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n",
            "data: [DONE]\n\n"));

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(StreamChatBody));
        await response.Content.ReadAsStringAsync();

        (await gate.DayAsync()).Should().Be((Hold(StreamChatBody, 100), 0L));
    }

    [Fact]
    public async Task Stream_CutBeforeDone_ChargesHold()
    {
        await using var gate = await GateHost.StartAsync(Upstream.Sse(
            "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":13}}\n\n"));

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(StreamChatBody));
        await response.Content.ReadAsStringAsync();

        (await gate.DayAsync()).Should().Be((Hold(StreamChatBody, 100), 0L));
    }

    [Fact]
    public async Task Stream_MalformedEvent_ChargesHold()
    {
        await using var gate = await GateHost.StartAsync(Upstream.Sse(
            "data: {\"id\":\"c\",\"choices\":[\n\n",
            "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"total_tokens\":13}}\n\n",
            "data: [DONE]\n\n"));

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(StreamChatBody));
        await response.Content.ReadAsStringAsync();

        (await gate.DayAsync()).Should().Be((Hold(StreamChatBody, 100), 0L));
    }

    [Fact]
    public async Task Responses_Stream_SettlesFromResponseCompleted()
    {
        const string body = """{"model":"m","input":"hi","max_output_tokens":50,"stream":true}""";
        await using var gate = await GateHost.StartAsync(Upstream.Sse(
            "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"r\",\"usage\":null}}\n\n",
            "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\n",
            "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r\",\"usage\":{\"input_tokens\":7,\"output_tokens\":3,\"total_tokens\":10}}}\n\n"));

        using var response = await gate.Client.PostAsync("/v1/responses", GateHost.Json(body));
        await response.Content.ReadAsStringAsync();

        gate.LastUpstreamBody.Should().Be(body, "the Responses API takes no stream_options");
        (await gate.DayAsync()).Should().Be((10L, 0L));
    }

    [Fact]
    public async Task Responses_Json_SettlesExact()
    {
        await using var gate = await GateHost.StartAsync(Upstream.Json("""{"id":"r","object":"response","usage":{"input_tokens":20,"output_tokens":5,"total_tokens":25}}"""));

        using var response = await gate.Client.PostAsync("/v1/responses", GateHost.Json("""{"model":"m","input":"hi"}"""));

        (await gate.DayAsync()).Should().Be((25L, 0L));
    }

    [Fact]
    public async Task Anthropic_Stream_SumsStartAndDeltaUsage()
    {
        const string body = """{"model":"claude","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}""";
        await using var gate = await GateHost.StartAsync(Upstream.Sse(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":3,\"cache_read_input_tokens\":2,\"output_tokens\":1}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
            "event: ping\ndata: {\"type\": \"ping\"}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));

        using var response = await gate.Client.PostAsync("/v1/messages", GateHost.Json(body));
        await response.Content.ReadAsStringAsync();

        gate.LastUpstreamBody.Should().Be(body);
        (await gate.DayAsync()).Should().Be((25L + 3 + 2 + 15, 0L));
    }

    [Fact]
    public async Task Anthropic_StreamWithErrorEvent_ChargesHold()
    {
        const string body = """{"model":"claude","max_tokens":64,"stream":true,"messages":[]}""";
        await using var gate = await GateHost.StartAsync(Upstream.Sse(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n",
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));

        using var response = await gate.Client.PostAsync("/v1/messages", GateHost.Json(body));
        await response.Content.ReadAsStringAsync();

        (await gate.DayAsync()).Should().Be((Hold(body, 64), 0L));
    }

    // The hold's prompt part is an estimate from the body's bytes: an image, a file id or server-side history can make
    // the input the upstream reports larger than the whole hold. A response that ends without clean usage then charges
    // what the upstream already reported, never less than the hold.
    [Theory]
    [InlineData("cut")]
    [InlineData("error")]
    public async Task Anthropic_StreamUncleanAfterUsageAboveHold_ChargesTheReportedUsage(string ending)
    {
        const string body = """{"model":"claude","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}""";
        string last = ending == "cut"
            ? "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n"
            : "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n";
        await using var gate = await GateHost.StartAsync(Upstream.Sse(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5000,\"output_tokens\":1}}}\n\n",
            last));

        using var response = await gate.Client.PostAsync("/v1/messages", GateHost.Json(body));
        await response.Content.ReadAsStringAsync();

        Hold(body, 64).Should().BeLessThan(5_001);
        (await gate.DayAsync()).Should().Be((5_001L, 0L));
    }

    [Fact]
    public async Task Chat_StreamErrorAfterUsageChunkAboveHold_ChargesTheReportedUsage()
    {
        await using var gate = await GateHost.StartAsync(Upstream.Sse(
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4000,\"completion_tokens\":10,\"total_tokens\":4010}}\n\n",
            "data: {\"error\":{\"message\":\"upstream failed\",\"type\":\"server_error\"}}\n\n"));

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(StreamChatBody));
        await response.Content.ReadAsStringAsync();

        (await gate.DayAsync()).Should().Be((4_010L, 0L));
    }

    [Fact]
    public async Task Anthropic_UpstreamThrowsAfterUsageAboveHold_ChargesTheReportedUsage()
    {
        const string body = """{"model":"claude","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}""";
        await using var gate = await GateHost.StartAsync(async ctx =>
        {
            await Upstream.Sse("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5000,\"output_tokens\":1}}}\n\n")(ctx);
            throw new InvalidOperationException("the upstream connection broke");
        });

        Func<Task> call = async () =>
        {
            using var response = await gate.Client.PostAsync("/v1/messages", GateHost.Json(body));
            await response.Content.ReadAsStringAsync();
        };

        try
        {
            await call();
        }
        catch (Exception ex) when (ex is HttpRequestException or IOException or InvalidOperationException)
        {
            // TestServer surfaces the upstream's exception to the client; the charge is what is checked.
        }

        (await gate.DayAsync()).Should().Be((5_001L, 0L));
    }

    [Fact]
    public async Task Anthropic_StreamCutAfterUsageBelowHold_ChargesTheHold()
    {
        const string body = """{"model":"claude","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}""";
        await using var gate = await GateHost.StartAsync(Upstream.Sse(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n"));

        using var response = await gate.Client.PostAsync("/v1/messages", GateHost.Json(body));
        await response.Content.ReadAsStringAsync();

        (await gate.DayAsync()).Should().Be((Hold(body, 64), 0L));
    }

    [Fact]
    public async Task Anthropic_Json_SettlesWithCacheTokens()
    {
        await using var gate = await GateHost.StartAsync(Upstream.Json("""{"id":"m","type":"message","usage":{"input_tokens":10,"cache_creation_input_tokens":null,"cache_read_input_tokens":6,"output_tokens":4}}"""));

        using var response = await gate.Client.PostAsync("/v1/messages", GateHost.Json("""{"model":"c","max_tokens":64,"messages":[]}"""));

        (await gate.DayAsync()).Should().Be((20L, 0L));
    }

    [Fact]
    public async Task Embeddings_HoldPromptOnly_SettleFromUsage()
    {
        const string body = """{"model":"e","input":"some text to embed"}""";
        long? held = null;
        BudgetMeter? meter = null;
        await using var gate = await GateHost.StartAsync(async ctx =>
        {
            held = (await meter!.GetStatusAsync(GateHost.Key)).Windows.Single(w => w.Window == BudgetWindow.Day).Held;
            await Upstream.Json("""{"object":"list","data":[],"usage":{"prompt_tokens":5,"total_tokens":5}}""")(ctx);
        });
        meter = gate.Meter;

        using var response = await gate.Client.PostAsync("/v1/embeddings", GateHost.Json(body));

        held.Should().Be(Hold(body, 0), "embeddings produce no completion tokens");
        (await gate.DayAsync()).Should().Be((5L, 0L));
    }

    [Fact]
    public async Task BudgetExceeded_429WithRetryAfterHeadersAndKarsBody()
    {
        await using var gate = await GateHost.StartAsync(Upstream.Json("""{"usage":{"total_tokens":100}}"""), new BudgetPolicy(new BudgetLimits(hour: 1_000, day: 200)));
        using var first = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(ChatBody));
        first.StatusCode.Should().Be(HttpStatusCode.OK);
        gate.LastUpstreamBody.Should().NotBeNull();
        string forwardedBefore = gate.LastUpstreamBody!;

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(ChatBody + " "));

        response.StatusCode.Should().Be(HttpStatusCode.TooManyRequests);
        response.Content.Headers.ContentType!.MediaType.Should().Be("application/json");
        var error = await ErrorOf(response);
        error.GetProperty("type").GetString().Should().Be("token_budget_exceeded");
        error.GetProperty("code").GetString().Should().Be("budget_exceeded");
        error.GetProperty("message").GetString().Should().NotBeNullOrEmpty();
        error.EnumerateObject().Select(p => p.Name).Should().Equal("message", "type", "code");

        // 10:20:30 on 2026-03-10: the day ends in 13 h 39 min 30 s.
        const long toMidnight = (13 * 3600) + (39 * 60) + 30;
        response.Headers.GetValues("Retry-After").Single().Should().Be("49170");
        response.Headers.RetryAfter!.Delta.Should().Be(TimeSpan.FromSeconds(toMidnight));
        response.Headers.GetValues("x-ratelimit-limit-tokens").Single().Should().Be("200");
        response.Headers.GetValues("x-ratelimit-remaining-tokens").Single().Should().Be("100");
        response.Headers.GetValues("x-ratelimit-reset-tokens").Single().Should().Be("13h39m30s");
        response.Headers.GetValues("RateLimit-Policy").Single().Should().Be("\"hour\";q=1000;qu=\"tokens\";w=3600, \"day\";q=200;qu=\"tokens\";w=86400");
        response.Headers.GetValues("RateLimit").Single().Should().Be($"\"day\";r=100;t={toMidnight}");
        gate.LastUpstreamBody.Should().BeSameAs(forwardedBefore, "a rejected request is not forwarded");
        (await gate.DayAsync()).Should().Be((100L, 0L));
    }

    [Fact]
    public async Task RequestLargerThanWindow_429WithoutRetryAfter()
    {
        await using var gate = await GateHost.StartAsync(Upstream.Json("{}"), new BudgetPolicy(new BudgetLimits(day: 50)));

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(ChatBody));

        response.StatusCode.Should().Be(HttpStatusCode.TooManyRequests);
        (await ErrorOf(response)).GetProperty("code").GetString().Should().Be("budget_exceeded");
        response.Headers.Contains("Retry-After").Should().BeFalse("no wait makes a request larger than the whole window fit");
        gate.LastUpstreamBody.Should().BeNull();
    }

    [Fact]
    public async Task Admitted_HeadersShowTightestWindowAfterReservation()
    {
        await using var gate = await GateHost.StartAsync(Upstream.Json("""{"usage":{"total_tokens":1}}"""), new BudgetPolicy(new BudgetLimits(hour: 1_000, day: 100_000)));

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(ChatBody));

        response.StatusCode.Should().Be(HttpStatusCode.OK);
        long remaining = 1_000 - Hold(ChatBody, 100);
        response.Headers.GetValues("x-ratelimit-limit-tokens").Single().Should().Be("1000");
        response.Headers.GetValues("x-ratelimit-remaining-tokens").Single().Should().Be(remaining.ToString(System.Globalization.CultureInfo.InvariantCulture));
        response.Headers.GetValues("x-ratelimit-reset-tokens").Single().Should().Be("39m30s");
        response.Headers.GetValues("RateLimit").Single().Should().Be($"\"hour\";r={remaining};t=2370");
        response.Headers.Contains("Retry-After").Should().BeFalse();
    }

    [Fact]
    public async Task UpstreamRateLimitHeaders_AreReplacedByTheGate()
    {
        await using var gate = await GateHost.StartAsync(async ctx =>
        {
            ctx.Response.Headers["x-ratelimit-remaining-tokens"] = "999999";
            await Upstream.Json("""{"usage":{"total_tokens":1}}""")(ctx);
        });

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(ChatBody));

        response.Headers.GetValues("x-ratelimit-remaining-tokens").Single().Should().Be((100_000 - Hold(ChatBody, 100)).ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task PerRequestCap_429KarsBodyWithoutRetryAfter()
    {
        await using var gate = await GateHost.StartAsync(Upstream.Json("{}"), new BudgetPolicy(new BudgetLimits(day: 100_000), perRequestTokens: 64));

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(ChatBody));

        response.StatusCode.Should().Be(HttpStatusCode.TooManyRequests);
        var error = await ErrorOf(response);
        error.GetProperty("type").GetString().Should().Be("token_budget_exceeded");
        error.GetProperty("code").GetString().Should().Be("per_request_tokens_exceeded");
        response.Headers.Contains("Retry-After").Should().BeFalse();
        gate.LastUpstreamBody.Should().BeNull();
        (await gate.DayAsync()).Should().Be((0L, 0L));
    }

    [Fact]
    public async Task PerRequestCap_BoundsRequestWithoutMaxTokens()
    {
        const string body = """{"model":"m","messages":[]}""";
        long? held = null;
        BudgetMeter? meter = null;
        await using var gate = await GateHost.StartAsync(
            async ctx =>
            {
                held = (await meter!.GetStatusAsync(GateHost.Key)).Windows.Single(w => w.Window == BudgetWindow.Day).Held;
                await Upstream.Json("""{"usage":{"total_tokens":3}}""")(ctx);
            },
            new BudgetPolicy(new BudgetLimits(day: 100_000), perRequestTokens: 500));
        meter = gate.Meter;

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(body));

        response.StatusCode.Should().Be(HttpStatusCode.OK);
        held.Should().Be(500, "the completion bound is what the cap leaves after the prompt estimate");
    }

    [Fact]
    public async Task DefaultCompletionBound_UsedWithoutCapOrMaxTokens()
    {
        const string body = """{"model":"m","messages":[]}""";
        long? held = null;
        BudgetMeter? meter = null;
        await using var gate = await GateHost.StartAsync(
            async ctx =>
            {
                held = (await meter!.GetStatusAsync(GateHost.Key)).Windows.Single(w => w.Window == BudgetWindow.Day).Held;
                await Upstream.Json("""{"usage":{"total_tokens":3}}""")(ctx);
            },
            configure: o => o.DefaultCompletionTokens = 333);
        meter = gate.Meter;

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(body));

        held.Should().Be(Hold(body, 333));
    }

    [Fact]
    public async Task LargestBoundOverFieldsAndDuplicates_IsHeld()
    {
        const string body = """{"max_tokens":10,"max_completion_tokens":20,"max_output_tokens":30,"max_tokens":700}""";
        long? held = null;
        BudgetMeter? meter = null;
        await using var gate = await GateHost.StartAsync(async ctx =>
        {
            held = (await meter!.GetStatusAsync(GateHost.Key)).Windows.Single(w => w.Window == BudgetWindow.Day).Held;
            await Upstream.Json("""{"usage":{"total_tokens":3}}""")(ctx);
        });
        meter = gate.Meter;

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(body));

        held.Should().Be(Hold(body, 700));
    }

    [Fact]
    public async Task BodyTooLarge_413()
    {
        await using var gate = await GateHost.StartAsync(Upstream.Json("{}"), configure: o => o.MaxRequestBodyBytes = 64);

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(ChatBody));

        response.StatusCode.Should().Be(HttpStatusCode.RequestEntityTooLarge);
        (await ErrorOf(response)).GetProperty("code").GetString().Should().Be("request_too_large");
        gate.LastUpstreamBody.Should().BeNull();
    }

    [Fact]
    public async Task BodyTooLarge_WithoutContentLength_413()
    {
        await using var gate = await GateHost.StartAsync(Upstream.Json("{}"), configure: o => o.MaxRequestBodyBytes = 64);
        var content = new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(ChatBody)));
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions") { Content = content };
        request.Headers.TransferEncodingChunked = true;

        using var response = await gate.Client.SendAsync(request);

        response.StatusCode.Should().Be(HttpStatusCode.RequestEntityTooLarge);
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("[1,2]")]
    [InlineData("""{"max_tokens":"100"}""")]
    [InlineData("""{"max_tokens":100.5}""")]
    [InlineData("""{"max_tokens":-1}""")]
    [InlineData("""{"max_tokens":1e3}""")]
    [InlineData("""{"a":1} {"b":2}""")]
    [InlineData("""{"a":1,}""")]
    [InlineData("")]
    public async Task InvalidBody_400NothingReserved(string body)
    {
        await using var gate = await GateHost.StartAsync(Upstream.Json("{}"));

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(body));

        response.StatusCode.Should().Be(HttpStatusCode.BadRequest);
        (await ErrorOf(response)).GetProperty("type").GetString().Should().Be("invalid_request_error");
        gate.LastUpstreamBody.Should().BeNull();
        (await gate.DayAsync()).Should().Be((0L, 0L));
    }

    [Fact]
    public async Task StoreUnavailable_503NeverThrows()
    {
        await using var gate = await GateHost.StartAsync(Upstream.Json("{}"), store: new UnavailableStore());

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(ChatBody));

        response.StatusCode.Should().Be(HttpStatusCode.ServiceUnavailable);
        var error = await ErrorOf(response);
        error.GetProperty("code").GetString().Should().Be("budget_store_unavailable");
        gate.LastUpstreamBody.Should().BeNull();
    }

    [Theory]
    [InlineData("""{"usage":{"total_tokens":5}}""")]
    [InlineData("""{"no":"usage"}""")]
    public async Task SettlementStoreFailure_ResponseStillDeliveredNoException(string upstreamBody)
    {
        await using var gate = await GateHost.StartAsync(Upstream.Json(upstreamBody), store: new SettleFailsStore());

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(ChatBody));

        response.StatusCode.Should().Be(HttpStatusCode.OK);
        (await response.Content.ReadAsStringAsync()).Should().Be(upstreamBody);
    }

    [Fact]
    public async Task ObserveMode_AdmitsOverBudgetWithHeaders()
    {
        await using var gate = await GateHost.StartAsync(Upstream.Json("""{"usage":{"total_tokens":70}}"""), new BudgetPolicy(new BudgetLimits(day: 50), mode: BudgetMode.Observe));

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(ChatBody));

        response.StatusCode.Should().Be(HttpStatusCode.OK);
        response.Headers.GetValues("x-ratelimit-limit-tokens").Single().Should().Be("50");
        response.Headers.GetValues("x-ratelimit-remaining-tokens").Single().Should().Be("0");
        (await gate.DayAsync()).Should().Be((70L, 0L));
    }

    [Fact]
    public async Task NullKey_403NothingForwarded()
    {
        await using var gate = await GateHost.StartAsync(Upstream.Json("{}"), configure: o => o.KeyResolver = _ => null);

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(ChatBody));

        response.StatusCode.Should().Be(HttpStatusCode.Forbidden);
        (await ErrorOf(response)).GetProperty("code").GetString().Should().Be("budget_key_missing");
        gate.LastUpstreamBody.Should().BeNull();
    }

    [Fact]
    public async Task OtherPathsAndMethods_PassThroughUnmetered()
    {
        await using var gate = await GateHost.StartAsync(Upstream.Json("{}"));

        using var get = await gate.Client.GetAsync("/v1/chat/completions");
        using var other = await gate.Client.PostAsync("/v1/models", GateHost.Json("not json"));

        get.StatusCode.Should().Be(HttpStatusCode.OK);
        other.StatusCode.Should().Be(HttpStatusCode.OK);
        get.Headers.Contains("x-ratelimit-limit-tokens").Should().BeFalse();
        (await gate.DayAsync()).Should().Be((0L, 0L));
    }

    [Fact]
    public async Task UpstreamThrows_ChargesHold()
    {
        await using var gate = await GateHost.StartAsync(_ => throw new InvalidOperationException("upstream bug"));

        Func<Task> call = async () =>
        {
            using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(ChatBody));
        };

        await call.Should().ThrowAsync<Exception>();
        (await gate.DayAsync()).Should().Be((Hold(ChatBody, 100), 0L));
    }

    [Fact]
    public async Task SixtyFourCallers_NeverOverspend()
    {
        const long limit = 20_000;
        var random = new Random(1234);
        await using var gate = await GateHost.StartAsync(
            async ctx =>
            {
                // Usage up to the whole hold of the request (never more: the test is about admission).
                int used;
                lock (random)
                {
                    used = random.Next(1, 150);
                }

                await Upstream.Json("{\"usage\":{\"total_tokens\":" + used.ToString(System.Globalization.CultureInfo.InvariantCulture) + "}}")(ctx);
            },
            new BudgetPolicy(new BudgetLimits(day: limit)));

        int admitted = 0;
        int rejected = 0;
        await Parallel.ForEachAsync(Enumerable.Range(0, 64), new ParallelOptions { MaxDegreeOfParallelism = 64 }, async (i, ct) =>
        {
            for (int n = 0; n < 10; n++)
            {
                using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(ChatBody), ct);
                if (response.StatusCode == HttpStatusCode.OK)
                {
                    Interlocked.Increment(ref admitted);
                }
                else
                {
                    response.StatusCode.Should().Be(HttpStatusCode.TooManyRequests);
                    Interlocked.Increment(ref rejected);
                }
            }
        });

        var (used, held) = await gate.DayAsync();
        used.Should().BeLessThanOrEqualTo(limit);
        held.Should().Be(0);
        (admitted + rejected).Should().Be(640);
        rejected.Should().BeGreaterThan(0, "640 requests holding 100+ tokens each exceed 20,000");
        admitted.Should().BeGreaterThan(0);
    }

    [Theory]
    [InlineData(null, 5L)]
    [InlineData(1, -1L)]
    public async Task LeaseDuration_ExpiredLeaseChargedItsHold(int? leaseMinutes, long expected)
    {
        GateHost? self = null;
        await using var gate = await GateHost.StartAsync(
            async ctx =>
            {
                // The response takes two minutes: longer than a one-minute lease, shorter than the policy's ten.
                self!.Time.Advance(TimeSpan.FromMinutes(2));
                await Upstream.Json("""{"usage":{"total_tokens":5}}""")(ctx);
            },
            configure: o => o.LeaseDuration = leaseMinutes is { } m ? TimeSpan.FromMinutes(m) : null);
        self = gate;

        using var response = await gate.Client.PostAsync("/v1/chat/completions", GateHost.Json(ChatBody));

        response.StatusCode.Should().Be(HttpStatusCode.OK);
        (await gate.DayAsync()).Should().Be((expected < 0 ? Hold(ChatBody, 100) : expected, 0L));
    }

    [Fact]
    public void Options_EveryProblemReportedAtOnce()
    {
        var options = new KarsTokenBudgetOptions { MaxRequestBodyBytes = 0, MaxEventBytes = -1, DefaultCompletionTokens = -5, LeaseDuration = TimeSpan.Zero };
        options.Routes.Add("v1/bad");

        Action build = () => KarsTokenBudgetApplicationBuilderExtensions.Validated(options);

        build.Should().Throw<ArgumentException>()
            .Which.Message.Should().ContainAll("KeyResolver", "MaxRequestBodyBytes", "MaxEventBytes", "DefaultCompletionTokens", "LeaseDuration", "v1/bad");
    }

    [Fact]
    public void NoMeter_FailsAtStartWithClearMessage()
    {
        var app = new ApplicationBuilder(new ServiceCollection().BuildServiceProvider());

        Action build = () => app.UseKarsTokenBudget(new KarsTokenBudgetOptions { KeyResolver = _ => "k" });

        build.Should().Throw<InvalidOperationException>().WithMessage("*BudgetMeter*");
    }

    [Fact]
    public async Task MeterFromServices_IsUsed()
    {
        var store = new InMemoryBudgetStore(GateHost.Clock());
        var meter = new BudgetMeter(store, new BudgetPolicy(new BudgetLimits(day: 10)));
        var services = new ServiceCollection().AddSingleton(meter).BuildServiceProvider();
        var app = new ApplicationBuilder(services);
        app.UseKarsTokenBudget(new KarsTokenBudgetOptions { KeyResolver = _ => "k" });
        app.Run(_ => Task.CompletedTask);
        RequestDelegate pipeline = app.Build();
        var context = new DefaultHttpContext { RequestServices = services };
        context.Request.Method = "POST";
        context.Request.Path = "/v1/chat/completions";
        context.Request.Body = new MemoryStream(Encoding.UTF8.GetBytes(ChatBody));
        context.Response.Body = new MemoryStream();

        await pipeline(context);

        context.Response.StatusCode.Should().Be(StatusCodes.Status429TooManyRequests);
        await store.DisposeAsync();
    }
}
