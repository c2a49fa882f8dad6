// HttpClient egress sample: one local server on 127.0.0.1 stands in for the internet, and a hosts map stands in
// for DNS, so the sample needs no network. Run from the repository root:
//   dotnet run --project samples/HttpClientEgress
using System.Net;
using System.Net.Sockets;
using System.Text;
using Kars.Policy.Egress;
using Kars.Policy.Http;

await using var server = new LocalServer();
int port = server.Port;

// begin-snippet: httpclient-egress
// The policy allows api.example and internal.example (any port); blocked.example is not allowed. In this sample
// loopback plays the public internet, so the host trusts 127.0.0.0/8 (KarsEgressOptions.PrivateAllow); 10.0.0.0/8
// stays non-public.
var egressOptions = new KarsEgressOptions();
egressOptions.PrivateAllow.Add("127.0.0.0/8");
IEgressPolicy policy = EgressPolicy.Load(Path.Combine(AppContext.BaseDirectory, "policy.json"), egressOptions);

var resolver = new HostsResolver(new()
{
    ["api.example"] = [IPAddress.Loopback],
    ["blocked.example"] = [IPAddress.Loopback],
    ["internal.example"] = [IPAddress.Parse("10.0.0.5")],   // an allowed name that resolves to a private address
});

// The handler checks each request; the connect callback checks each connection (redirect hops included),
// resolving once and connecting only to the vetted addresses.
var primary = EgressConnectCallback.CreateHandler(policy, new EgressHttpOptions { Resolver = resolver });
primary.UseProxy = false;
using var client = new HttpClient(new EgressPolicyHandler(policy) { InnerHandler = primary });

foreach (var url in new[]
{
    $"http://api.example:{port}/hello",      // allowed
    "http://evil.example/",                   // not on the allowlist
    $"http://api.example:{port}/redirect",   // allowed, but redirects to blocked.example
    $"http://internal.example:{port}/",      // allowed name, private address
})
{
    try
    {
        using var response = await client.GetAsync(new Uri(url));
        Console.WriteLine($"ALLOW {url} -> {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
    }
    catch (EgressDeniedException denied)
    {
        Console.WriteLine($"DENY  {url} -> {denied.Decision.Reason} at {denied.Checkpoint}");
    }
}
// end-snippet

Console.WriteLine($"the local server saw {server.Requests} request(s)");

/// <summary>A hosts map in place of DNS.</summary>
internal sealed class HostsResolver(Dictionary<string, IPAddress[]> map) : EgressNameResolver
{
    protected override ValueTask<IPAddress[]> ResolveCoreAsync(string host, CancellationToken cancellationToken) =>
        ValueTask.FromResult(map.TryGetValue(host, out var addresses) ? addresses : []);
}

/// <summary>A minimal HTTP/1.1 server on 127.0.0.1: /redirect answers 302 to blocked.example, anything else 200.</summary>
internal sealed class LocalServer : IAsyncDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
    private readonly Task _loop;
    private int _requests;

    public LocalServer()
    {
        _listener.Start();
        _loop = Task.Run(async () =>
        {
            while (true)
            {
                TcpClient tcp;
                try
                {
                    tcp = await _listener.AcceptTcpClientAsync();
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException)
                {
                    return;
                }

                using (tcp)
                {
                    var reader = new StreamReader(tcp.GetStream(), Encoding.ASCII);
                    string requestLine = await reader.ReadLineAsync() ?? string.Empty;
                    while (!string.IsNullOrEmpty(await reader.ReadLineAsync()))
                    {
                    }

                    Interlocked.Increment(ref _requests);
                    string response = requestLine.Contains(" /redirect ", StringComparison.Ordinal)
                        ? $"HTTP/1.1 302 Found\r\nLocation: http://blocked.example:{Port}/landed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        : "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
                    await tcp.GetStream().WriteAsync(Encoding.ASCII.GetBytes(response));
                }
            }
        });
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public int Requests => Volatile.Read(ref _requests);

    public async ValueTask DisposeAsync()
    {
        _listener.Stop();
        await _loop;
    }
}
