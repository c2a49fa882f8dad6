using System.Net;
using System.Net.Http;
using System.Net.Sockets;
using System.IO.Abstractions.TestingHelpers;
using Kars.Policy.Egress;
using Kars.Policy.Http;
using Kars.Policy.Tests.Shared.Egress;
using Microsoft.Extensions.Time.Testing;

namespace Kars.Policy.Tests.Http;

public sealed class EgressConnectCallbackTests
{
    private static HttpClient Client(IEgressPolicy policy, MapResolver resolver, bool withHandler = false, IWebProxy? proxy = null)
    {
        var primary = EgressConnectCallback.CreateHandler(policy, new EgressHttpOptions { Resolver = resolver });
        primary.UseProxy = proxy is not null;
        primary.Proxy = proxy;
        HttpMessageHandler handler = withHandler ? new EgressPolicyHandler(policy) { InnerHandler = primary } : primary;
        return new HttpClient(handler);
    }

    [Fact]
    public async Task Connect_AllowedNameAllowedAddress_ReachesServer()
    {
        await using var server = new LoopbackHttpServer();
        var policy = new FakeEgressPolicy("api.test") { AllowLoopback = true };
        var resolver = new MapResolver().Map("api.test", "127.0.0.1");
        using var client = Client(policy, resolver);

        string body = await client.GetStringAsync(new Uri($"http://api.test:{server.Port}/x?secret=1"));

        body.Should().Be("hello");
        server.Connections.Should().Be(1);
        resolver.Calls.Should().Be(1);
    }

    [Fact]
    public async Task Redirect_FromAllowedToDeniedHost_RefusedBeforeConnecting()
    {
        await using var denied = new LoopbackHttpServer();
        await using var allowed = new LoopbackHttpServer(_ => LoopbackHttpServer.Redirect($"http://denied.test:{denied.Port}/next"));
        var policy = new FakeEgressPolicy("allowed.test") { AllowLoopback = true };
        var resolver = new MapResolver().Map("allowed.test", "127.0.0.1").Map("denied.test", "127.0.0.1");
        using var client = Client(policy, resolver);

        var act = () => client.GetAsync(new Uri($"http://allowed.test:{allowed.Port}/start"));

        var thrown = await act.Should().ThrowAsync<HttpRequestException>();
        var denial = thrown.Which.InnerException.Should().BeOfType<EgressDeniedException>().Subject;
        denial.Checkpoint.Should().Be(EgressCheckpoint.Connect);
        denial.Decision.Reason.Should().Be(EgressReason.NotAllowlisted);
        allowed.Connections.Should().Be(1);
        denied.Connections.Should().Be(0, "the redirect hop was refused before its connection was opened");
        resolver.Asked.Should().NotContain("denied.test", "a denied name is not even resolved");
    }

    [Fact]
    public async Task Redirect_WithHandler_CallerSeesEgressDeniedExceptionItself()
    {
        await using var denied = new LoopbackHttpServer();
        await using var allowed = new LoopbackHttpServer(_ => LoopbackHttpServer.Redirect($"http://denied.test:{denied.Port}/next"));
        var policy = new FakeEgressPolicy("allowed.test") { AllowLoopback = true };
        var resolver = new MapResolver().Map("allowed.test", "127.0.0.1").Map("denied.test", "127.0.0.1");
        using var client = Client(policy, resolver, withHandler: true);

        var act = () => client.GetAsync(new Uri($"http://allowed.test:{allowed.Port}/start"));

        (await act.Should().ThrowExactlyAsync<EgressDeniedException>()).Which.Checkpoint.Should().Be(EgressCheckpoint.Connect);
        denied.Connections.Should().Be(0);
    }

    [Fact]
    public async Task Connect_AllowedNameResolvingToPrivateAddress_RefusedAfterNameAllowed()
    {
        await using var server = new LoopbackHttpServer();
        var policy = new FakeEgressPolicy("internal.test");
        var resolver = new MapResolver().Map("internal.test", "127.0.0.1");
        using var client = Client(policy, resolver, withHandler: true);

        var act = () => client.GetAsync(new Uri($"http://internal.test:{server.Port}/"));

        var denial = (await act.Should().ThrowExactlyAsync<EgressDeniedException>()).Which;
        denial.Checkpoint.Should().Be(EgressCheckpoint.ResolvedAddress);
        denial.Decision.Reason.Should().Be(EgressReason.NonPublicAddress);
        policy.Names.Should().Contain("internal.test", "the name itself was allowed first");
        server.Connections.Should().Be(0);
    }

