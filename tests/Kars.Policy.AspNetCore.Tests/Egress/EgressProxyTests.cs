using System.Diagnostics;
using System.IO.Abstractions.TestingHelpers;
using System.Net;
using System.Net.Http;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Kars.Policy.AspNetCore;
using Kars.Policy.Egress;
using Kars.Policy.Tests.Shared.Egress;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Kars.Policy.AspNetCore.Tests.Egress;

/// <summary>
/// The forward proxy on real Kestrel servers on loopback, driven by real clients. Loopback is a non-public address:
/// unless a test says otherwise it uses <see cref="FakeEgressPolicy"/> with <c>AllowLoopback</c> (the fake's stand-in
/// for <c>KarsEgressOptions.PrivateAllow</c>), and the proxy resolves <c>upstream.test</c> to 127.0.0.1 through a
/// fake resolver, so nothing leaves the machine.
/// </summary>
public sealed class EgressProxyTests
{
    private static MapResolver Resolver() => new MapResolver().Map("upstream.test", "127.0.0.1");

    private static HttpClient ClientThrough(Kestrels k) => new(new SocketsHttpHandler
    {
        UseProxy = true,
        Proxy = new WebProxy(new Uri($"http://127.0.0.1:{k.ProxyPort}")) { BypassProxyOnLocal = false },
        SslOptions = { RemoteCertificateValidationCallback = (_, _, _, _) => true },
    });

