using System.ClientModel;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using InferenceRouter;
using Kars.Policy.Budgets;
using OpenAI.Chat;

namespace Kars.Policy.Samples.Tests.InferenceRouter;

/// <summary>The budget side of the router: what UseKarsTokenBudget() charges and refuses.</summary>
public sealed partial class InferenceRouterTests
{
    [Fact]
    public async Task Chat_NotStreaming_AnswersAndChargesExactlyTheUpstreamUsage()
    {
        ChatClient chat = Demo.ChatClient(_address, Demo.AliceKey);

        ClientResult<ChatCompletion> result = await chat.CompleteChatAsync([new SystemChatMessage("Be brief."), new UserChatMessage("Say hello please")]);
        ChatCompletion completion = result.Value;

        completion.Content[0].Text.Should().Be("echo: Say hello please");
        FakeUpstreamCall call = _upstream.Calls.Should().ContainSingle().Subject;
        call.Stream.Should().BeFalse();
        call.Usage.Should().NotBeNull();
        completion.Usage.InputTokenCount.Should().Be(call.Usage!.PromptTokens);
        completion.Usage.OutputTokenCount.Should().Be(call.Usage.CompletionTokens);
        (await Demo.DayUsedAsync(Meter, "alice")).Should().Be(call.Usage.TotalTokens, "the hold is replaced by the usage the upstream reported");
        // The budget's headers reach the SDK client through the router (the sandbox's budget, not the upstream's).
        result.GetRawResponse().Headers.TryGetValue("x-ratelimit-limit-tokens", out string? limit).Should().BeTrue();
        limit.Should().Be("100000");
        result.GetRawResponse().Headers.TryGetValue("x-ratelimit-remaining-tokens", out string? remaining).Should().BeTrue();
        long.Parse(remaining!, System.Globalization.CultureInfo.InvariantCulture).Should().BeInRange(0, 100_000);
    }

    [Fact]
    public async Task Chat_Streaming_AnswersAndChargesTheFinalUsageChunk()
    {
        ChatClient chat = Demo.ChatClient(_address, Demo.AliceKey);

        var text = new StringBuilder();
        ChatTokenUsage? usage = null;
        await foreach (StreamingChatCompletionUpdate update in chat.CompleteChatStreamingAsync([new UserChatMessage("Count to three")]))
        {
            foreach (ChatMessageContentPart part in update.ContentUpdate)
            {
                text.Append(part.Text);
            }

            usage = update.Usage ?? usage;
        }

        text.ToString().Should().Be("echo: Count to three");
        FakeUpstreamCall call = _upstream.Calls.Should().ContainSingle().Subject;
        call.Stream.Should().BeTrue();
        call.IncludeUsage.Should().BeTrue();
        call.Usage.Should().NotBeNull();
        usage.Should().NotBeNull();
        usage!.TotalTokenCount.Should().Be(call.Usage!.TotalTokens);
        (await Demo.DayUsedAsync(Meter, "alice")).Should().Be(call.Usage.TotalTokens);
    }

    [Fact]
    public async Task Chat_StreamingWithoutIncludeUsage_RouterTurnsItOnAndSettlesFromTheFinalChunk()
    {
        // The OpenAI SDK asks for include_usage itself, so a plain HTTP client shows that the router adds it.
        using var http = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(_address, "/v1/chat/completions"))
        {
            Content = new StringContent("""{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"one two three"}]}""", Encoding.UTF8, "application/json"),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Demo.AliceKey);

        using HttpResponseMessage response = await http.SendAsync(request);
        string body = await response.Content.ReadAsStringAsync();

        response.StatusCode.Should().Be(HttpStatusCode.OK);
        body.Should().EndWith("data: [DONE]\n\n");
        FakeUpstreamCall call = _upstream.Calls.Should().ContainSingle().Subject;
        call.IncludeUsage.Should().BeTrue("the client did not ask for usage; the router must have");
        call.Usage.Should().NotBeNull();
        (await Demo.DayUsedAsync(Meter, "alice")).Should().Be(call.Usage!.TotalTokens);
    }

    [Fact]
    public async Task Responses_NotStreaming_ForwardedAndCharged()
    {
        using var http = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(_address, "/v1/responses"))
        {
            Content = new StringContent("""{"model":"gpt-4o-mini","input":"hello responses"}""", Encoding.UTF8, "application/json"),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", Demo.AliceKey);

        using HttpResponseMessage response = await http.SendAsync(request);
        using JsonDocument json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());

        response.StatusCode.Should().Be(HttpStatusCode.OK);
        json.RootElement.GetProperty("output")[0].GetProperty("content")[0].GetProperty("text").GetString().Should().Be("echo: hello responses");
        FakeUpstreamCall call = _upstream.Calls.Should().ContainSingle().Subject;
        call.Path.Should().Be("/v1/responses");
        (await Demo.DayUsedAsync(Meter, "alice")).Should().Be(call.Usage!.TotalTokens);
    }

    [Fact]
    public async Task OverBudget_Is429WithRetryAfter_AndNothingReachesTheUpstream()
    {
        // bob's daily limit is 100; with 95 spent, a request holding 16 completion tokens plus its prompt fits the
        // limit but not what is left of it.
        await Demo.SpendAsync(Meter, "bob", 95);
        ChatClient chat = Demo.ChatClient(_address, Demo.BobKey);

        Func<Task> call = () => chat.CompleteChatAsync([new UserChatMessage("Hello")], new ChatCompletionOptions { MaxOutputTokenCount = 16 });

        ClientResultException e = (await call.Should().ThrowAsync<ClientResultException>()).Which;
        e.Status.Should().Be(429);
        e.GetRawResponse()!.Headers.TryGetValue("Retry-After", out string? retryAfter).Should().BeTrue();
        long.Parse(retryAfter!, System.Globalization.CultureInfo.InvariantCulture).Should().BePositive();
        using JsonDocument body = JsonDocument.Parse(e.GetRawResponse()!.Content);
        body.RootElement.GetProperty("error").GetProperty("code").GetString().Should().Be("budget_exceeded");
        _upstream.Calls.Should().BeEmpty();
        (await Demo.DayUsedAsync(Meter, "bob")).Should().Be(95, "a rejected request changes no counter");
    }
}
