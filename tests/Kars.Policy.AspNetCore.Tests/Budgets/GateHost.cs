using System.Net.Http;
using System.Text;
using Kars.Policy.Budgets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Time.Testing;
using NodaTime;

namespace Kars.Policy.AspNetCore.Tests.Budgets;

/// <summary>A TestServer with the token-budget gate in front of a fake upstream (the terminal delegate).</summary>
internal sealed class GateHost : IAsyncDisposable
{
    public const string Key = "sandbox-a";

    private readonly IHost _host;

    private GateHost(IHost host, BudgetMeter meter, BudgetStore store, FakeTimeProvider time)
    {
        Time = time;
        _host = host;
        Meter = meter;
        Store = store;
        Client = host.GetTestClient();
    }

    /// <summary>A clock at 2026-03-10 10:20:30 UTC (a Tuesday, mid-hour).</summary>
    public static FakeTimeProvider Clock() => new(new DateTimeOffset(2026, 3, 10, 10, 20, 30, TimeSpan.Zero));

    public BudgetMeter Meter { get; }

    /// <summary>The clock of the in-memory store (when the test did not bring its own store).</summary>
    public FakeTimeProvider Time { get; }

    public BudgetStore Store { get; }

    public HttpClient Client { get; }

    /// <summary>The last request body the upstream received.</summary>
    public string? LastUpstreamBody { get; private set; }

    public static async Task<GateHost> StartAsync(
        RequestDelegate upstream,
        BudgetPolicy? policy = null,
        BudgetStore? store = null,
        Action<KarsTokenBudgetOptions>? configure = null,
        Microsoft.Extensions.Logging.ILoggerFactory? logging = null)
    {
        FakeTimeProvider time = Clock();
        store ??= new InMemoryBudgetStore(time);
        var meter = new BudgetMeter(store, policy ?? new BudgetPolicy(new BudgetLimits(day: 100_000)), timeProvider: time);
        GateHost? self = null;
        var host = new HostBuilder()
            .ConfigureServices(services =>
            {
                if (logging is not null)
                {
                    Microsoft.Extensions.DependencyInjection.ServiceCollectionServiceExtensions.AddSingleton(services, logging);
                }
            })
            .ConfigureWebHost(web => web
                .UseTestServer()
                .Configure(app =>
                {
                    var options = new KarsTokenBudgetOptions { Meter = meter, KeyResolver = ctx => ctx.Request.Headers["x-test-key"].FirstOrDefault() ?? Key };
                    configure?.Invoke(options);
                    app.UseKarsTokenBudget(options);
                    app.Run(async ctx =>
                    {
                        using var reader = new StreamReader(ctx.Request.Body, Encoding.UTF8);
                        self!.LastUpstreamBody = await reader.ReadToEndAsync();
                        await upstream(ctx);
                    });
                }))
            .Build();
        await host.StartAsync();
        self = new GateHost(host, meter, store, time);
        return self;
    }

    public static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    public async Task<(long Used, long Held)> DayAsync(string key = Key)
    {
        BudgetStatus status = await Meter.GetStatusAsync(key);
        BudgetWindowStatus day = status.Windows.Single(w => w.Window == BudgetWindow.Day);
        return (day.Used, day.Held);
    }

    public async ValueTask DisposeAsync()
    {
        Client.Dispose();
        await _host.StopAsync();
        _host.Dispose();
        await Store.DisposeAsync();
    }
}

/// <summary>Fake upstream responses.</summary>
internal static class Upstream
{
    public static RequestDelegate Json(string body, int status = 200) => async ctx =>
    {
        ctx.Response.StatusCode = status;
        ctx.Response.ContentType = "application/json";
        await ctx.Response.WriteAsync(body);
    };

    /// <summary>Writes each piece and flushes it, as a streaming upstream does.</summary>
    public static RequestDelegate Sse(params string[] pieces) => async ctx =>
    {
        ctx.Response.ContentType = "text/event-stream";
        foreach (string piece in pieces)
        {
            await ctx.Response.WriteAsync(piece);
            await ctx.Response.Body.FlushAsync();
        }
    };
}

/// <summary>A store that cannot be reached, as the Redis store in <c>Closed</c> failure mode throws (or throws what
/// <paramref name="failure"/> makes).</summary>
internal sealed class UnavailableStore(Func<Exception>? failure = null) : BudgetStore
{
    protected override ValueTask<BudgetDecision> TryReserveCoreAsync(BudgetRequest request, CancellationToken cancellationToken)
        => throw (failure?.Invoke() ?? new BudgetStoreUnavailableException("The Redis budget store could not complete the reserve: connection refused"));

    protected override ValueTask<BudgetSettlement> SettleCoreAsync(long leaseId, long actualTokens, Instant? at, CancellationToken cancellationToken)
        => throw new BudgetStoreUnavailableException("down");

    protected override ValueTask<BudgetSettlement> AbandonCoreAsync(long leaseId, Instant? at, CancellationToken cancellationToken)
        => throw new BudgetStoreUnavailableException("down");

    protected override ValueTask<BudgetStatus> GetStatusCoreAsync(BudgetLevel level, BudgetLevel? parent, Instant? at, CancellationToken cancellationToken)
        => throw new BudgetStoreUnavailableException("down");
}

/// <summary>Admits through an in-memory store, then cannot record settlements (the store went away mid-response),
/// throwing what <paramref name="failure"/> makes.</summary>
internal sealed class SettleFailsStore(Func<Exception>? failure = null) : BudgetStore
{
    private readonly InMemoryBudgetStore _inner = new(GateHost.Clock());

    protected override async ValueTask<BudgetDecision> TryReserveCoreAsync(BudgetRequest request, CancellationToken cancellationToken)
    {
        BudgetDecision d = await _inner.TryReserveAsync(request, cancellationToken);
        BudgetLease lease = d.Lease.IsValid ? CreateLease(d.Lease.Id, d.Lease.Tokens, d.Lease.ExpiresAt) : default;
        return new BudgetDecision(d.Reason, d.Tokens, lease, d.RetryAfter, d.At, d.Limits, d.Remaining, d.BlockingWindow, d.IsUnmetered);
    }

    protected override ValueTask<BudgetSettlement> SettleCoreAsync(long leaseId, long actualTokens, Instant? at, CancellationToken cancellationToken)
        => throw (failure?.Invoke() ?? new BudgetStoreUnavailableException("down"));

    protected override ValueTask<BudgetSettlement> AbandonCoreAsync(long leaseId, Instant? at, CancellationToken cancellationToken)
        => throw (failure?.Invoke() ?? new BudgetStoreUnavailableException("down"));

    protected override ValueTask<BudgetStatus> GetStatusCoreAsync(BudgetLevel level, BudgetLevel? parent, Instant? at, CancellationToken cancellationToken)
        => _inner.GetStatusAsync(level, parent, at, cancellationToken);

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _inner.Dispose();
        }

        base.Dispose(disposing);
    }
}