    [Fact]
    public async Task Connect_MixedPublicAndPrivateAnswers_RefusedWithoutAnyAttempt()
    {
        var policy = new FakeEgressPolicy("mixed.test");
        var resolver = new MapResolver().Map("mixed.test", "198.51.100.7", "10.0.0.5");
        var attempts = new List<IPEndPoint>();
        var connector = new EgressConnector(policy, new EgressHttpOptions { Resolver = resolver }, null, null, (ep, _) =>
        {
            attempts.Add(ep);
            return ValueTask.FromResult<Stream>(new MemoryStream());
        });

        var act = async () => await connector.ConnectAsync("mixed.test", 443, null, CancellationToken.None);

        (await act.Should().ThrowExactlyAsync<EgressDeniedException>()).Which.Decision.Reason.Should().Be(EgressReason.NonPublicAddress);
        attempts.Should().BeEmpty("one non-public answer refuses the whole name, even when a public one comes first");
    }

    [Fact]
    public async Task Connect_ResolvesOnceAndConnectsOnlyToVettedAddresses()
    {
        var policy = new FakeEgressPolicy("api.test");
        var resolver = new MapResolver().Map("api.test", "198.51.100.1", "198.51.100.2");
        var attempts = new List<IPEndPoint>();
        var connector = new EgressConnector(policy, new EgressHttpOptions { Resolver = resolver }, null, null, (ep, _) =>
        {
            attempts.Add(ep);
            return ep.Address.Equals(IPAddress.Parse("198.51.100.2"))
                ? ValueTask.FromResult<Stream>(new MemoryStream())
                : ValueTask.FromException<Stream>(new SocketException((int)SocketError.ConnectionRefused));
        });

        await using var stream = await connector.ConnectAsync("api.test", 8443, null, CancellationToken.None);

        resolver.Calls.Should().Be(1);
        attempts.Should().Equal(new IPEndPoint(IPAddress.Parse("198.51.100.1"), 8443), new IPEndPoint(IPAddress.Parse("198.51.100.2"), 8443));
        policy.Addresses.Should().Equal(IPAddress.Parse("198.51.100.1"), IPAddress.Parse("198.51.100.2"));
    }

    [Fact]
    public async Task Connect_IPv4MappedAnswer_VettedAsIPv4()
    {
        var policy = new FakeEgressPolicy("api.test");
        var resolver = new MapResolver().Map("api.test", "::ffff:10.1.2.3");
        var connector = new EgressConnector(policy, new EgressHttpOptions { Resolver = resolver }, null, null, (_, _) => ValueTask.FromResult<Stream>(new MemoryStream()));

        var act = async () => await connector.ConnectAsync("api.test", 443, null, CancellationToken.None);

        (await act.Should().ThrowExactlyAsync<EgressDeniedException>()).Which.Decision.Reason.Should().Be(EgressReason.NonPublicAddress);
        policy.Addresses.Should().Equal(IPAddress.Parse("10.1.2.3"));
    }

    [Fact]
    public async Task Connect_AttemptHangs_BoundedByPerAttemptTimeoutThenNextAddress()
    {
        var time = new FakeTimeProvider();
        var policy = new FakeEgressPolicy("slow.test");
        var resolver = new MapResolver().Map("slow.test", "198.51.100.1", "198.51.100.2");
        var started = new List<(IPEndPoint EndPoint, DateTimeOffset At)>();
        var firstStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var connector = new EgressConnector(policy, new EgressHttpOptions { Resolver = resolver, ConnectAttemptTimeout = TimeSpan.FromSeconds(3) }, time, null, async (ep, ct) =>
        {
            lock (started)
            {
                started.Add((ep, time.GetUtcNow()));
            }

            if (ep.Address.Equals(IPAddress.Parse("198.51.100.1")))
            {
                firstStarted.TrySetResult();
                await Task.Delay(Timeout.Infinite, ct);
            }

            return new MemoryStream();
        });

        var connect = connector.ConnectAsync("slow.test", 443, null, CancellationToken.None).AsTask();
        await firstStarted.Task;
        time.Advance(TimeSpan.FromSeconds(3) - TimeSpan.FromTicks(1));
        connect.IsCompleted.Should().BeFalse("the attempt still has one tick left");
        time.Advance(TimeSpan.FromTicks(1));
        await using var stream = await connect;

        started.Should().HaveCount(2);
        (started[1].At - started[0].At).Should().Be(TimeSpan.FromSeconds(3));
    }

