using System.ClientModel;
using System.ClientModel.Primitives;
using Azure.Core;
using Azure.Core.Pipeline;
using Kars.Policy.Azure;
using Kars.Policy.Egress;
using Kars.Policy.Http;
using Kars.Policy.Tests.Shared.Egress;
using OpenAI;
using OpenAI.Chat;

namespace Kars.Policy.Azure.Tests.Pipeline;

public sealed class EgressPipelinePolicyTests
{
    private sealed class TestClientOptions : ClientOptions
    {
    }

    private sealed class CountingPolicy : HttpPipelinePolicy
    {
        public int Count;

        public override ValueTask ProcessAsync(HttpMessage message, ReadOnlyMemory<HttpPipelinePolicy> pipeline)
        {
            Interlocked.Increment(ref Count);
            return ProcessNextAsync(message, pipeline);
        }

        public override void Process(HttpMessage message, ReadOnlyMemory<HttpPipelinePolicy> pipeline)
        {
            Interlocked.Increment(ref Count);
            ProcessNext(message, pipeline);
        }
    }

    private static (HttpPipeline Pipeline, CountingPolicy PerRetry) AzurePipeline(IEgressPolicy policy)
    {
        var options = new TestClientOptions();
        options.Retry.MaxRetries = 3;
        options.Retry.Delay = TimeSpan.FromMilliseconds(1);
        options.AddPolicy(new EgressPolicyPipelinePolicy(policy), HttpPipelinePosition.PerCall);
        var perRetry = new CountingPolicy();
        options.AddPolicy(perRetry, HttpPipelinePosition.PerRetry);
        return (HttpPipelineBuilder.Build(options), perRetry);
    }

    [Fact]
    public async Task AzureCore_DeniedHost_RefusedOnceBeforeAnyRetry()
    {
        await using var server = new LoopbackHttpServer();
        var (pipeline, perRetry) = AzurePipeline(new FakeEgressPolicy("allowed.test"));
        using var message = pipeline.CreateMessage();
        message.Request.Uri.Reset(new Uri($"http://127.0.0.1:{server.Port}/container?comp=list"));

        var act = async () => await pipeline.SendAsync(message, CancellationToken.None);

        (await act.Should().ThrowExactlyAsync<EgressDeniedException>()).Which.Checkpoint.Should().Be(EgressCheckpoint.Request);
        perRetry.Count.Should().Be(0, "the per-call policy refuses before the retry policy runs");
        server.Connections.Should().Be(0);
    }

    [Fact]
    public void AzureCore_Sync_DeniedHost_Refused()
    {
        var (pipeline, _) = AzurePipeline(new FakeEgressPolicy("allowed.test"));
        using var message = pipeline.CreateMessage();
        message.Request.Uri.Reset(new Uri("https://evil.test/"));

        var act = () => pipeline.Send(message, CancellationToken.None);

        act.Should().ThrowExactly<EgressDeniedException>();
    }

    [Fact]
    public async Task AzureCore_AllowedHost_Sent()
    {
        await using var server = new LoopbackHttpServer();
        var (pipeline, perRetry) = AzurePipeline(new FakeEgressPolicy("127.0.0.1") { AllowLoopback = true });
        using var message = pipeline.CreateMessage();
        message.Request.Uri.Reset(new Uri($"http://127.0.0.1:{server.Port}/"));

        await pipeline.SendAsync(message, CancellationToken.None);

        message.Response.Status.Should().Be(200);
        perRetry.Count.Should().Be(1);
        server.Connections.Should().Be(1);
    }

    private const string Completion = """
        {"id":"chatcmpl-1","object":"chat.completion","created":1700000000,"model":"gpt-test",
         "choices":[{"index":0,"message":{"role":"assistant","content":"hello from loopback"},"finish_reason":"stop"}],
         "usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}
        """;

    private static ChatClient OpenAIChat(IEgressPolicy policy, int port)
    {
        var options = new OpenAIClientOptions { Endpoint = new Uri($"http://127.0.0.1:{port}/v1"), NetworkTimeout = TimeSpan.FromSeconds(30) };
        options.AddPolicy(new EgressClientPipelinePolicy(policy), PipelinePosition.PerCall);
        return new OpenAIClient(new ApiKeyCredential("sk-test"), options).GetChatClient("gpt-test");
    }

    [Fact]
    public async Task OpenAISdk_AllowedEndpoint_CompletesThroughPolicy()
    {
        await using var server = new LoopbackHttpServer(_ => LoopbackHttpServer.Json(Completion));
        var policy = new FakeEgressPolicy("127.0.0.1") { AllowLoopback = true };
        var chat = OpenAIChat(policy, server.Port);

        ChatCompletion completion = await chat.CompleteChatAsync([new UserChatMessage("hi")]);

        completion.Content[0].Text.Should().Be("hello from loopback");
        server.RequestLines.Should().ContainSingle().Which.Should().Be("POST /v1/chat/completions HTTP/1.1");
        policy.Addresses.Should().Contain(System.Net.IPAddress.Loopback);
    }

    [Fact]
    public async Task OpenAISdk_DeniedEndpoint_RefusedBeforeSending()
    {
        await using var server = new LoopbackHttpServer(_ => LoopbackHttpServer.Json(Completion));
        var chat = OpenAIChat(new FakeEgressPolicy("api.openai.com"), server.Port);

        var act = async () => await chat.CompleteChatAsync([new UserChatMessage("hi")]);

        var denial = (await act.Should().ThrowExactlyAsync<EgressDeniedException>()).Which;
        denial.Decision.Reason.Should().Be(EgressReason.NonPublicAddress);
        server.Connections.Should().Be(0);
    }
}
