using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Kars.Policy.AspNetCore;
using Kars.Policy.Egress;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Kars.Policy.AspNetCore.Tests.Egress;

/// <summary>Real Kestrel servers on loopback: an upstream (plain HTTP and HTTPS with a throw-away certificate for
/// <c>upstream.test</c>) and the egress proxy in front of it.</summary>
internal sealed class Kestrels : IAsyncDisposable
{
    private readonly List<WebApplication> _apps = [];
    private int _upstreamHits;

    public int UpstreamHits => Volatile.Read(ref _upstreamHits);

    public int UpstreamPort { get; private set; }

    public int UpstreamTlsPort { get; private set; }

    public int ProxyPort { get; private set; }

    public static async Task<Kestrels> StartAsync(IEgressPolicy policy, KarsEgressProxyOptions options)
    {
        var k = new Kestrels();
        using var cert = CreateCertificate();
        var tls = X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pfx), null);

        var upstream = WebApplication.CreateSlimBuilder();
        upstream.Logging.ClearProviders();
        upstream.WebHost.UseKestrel(o =>
        {
            o.Listen(IPAddress.Loopback, 0);
            o.Listen(IPAddress.Loopback, 0, l => l.UseHttps(tls));
        });
        var up = upstream.Build();
        up.Use((HttpContext ctx, RequestDelegate next) =>
        {
            Interlocked.Increment(ref k._upstreamHits);
            return next(ctx);
        });
        up.MapGet("/hello", (HttpContext ctx) => $"upstream says hi over {ctx.Request.Scheme}");
        await up.StartAsync();
        k._apps.Add(up);
        var ports = Ports(up);
        k.UpstreamPort = ports[0];
        k.UpstreamTlsPort = ports[1];

        var proxy = WebApplication.CreateSlimBuilder();
        proxy.Logging.ClearProviders();
        proxy.Services.AddSingleton(policy);
        proxy.WebHost.UseKestrel(o => o.Listen(IPAddress.Loopback, 0, l => l.UseKarsEgressProxyTunnels(options)));
        var px = proxy.Build();
        px.UseKarsEgressProxy(options);
        px.Run(ctx =>
        {
            ctx.Response.StatusCode = 404;
            return ctx.Response.WriteAsync("not a proxy request");
        });
        await px.StartAsync();
        k._apps.Add(px);
        k.ProxyPort = Ports(px)[0];
        return k;
    }

    private static int[] Ports(WebApplication app) =>
        app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses
            .Select(a => new Uri(a).Port).ToArray();

    private static X509Certificate2 CreateCertificate()
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=upstream.test", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("upstream.test");
        request.CertificateExtensions.Add(san.Build());
        var now = new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);
        return request.CreateSelfSigned(now.AddYears(-1), now.AddYears(10));
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var app in _apps)
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
    }
}