    [Fact]
    public async Task Connect_EveryAttemptHangs_FailsAfterAttemptsTimesTimeout()
    {
        var time = new FakeTimeProvider();
        var policy = new FakeEgressPolicy("slow.test");
        var resolver = new MapResolver().Map("slow.test", "198.51.100.1", "198.51.100.2", "198.51.100.3");
        int attempts = 0;
        var connector = new EgressConnector(policy, new EgressHttpOptions { Resolver = resolver, ConnectAttemptTimeout = TimeSpan.FromSeconds(2), MaxConnectAttempts = 2 }, time, null, async (_, ct) =>
        {
            Interlocked.Increment(ref attempts);
            await Task.Delay(Timeout.Infinite, ct);
            return new MemoryStream();
        });

        var connect = connector.ConnectAsync("slow.test", 443, null, CancellationToken.None).AsTask();
        for (int i = 0; i < 2; i++)
        {
            // Advance only once the attempt has started (its timeout timer exists); had the wait run out unnoticed, the
            // advance would come too early and the connect would wait forever.
            SpinWait.SpinUntil(() => Volatile.Read(ref attempts) == i + 1, TimeSpan.FromSeconds(60)).Should().BeTrue("attempt {0} starts", i + 1);
            time.Advance(TimeSpan.FromSeconds(2));
        }

        var act = () => connect;
        var thrown = await act.Should().ThrowExactlyAsync<HttpRequestException>();
        thrown.Which.HttpRequestError.Should().Be(HttpRequestError.ConnectionError);
        thrown.Which.InnerException.Should().BeOfType<TimeoutException>();
        attempts.Should().Be(2, "MaxConnectAttempts bounds the attempts; the third address was vetted but not tried");
        policy.Addresses.Should().HaveCount(3);
    }

    [Fact]
    public async Task Connect_NameDoesNotResolve_NameResolutionErrorNotADenial()
    {
        var policy = new FakeEgressPolicy("nowhere.test");
        var connector = new EgressConnector(policy, new EgressHttpOptions { Resolver = new MapResolver() }, null, null);

        var act = async () => await connector.ConnectAsync("nowhere.test", 443, null, CancellationToken.None);

        (await act.Should().ThrowExactlyAsync<HttpRequestException>()).Which.HttpRequestError.Should().Be(HttpRequestError.NameResolutionError);
    }

    [Fact]
    public async Task Connect_IpLiteral_NotResolvedAndVetted()
    {
        var policy = new FakeEgressPolicy();
        var resolver = new MapResolver();
        var connector = new EgressConnector(policy, new EgressHttpOptions { Resolver = resolver }, null, null, (_, _) => ValueTask.FromResult<Stream>(new MemoryStream()));

        var act = async () => await connector.ConnectAsync("169.254.169.254", 80, null, CancellationToken.None);

        (await act.Should().ThrowExactlyAsync<EgressDeniedException>()).Which.Decision.Reason.Should().Be(EgressReason.NonPublicAddress);
        resolver.Calls.Should().Be(0);
    }

    [Fact]
    public async Task Connect_SandboxFromRequestOptions_ReachesPolicy()
    {
        var policy = new FakeEgressPolicy("api.test");
        var resolver = new MapResolver().Map("api.test", "198.51.100.1");
        var connector = new EgressConnector(policy, new EgressHttpOptions { Resolver = resolver, Sandbox = "default-box" }, null, null, (_, _) => ValueTask.FromResult<Stream>(new MemoryStream()));
        using var request = new HttpRequestMessage(HttpMethod.Get, "https://api.test/");
        request.Options.Set(EgressRequestOptions.Sandbox, "sandbox-7");

        await using var stream = await connector.ConnectAsync("api.test", 443, request, CancellationToken.None);

        policy.Sandboxes.Should().OnlyContain(s => s == "sandbox-7");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(301_000)]
    public void Options_TimeoutOutOfRange_Throws(int ms)
    {
        var act = () => EgressConnectCallback.Create(new FakeEgressPolicy(), new EgressHttpOptions { ConnectAttemptTimeout = TimeSpan.FromMilliseconds(ms) });

        act.Should().Throw<ArgumentOutOfRangeException>().WithParameterName("ConnectAttemptTimeout");
    }

    [Fact]
    public async Task RealPolicy_NameAllowedResolvingToLoopback_DeniedUnlessPrivateAllow()
    {
        const string json = """{ "schemaVersion": 1, "generation": 1, "mode": "Strict", "allow": [ { "host": "api.test", "ports": ["*"] } ] }""";
        var fs = new MockFileSystem(new Dictionary<string, MockFileData> { ["/p/policy.json"] = new(json) });
        await using var server = new LoopbackHttpServer();
        var resolver = new MapResolver().Map("api.test", "127.0.0.1");
        var uri = new Uri($"http://api.test:{server.Port}/");

        using (var strict = Client(EgressPolicy.Load("/p/policy.json", fileSystem: fs), resolver, withHandler: true))
        {
            var act = () => strict.GetAsync(uri);
            var denial = (await act.Should().ThrowExactlyAsync<EgressDeniedException>()).Which;
            denial.Checkpoint.Should().Be(EgressCheckpoint.ResolvedAddress);
            denial.Decision.Reason.Should().Be(EgressReason.NonPublicAddress);
            server.Connections.Should().Be(0);
        }

        // The host trusts loopback (KarsEgressOptions.PrivateAllow): the same name now connects.
        var options = new KarsEgressOptions();
        options.PrivateAllow.Add("127.0.0.0/8");
        using var trusting = Client(EgressPolicy.Load("/p/policy.json", options, fs), resolver, withHandler: true);
        (await trusting.GetStringAsync(uri)).Should().Be("hello");
        server.Connections.Should().Be(1);
    }
}
