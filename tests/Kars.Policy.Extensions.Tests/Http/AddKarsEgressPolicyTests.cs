using System.Net;
using System.Net.Http;
using Kars.Policy.Egress;
using Kars.Policy.Http;
using Kars.Policy.Tests.Shared.Egress;
using Microsoft.Extensions.DependencyInjection;

namespace Kars.Policy.Extensions.Tests.Http;

public sealed class AddKarsEgressPolicyTests
{
    private static ServiceProvider Build(FakeEgressPolicy policy, MapResolver resolver, Action<IHttpClientBuilder>? more = null)
    {
        var services = new ServiceCollection();
        services.AddSingleton<IEgressPolicy>(policy);
        var builder = services.AddHttpClient("agent").AddKarsEgressPolicy(o => o.Resolver = resolver);
        more?.Invoke(builder);
        return services.BuildServiceProvider();
    }

    [Fact]
    public async Task Client_DeniedHost_EgressDeniedExceptionAtRequest()
    {
        using var sp = Build(new FakeEgressPolicy("api.test"), new MapResolver());
        var client = sp.GetRequiredService<IHttpClientFactory>().CreateClient("agent");

        var act = () => client.GetAsync(new Uri("https://evil.test/"));

        (await act.Should().ThrowExactlyAsync<EgressDeniedException>()).Which.Checkpoint.Should().Be(EgressCheckpoint.Request);
    }

    [Fact]
    public async Task Client_RedirectToDeniedHost_RefusedByConnectCallbackFromContainerPolicy()
    {
        await using var denied = new LoopbackHttpServer();
        await using var allowed = new LoopbackHttpServer(_ => LoopbackHttpServer.Redirect($"http://denied.test:{denied.Port}/"));
        var resolver = new MapResolver().Map("allowed.test", "127.0.0.1").Map("denied.test", "127.0.0.1");
        using var sp = Build(new FakeEgressPolicy("allowed.test") { AllowLoopback = true }, resolver, b => b.ConfigurePrimaryHttpMessageHandler((h, _) => ((SocketsHttpHandler)h).UseProxy = false));
        var client = sp.GetRequiredService<IHttpClientFactory>().CreateClient("agent");

        var act = () => client.GetAsync(new Uri($"http://allowed.test:{allowed.Port}/"));

        (await act.Should().ThrowExactlyAsync<EgressDeniedException>()).Which.Checkpoint.Should().Be(EgressCheckpoint.Connect);
        allowed.Connections.Should().Be(1);
        denied.Connections.Should().Be(0);
    }

    [Fact]
    public async Task Client_AllowedNameResolvingToPrivateAddress_Refused()
    {
        await using var server = new LoopbackHttpServer();
        var resolver = new MapResolver().Map("internal.test", "127.0.0.1");
        using var sp = Build(new FakeEgressPolicy("internal.test"), resolver, b => b.ConfigurePrimaryHttpMessageHandler((h, _) => ((SocketsHttpHandler)h).UseProxy = false));
        var client = sp.GetRequiredService<IHttpClientFactory>().CreateClient("agent");

        var act = () => client.GetAsync(new Uri($"http://internal.test:{server.Port}/"));

        (await act.Should().ThrowExactlyAsync<EgressDeniedException>()).Which.Checkpoint.Should().Be(EgressCheckpoint.ResolvedAddress);
        server.Connections.Should().Be(0);
    }

    [Fact]
    public async Task Client_AllowedEverywhere_Reaches()
    {
        await using var server = new LoopbackHttpServer();
        var resolver = new MapResolver().Map("api.test", "127.0.0.1");
        using var sp = Build(new FakeEgressPolicy("api.test") { AllowLoopback = true }, resolver, b => b.ConfigurePrimaryHttpMessageHandler((h, _) => ((SocketsHttpHandler)h).UseProxy = false));
        var client = sp.GetRequiredService<IHttpClientFactory>().CreateClient("agent");

        (await client.GetStringAsync(new Uri($"http://api.test:{server.Port}/"))).Should().Be("hello");
        resolver.Calls.Should().Be(1, "the connect callback resolved through the configured resolver");
    }

    [Fact]
    public void Client_PrimaryHandlerReplacedAfterwards_FailsClosedAtCreation()
    {
        using var sp = Build(new FakeEgressPolicy("api.test"), new MapResolver(), b => b.ConfigurePrimaryHttpMessageHandler(() => new HttpClientHandler()));

        var act = () => sp.GetRequiredService<IHttpClientFactory>().CreateClient("agent");

        act.Should().Throw<InvalidOperationException>().WithMessage("*SocketsHttpHandler*");
    }

    [Fact]
    public void Client_ForeignConnectCallback_FailsClosedAtCreation()
    {
        using var sp = Build(new FakeEgressPolicy("api.test"), new MapResolver(), b => b.ConfigurePrimaryHttpMessageHandler((h, _) => ((SocketsHttpHandler)h).ConnectCallback = (_, _) => throw new InvalidOperationException()));

        var act = () => sp.GetRequiredService<IHttpClientFactory>().CreateClient("agent");

        act.Should().Throw<InvalidOperationException>().WithMessage("*ConnectCallback*");
    }

    [Fact]
    public void Client_NoPolicyRegistered_FailsAtCreation()
    {
        var services = new ServiceCollection();
        services.AddHttpClient("agent").AddKarsEgressPolicy();
        using var sp = services.BuildServiceProvider();

        var act = () => sp.GetRequiredService<IHttpClientFactory>().CreateClient("agent");

        act.Should().Throw<InvalidOperationException>().WithMessage("*IEgressPolicy*");
    }

    [Fact]
    public void AddKarsEgressPolicy_NullArguments_Throw()
    {
        var act = () => KarsEgressHttpClientBuilderExtensions.AddKarsEgressPolicy(null!);
        act.Should().Throw<ArgumentNullException>();
    }
}