    private static async Task<JsonElement> JsonBody(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

    [Fact]
    public async Task AbsoluteForm_AllowedTarget_Forwarded()
    {
        await using var k = await Kestrels.StartAsync(new FakeEgressPolicy("upstream.test") { AllowLoopback = true }, new KarsEgressProxyOptions { Resolver = Resolver() });
        using var client = ClientThrough(k);

        string body = await client.GetStringAsync(new Uri($"http://upstream.test:{k.UpstreamPort}/hello"));

        body.Should().Be("upstream says hi over http");
        k.UpstreamHits.Should().Be(1);
    }

    [Fact]
    public async Task AbsoluteForm_DeniedTarget_403WithReason()
    {
        await using var k = await Kestrels.StartAsync(new FakeEgressPolicy("upstream.test") { AllowLoopback = true }, new KarsEgressProxyOptions { Resolver = Resolver().Map("evil.test", "127.0.0.1") });
        using var client = ClientThrough(k);

        using var response = await client.GetAsync(new Uri($"http://evil.test:{k.UpstreamPort}/hello?token=x"));

        response.StatusCode.Should().Be(HttpStatusCode.Forbidden);
        response.Content.Headers.ContentType!.MediaType.Should().Be("application/json");
        var json = await JsonBody(response);
        json.GetProperty("error").GetString().Should().Be("egress_denied");
        json.GetProperty("reason").GetString().Should().Be("notAllowlisted");
        k.UpstreamHits.Should().Be(0);
    }

    [Fact]
    public async Task AbsoluteForm_AllowedNameResolvingToLoopback_DeniedWithoutPrivateAllow()
    {
        await using var k = await Kestrels.StartAsync(new FakeEgressPolicy("upstream.test"), new KarsEgressProxyOptions { Resolver = Resolver() });
        using var client = ClientThrough(k);

        using var response = await client.GetAsync(new Uri($"http://upstream.test:{k.UpstreamPort}/hello"));

        response.StatusCode.Should().Be(HttpStatusCode.Forbidden);
        (await JsonBody(response)).GetProperty("reason").GetString().Should().Be("nonPublicAddress");
        k.UpstreamHits.Should().Be(0);
    }

    [Fact]
    public async Task Connect_AllowedTarget_HttpsThroughTunnel()
    {
        await using var k = await Kestrels.StartAsync(new FakeEgressPolicy("upstream.test") { AllowLoopback = true }, new KarsEgressProxyOptions { Resolver = Resolver() });
        using var client = ClientThrough(k);

        string body = await client.GetStringAsync(new Uri($"https://upstream.test:{k.UpstreamTlsPort}/hello"));

        body.Should().Be("upstream says hi over https");
    }

    [Fact]
    public async Task Connect_DeniedTarget_TunnelRefusedWith403()
    {
        await using var k = await Kestrels.StartAsync(new FakeEgressPolicy("upstream.test") { AllowLoopback = true }, new KarsEgressProxyOptions { Resolver = Resolver() });
        using var client = ClientThrough(k);

        var act = () => client.GetAsync(new Uri($"https://evil.test:{k.UpstreamTlsPort}/hello"));

        (await act.Should().ThrowAsync<HttpRequestException>()).Which.Message.Should().Contain("403");
        k.UpstreamHits.Should().Be(0);
    }

    private static async Task<string> RawAsync(int port, string request, Func<NetworkStream, Task<string>>? after = null)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync(IPAddress.Loopback, port);
        var stream = tcp.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes(request));
        var head = await ReadHeadAsync(stream);
        return after is null ? head : head + await after(stream);
    }

    private static async Task<string> ReadHeadAsync(NetworkStream stream)
    {
        var sb = new StringBuilder();
        var one = new byte[1];
        while (!sb.ToString().EndsWith("\r\n\r\n", StringComparison.Ordinal) && await stream.ReadAsync(one) == 1)
        {
            sb.Append((char)one[0]);
        }

        return sb.ToString();
    }

    [Fact]
    public async Task Connect_RawClient_TunnelCarriesBytesBothWays()
    {
        await using var k = await Kestrels.StartAsync(new FakeEgressPolicy("upstream.test") { AllowLoopback = true }, new KarsEgressProxyOptions { Resolver = Resolver() });
        string authority = $"upstream.test:{k.UpstreamPort}";

        string result = await RawAsync(k.ProxyPort, $"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n", async s =>
        {
            await s.WriteAsync(Encoding.ASCII.GetBytes($"GET /hello HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"));
            using var reader = new StreamReader(s);
            return await reader.ReadToEndAsync();
        });

        result.Should().StartWith("HTTP/1.1 200");
        result.Should().Contain("upstream says hi over http");
    }

    [Fact]
    public async Task Connect_RawClient_DeniedReasonInJson()
    {
        await using var k = await Kestrels.StartAsync(new FakeEgressPolicy("upstream.test") { AllowLoopback = true }, new KarsEgressProxyOptions { Resolver = Resolver() });

        string result = await RawAsync(k.ProxyPort, "CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n", async s =>
        {
            var buffer = new byte[256];
            int n = await s.ReadAsync(buffer);
            return Encoding.ASCII.GetString(buffer, 0, n);
        });

        result.Should().StartWith("HTTP/1.1 403");
        result.Should().Contain("\"reason\":\"notAllowlisted\"");
    }

    [Fact]
    public async Task Connect_AllowedNameResolvingToLoopback_RefusedBeforeConnectingAndAttributedToSandbox()
    {
        var policy = new FakeEgressPolicy("upstream.test");
        await using var k = await Kestrels.StartAsync(policy, new KarsEgressProxyOptions { Resolver = Resolver(), Sandbox = "sandbox-9" });
        string authority = $"upstream.test:{k.UpstreamPort}";

        string result = await RawAsync(k.ProxyPort, $"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n", async s =>
        {
            using var reader = new StreamReader(s);
            return await reader.ReadToEndAsync();
        });

        result.Should().StartWith("HTTP/1.1 403");
        result.Should().EndWith("{\"error\":\"egress_denied\",\"reason\":\"nonPublicAddress\"}");
        k.UpstreamHits.Should().Be(0);
        policy.Addresses.Should().Equal(IPAddress.Loopback);
        policy.Sandboxes.Should().OnlyContain(s => s == "sandbox-9");
    }

    [Fact]
    public async Task AbsoluteForm_HostHeaderDisagrees_RefusedAndNotForwarded()
    {
        await using var k = await Kestrels.StartAsync(new FakeEgressPolicy("upstream.test", "other.test") { AllowLoopback = true }, new KarsEgressProxyOptions { Resolver = Resolver() });

        string head = await RawAsync(k.ProxyPort, $"GET http://upstream.test:{k.UpstreamPort}/hello HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n");

        // Kestrel itself answers 400 for this (RFC 9112 §3.2.2); the middleware's own check covers servers that do not.
        head.Should().MatchRegex("^HTTP/1.1 40[03]");
        k.UpstreamHits.Should().Be(0);
    }

    [Fact]
    public async Task Middleware_HostHeaderDisagrees_403HostMismatch()
    {
        var policy = new FakeEgressPolicy("upstream.test", "other.test") { AllowLoopback = true };
        var middleware = new EgressProxyMiddleware(_ => Task.CompletedTask, policy, new KarsEgressProxyOptions { Resolver = Resolver() }, null, null);
        var context = new DefaultHttpContext();
        context.Features.Get<IHttpRequestFeature>()!.RawTarget = "http://upstream.test/hello";
        context.Request.Method = "GET";
        context.Request.Headers.Host = "other.test";
        context.Response.Body = new MemoryStream();

        await middleware.InvokeAsync(context);

        context.Response.StatusCode.Should().Be(403);
        context.Response.Body.Position = 0;
        (await new StreamReader(context.Response.Body).ReadToEndAsync()).Should().Be("{\"error\":\"egress_denied\",\"reason\":\"hostMismatch\"}");
        policy.Names.Should().BeEmpty("a mismatch is refused before the policy is asked");
    }

    [Theory]
    [InlineData("http://a.test/x", "a.test", true)]
    [InlineData("http://a.test/x", "A.TEST", true)]
    [InlineData("http://a.test/x", "a.test:80", true)]
    [InlineData("http://a.test:8080/x", "a.test:8080", true)]
    [InlineData("http://a.test:8080/x", "a.test", false)]
    [InlineData("http://a.test/x", "b.test", false)]
    [InlineData("http://a.test/x", "a.test:81", false)]
    public void HostMatches_Cases(string uri, string host, bool expected) =>
        EgressProxyMiddleware.HostMatches(new Uri(uri), host).Should().Be(expected);

    [Fact]
    public async Task OriginForm_PassesToNextMiddleware()
    {
        await using var k = await Kestrels.StartAsync(new FakeEgressPolicy(), new KarsEgressProxyOptions { Resolver = Resolver() });
        using var client = new HttpClient();

        using var response = await client.GetAsync(new Uri($"http://127.0.0.1:{k.ProxyPort}/status"));

        response.StatusCode.Should().Be(HttpStatusCode.NotFound);
        (await response.Content.ReadAsStringAsync()).Should().Be("not a proxy request");
    }

    [Fact]
    public async Task RealPolicy_WithPrivateAllowForLoopback_ForwardsAllowedAndDeniesOthers()
    {
        const string json = """{ "schemaVersion": 1, "generation": 1, "mode": "Strict", "allow": [ { "host": "upstream.test", "ports": ["*"] } ] }""";
        var fs = new MockFileSystem(new Dictionary<string, MockFileData> { ["/p/policy.json"] = new(json) });
        var options = new KarsEgressOptions();
        options.PrivateAllow.Add("127.0.0.0/8");
        var policy = EgressPolicy.Load("/p/policy.json", options, fs);
        await using var k = await Kestrels.StartAsync(policy, new KarsEgressProxyOptions { Resolver = Resolver().Map("evil.test", "127.0.0.1") });
        using var client = ClientThrough(k);

        (await client.GetStringAsync(new Uri($"https://upstream.test:{k.UpstreamTlsPort}/hello"))).Should().Be("upstream says hi over https");
        using var denied = await client.GetAsync(new Uri($"http://evil.test:{k.UpstreamPort}/hello"));
        denied.StatusCode.Should().Be(HttpStatusCode.Forbidden);
        (await JsonBody(denied)).GetProperty("reason").GetString().Should().Be("notAllowlisted");
    }

    private static async Task<(int Exit, string Output)> CurlAsync(params string[] args)
    {
        var psi = new ProcessStartInfo("curl") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args)
        {
            psi.ArgumentList.Add(a);
        }

        psi.Environment.Remove("http_proxy");
        psi.Environment.Remove("https_proxy");
        psi.Environment.Remove("HTTP_PROXY");
        psi.Environment.Remove("HTTPS_PROXY");
        psi.Environment.Remove("NO_PROXY");
        psi.Environment.Remove("no_proxy");
        using var process = Process.Start(psi)!;
        string output = await process.StandardOutput.ReadToEndAsync();
        await process.WaitForExitAsync();
        return (process.ExitCode, output);
    }

    [Fact]
    public async Task Curl_ThroughProxy_AbsoluteFormAndTunnel()
    {
        await using var k = await Kestrels.StartAsync(new FakeEgressPolicy("upstream.test") { AllowLoopback = true }, new KarsEgressProxyOptions { Resolver = Resolver() });
        string proxy = $"http://127.0.0.1:{k.ProxyPort}";

        var plain = await CurlAsync("-sS", "--max-time", "30", "-x", proxy, $"http://upstream.test:{k.UpstreamPort}/hello");
        var tunnel = await CurlAsync("-sS", "--max-time", "30", "-k", "-x", proxy, $"https://upstream.test:{k.UpstreamTlsPort}/hello");
        var denied = await CurlAsync("-s", "--max-time", "30", "-x", proxy, "http://evil.test/");

        plain.Should().Be((0, "upstream says hi over http"));
        tunnel.Should().Be((0, "upstream says hi over https"));
        denied.Output.Should().Be("{\"error\":\"egress_denied\",\"reason\":\"notAllowlisted\"}");
    }
}
