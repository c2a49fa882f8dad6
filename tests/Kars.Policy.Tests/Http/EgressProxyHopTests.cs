using System.Net;
using System.Net.Http;
using Kars.Policy.Egress;
using Kars.Policy.Http;
using Kars.Policy.Tests.Shared.Egress;

namespace Kars.Policy.Tests.Http;

/// <summary>With a proxy, the connect callback checks the proxy hop (name and every resolved address) and the
/// request's destination (the CONNECT target for HTTPS, the absolute URI for plain HTTP) by name.</summary>
public sealed class EgressProxyHopTests
{
    private static HttpClient Client(IEgressPolicy policy, MapResolver resolver, int proxyPort) =>
        new(new EgressPolicyHandler(policy)
        {
            InnerHandler = EgressConnectCallback.CreateHandler(policy, new EgressHttpOptions { Resolver = resolver }).With(h =>
            {
                h.UseProxy = true;
                h.Proxy = new WebProxy(new Uri($"http://proxy.test:{proxyPort}")) { BypassProxyOnLocal = false };
            }),
        });

    [Fact]
    public async Task Proxy_HttpsToAllowedTarget_ProxyHopVettedAndConnectNamesTarget()
    {
        await using var proxy = new LoopbackHttpServer(_ => LoopbackHttpServer.Status(403, "Forbidden"));
        var policy = new FakeEgressPolicy("proxy.test", "api.test") { AllowLoopback = true };
        var resolver = new MapResolver().Map("proxy.test", "127.0.0.1");
        using var client = Client(policy, resolver, proxy.Port);

        var act = () => client.GetAsync(new Uri("https://api.test/v1"));

        await act.Should().ThrowAsync<HttpRequestException>("the recording proxy refuses the tunnel");
        proxy.RequestLines.Should().ContainSingle().Which.Should().Be("CONNECT api.test:443 HTTP/1.1");
        resolver.Asked.Should().Equal(["proxy.test"], "the proxy hop is resolved and vetted; the target is resolved by the proxy");
        policy.Addresses.Should().Equal(IPAddress.Loopback);
        policy.Names.Should().Contain(["proxy.test", "api.test"]);
    }

    [Fact]
    public async Task Proxy_HttpsToDeniedTarget_RefusedBeforeTheProxyIsReached()
    {
        await using var proxy = new LoopbackHttpServer(_ => LoopbackHttpServer.Status(403, "Forbidden"));
        var policy = new FakeEgressPolicy("proxy.test", "api.test") { AllowLoopback = true };
        var resolver = new MapResolver().Map("proxy.test", "127.0.0.1");
        var primary = EgressConnectCallback.CreateHandler(policy, new EgressHttpOptions { Resolver = resolver });
        primary.Proxy = new WebProxy(new Uri($"http://proxy.test:{proxy.Port}"));
        using var client = new HttpClient(primary);

        // The redirect-style case: the handler is not in front, so only the connect callback sees this target.
        var act = () => client.GetAsync(new Uri("https://denied.test/"));

        var thrown = (await act.Should().ThrowAsync<HttpRequestException>()).Which;
        var denial = thrown as EgressDeniedException ?? thrown.InnerException as EgressDeniedException;
        denial.Should().NotBeNull($"the denial is the exception or its cause (got {thrown})");
        denial!.Checkpoint.Should().Be(EgressCheckpoint.ProxyTarget);
        proxy.Connections.Should().Be(0);
    }

    [Fact]
    public async Task Proxy_ProxyHostDenied_RefusedAtConnect()
    {
        await using var proxy = new LoopbackHttpServer();
        var policy = new FakeEgressPolicy("api.test") { AllowLoopback = true };
        var resolver = new MapResolver().Map("proxy.test", "127.0.0.1");
        using var client = Client(policy, resolver, proxy.Port);

        var act = () => client.GetAsync(new Uri("https://api.test/"));

        (await act.Should().ThrowExactlyAsync<EgressDeniedException>()).Which.Checkpoint.Should().Be(EgressCheckpoint.Connect);
        proxy.Connections.Should().Be(0);
    }

    [Fact]
    public async Task Proxy_ProxyResolvesToPrivateAddress_RefusedUnlessAllowed()
    {
        await using var proxy = new LoopbackHttpServer();
        var policy = new FakeEgressPolicy("proxy.test", "api.test");
        var resolver = new MapResolver().Map("proxy.test", "127.0.0.1");
        using var client = Client(policy, resolver, proxy.Port);

        var act = () => client.GetAsync(new Uri("https://api.test/"));

        (await act.Should().ThrowExactlyAsync<EgressDeniedException>()).Which.Checkpoint.Should().Be(EgressCheckpoint.ResolvedAddress);
        proxy.Connections.Should().Be(0);
    }

    [Fact]
    public async Task Proxy_PlainHttpToAllowedTarget_AbsoluteFormThroughVettedProxy()
    {
        await using var proxy = new LoopbackHttpServer(_ => LoopbackHttpServer.Ok("via proxy"));
        var policy = new FakeEgressPolicy("proxy.test", "api.test") { AllowLoopback = true };
        var resolver = new MapResolver().Map("proxy.test", "127.0.0.1");
        using var client = Client(policy, resolver, proxy.Port);

        (await client.GetStringAsync(new Uri("http://api.test/v1"))).Should().Be("via proxy");

        proxy.RequestLines.Should().ContainSingle().Which.Should().Be("GET http://api.test/v1 HTTP/1.1");
    }
}

internal static class HandlerExtensions
{
    public static T With<T>(this T value, Action<T> configure)
    {
        configure(value);
        return value;
    }
}
