using System.Net;
using System.Net.Http;
using System.Text;
using Kars.Policy.Budgets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Kars.Policy.AspNetCore.Tests.Budgets;

/// <summary>The gate in front of a real endpoint-routing <c>MapPost</c>: every spelling routing serves is metered.</summary>
public sealed class TokenBudgetRoutingTests
{
    private const string ChatBody = """{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":10}""";

    [Theory]
    [InlineData("/v1/chat/completions")]
    [InlineData("/v1/chat/completions/")]
    [InlineData("/v1/chat/completions//")]
    [InlineData("//v1/chat/completions")]
    [InlineData("/v1//chat/completions")]
    [InlineData("/v1/chat//completions/")]
    [InlineData("/V1/Chat/Completions/")]
    public async Task MapPostEndpoint_EverySpellingRoutingServes_IsMetered(string path)
    {
        var time = GateHost.Clock();
        await using var store = new InMemoryBudgetStore(time);
        var meter = new BudgetMeter(store, new BudgetPolicy(new BudgetLimits(day: 100_000)), timeProvider: time);
        int served = 0;
        using IHost host = new HostBuilder()
            .ConfigureWebHost(web => web
                .UseTestServer()
                .ConfigureServices(services => services.AddRouting())
                .Configure(app =>
                {
                    app.UseKarsTokenBudget(new KarsTokenBudgetOptions { Meter = meter, KeyResolver = _ => GateHost.Key });
                    app.UseRouting();
                    app.UseEndpoints(endpoints => endpoints.MapPost("/v1/chat/completions", async ctx =>
                    {
                        Interlocked.Increment(ref served);
                        ctx.Response.ContentType = "application/json";
                        await ctx.Response.WriteAsync("""{"id":"x","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}""");
                    }));
                }))
            .Build();
        await host.StartAsync();
        using HttpClient client = host.GetTestClient();

        using var request = new HttpRequestMessage(HttpMethod.Post, "http://localhost" + path) { Content = new StringContent(ChatBody, Encoding.UTF8, "application/json") };
        using HttpResponseMessage response = await client.SendAsync(request);

        BudgetStatus status = await meter.GetStatusAsync(GateHost.Key);
        long used = status.Windows.Single(w => w.Window == BudgetWindow.Day).Used;
        if (served > 0)
        {
            response.StatusCode.Should().Be(HttpStatusCode.OK);
            used.Should().Be(7, "a request the endpoint served must have passed the gate and been settled from its usage");
        }
        else
        {
            used.Should().BeGreaterThan(0, "the gate meters every spelling that normalises to a route (fail closed): the hold is charged when no usage is proven");
        }

        if (path is "/v1/chat/completions" or "/v1/chat/completions/" or "/V1/Chat/Completions/")
        {
            served.Should().Be(1, "endpoint routing serves this spelling, which is what makes the gate's check matter");
        }

        await host.StopAsync();
    }

    [Theory]
    [InlineData("/v1/chat/completions/", "/v1/chat/completions")]
    [InlineData("//v1//chat///completions//", "/v1/chat/completions")]
    [InlineData("/", "/")]
    [InlineData("//", "/")]
    [InlineData("/v1/responses", "/v1/responses")]
    public void NormalizePath_CollapsesAndTrims(string path, string expected)
        => TokenBudgetSettings.NormalizePath(path).Should().Be(expected);
}
