using System.Net;
using System.Net.Http;
using System.Text;
using Kars.Policy.Budgets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Kars.Policy.AspNetCore.Tests.Budgets;

/// <summary>The token-budget gate on a real Kestrel server on 127.0.0.1 (port 0), driven over HTTP.</summary>
public sealed class TokenBudgetKestrelTests
{
    private const string StreamChatBody = """{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":200,"stream":true}""";

    private static long Hold => (Encoding.UTF8.GetByteCount(StreamChatBody) + 3) / 4 + 200;

    private static async Task<(WebApplication App, BudgetMeter Meter, Uri Url)> StartAsync(RequestDelegate upstream)
    {
        var store = new InMemoryBudgetStore();
        var meter = new BudgetMeter(store, new BudgetPolicy(new BudgetLimits(day: 1_000_000)));
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Services.AddSingleton(meter);
        builder.WebHost.UseKestrel(o => o.Listen(IPAddress.Loopback, 0));
        var app = builder.Build();
        app.UseKarsTokenBudget(new KarsTokenBudgetOptions { KeyResolver = _ => "k" });
        app.Run(upstream);
        await app.StartAsync();
        string address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        return (app, meter, new Uri(new Uri(address), "/v1/chat/completions"));
    }

    private static async Task<(long Used, long Held)> DayAsync(BudgetMeter meter)
    {
        var day = (await meter.GetStatusAsync("k")).Windows.Single(w => w.Window == BudgetWindow.Day);
        return (day.Used, day.Held);
    }

    /// <summary>Waits (bounded) until the gate has closed the lease: no assertion on time, only on the outcome.</summary>
    private static async Task<(long Used, long Held)> SettledAsync(BudgetMeter meter)
    {
        for (int i = 0; i < 600; i++)
        {
            var day = await DayAsync(meter);
            if (day.Held == 0 && day.Used > 0)
            {
                return day;
            }

            await Task.Delay(50);
        }

        return await DayAsync(meter);
    }

    [Fact]
    public async Task Stream_HeadersBeforeBody_IncludeUsage_SettlesExact()
    {
        var headersSeen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        string? forwarded = null;
        var (app, meter, url) = await StartAsync(async ctx =>
        {
            forwarded = await new StreamReader(ctx.Request.Body).ReadToEndAsync();
            ctx.Response.ContentType = "text/event-stream";
            await ctx.Response.WriteAsync("data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n");
            await ctx.Response.Body.FlushAsync();

            // The rest of the stream is written only after the client has read the headers: they came first.
            await headersSeen.Task.WaitAsync(TimeSpan.FromSeconds(30));
            await ctx.Response.WriteAsync("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":22,\"total_tokens\":33}}\n\ndata: [DONE]\n\n");
        });
        await using var _ = app;
        using var client = new HttpClient();

        using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new StringContent(StreamChatBody, Encoding.UTF8, "application/json") };
        using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        response.Headers.GetValues("x-ratelimit-remaining-tokens").Single().Should().Be((1_000_000 - Hold).ToString(System.Globalization.CultureInfo.InvariantCulture));
        response.Headers.Contains("RateLimit").Should().BeTrue();
        headersSeen.SetResult();
        string text = await response.Content.ReadAsStringAsync();

        text.Should().EndWith("data: [DONE]\n\n");
        forwarded.Should().Contain("\"stream_options\":{\"include_usage\":true}");
        (await SettledAsync(meter)).Should().Be((33L, 0L));
    }

    [Fact]
    public async Task ClientAbortMidStream_ChargesHold()
    {
        var aborted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var (app, meter, url) = await StartAsync(async ctx =>
        {
            ctx.Response.ContentType = "text/event-stream";
            await ctx.Response.WriteAsync("data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n");
            await ctx.Response.Body.FlushAsync();
            try
            {
                await Task.Delay(Timeout.Infinite, ctx.RequestAborted).WaitAsync(TimeSpan.FromSeconds(30));
            }
            catch (OperationCanceledException)
            {
            }

            aborted.TrySetResult();

            // A usage event after the client left proves nothing: the gate must still charge the hold.
            try
            {
                await ctx.Response.WriteAsync("data: {\"choices\":[],\"usage\":{\"total_tokens\":1}}\n\ndata: [DONE]\n\n");
            }
            catch (Exception ex) when (ex is IOException or OperationCanceledException)
            {
            }
        });
        await using var _ = app;
        using (var client = new HttpClient())
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new StringContent(StreamChatBody, Encoding.UTF8, "application/json") };
            using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            var stream = await response.Content.ReadAsStreamAsync();
            var buffer = new byte[16];
            (await stream.ReadAsync(buffer)).Should().BeGreaterThan(0);
        }

        // Disposing the client and response aborts the connection.
        await aborted.Task.WaitAsync(TimeSpan.FromSeconds(30));
        (await SettledAsync(meter)).Should().Be((Hold, 0L));
    }

    [Fact]
    public async Task ClientAbortAfterUsageAboveHold_ChargesTheReportedUsage()
    {
        // Anthropic reports the input at the start of the stream; when it is above the hold (the hold's prompt part is
        // an estimate) and the client leaves, the reported usage is charged, not the lower hold.
        const string body = """{"model":"claude","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}""";
        var aborted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var (app, meter, url) = await StartAsync(async ctx =>
        {
            ctx.Response.ContentType = "text/event-stream";
            await ctx.Response.WriteAsync("event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5000,\"output_tokens\":1}}}\n\n");
            await ctx.Response.Body.FlushAsync();
            try
            {
                await Task.Delay(Timeout.Infinite, ctx.RequestAborted).WaitAsync(TimeSpan.FromSeconds(30));
            }
            catch (OperationCanceledException)
            {
            }

            aborted.TrySetResult();
        });
        await using var _ = app;
        using (var client = new HttpClient())
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(url, "/v1/messages")) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
            using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            var stream = await response.Content.ReadAsStreamAsync();
            var buffer = new byte[16];
            (await stream.ReadAsync(buffer)).Should().BeGreaterThan(0);
        }

        await aborted.Task.WaitAsync(TimeSpan.FromSeconds(30));
        (await SettledAsync(meter)).Should().Be((5_001L, 0L));
    }
}
