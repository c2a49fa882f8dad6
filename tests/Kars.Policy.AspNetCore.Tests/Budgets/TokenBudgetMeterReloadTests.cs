using System.Net;
using System.Net.Http;
using FluentAssertions;
using Kars.Policy.Budgets;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Time.Testing;
using Xunit;

namespace Kars.Policy.AspNetCore.Tests.Budgets;

/// <summary>
/// Without a meter in the options the gate resolves the container's <see cref="BudgetMeter"/> for every request, so a
/// host that rebuilds the meter when its budget configuration reloads (as <c>AddKarsPolicy</c> does) is followed.
/// </summary>
public sealed class TokenBudgetMeterReloadTests
{
    private const string Body = """{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}""";

    [Fact]
    public async Task ContainerMeter_SwappedBetweenRequests_TheNextRequestUsesTheNewLimits()
    {
        FakeTimeProvider time = GateHost.Clock();
        await using var store = new InMemoryBudgetStore(time);
        var generous = new BudgetMeter(store, new BudgetPolicy(new BudgetLimits(day: 100_000)), timeProvider: time);
        var strict = new BudgetMeter(store, new BudgetPolicy(new BudgetLimits(day: 1)), timeProvider: time);
        BudgetMeter current = generous;
        using IHost host = new HostBuilder()
            .ConfigureWebHost(web => web
                .UseTestServer()
                .ConfigureServices(services => services.AddTransient(_ => current))
                .Configure(app =>
                {
                    app.UseKarsTokenBudget(new KarsTokenBudgetOptions { KeyResolver = _ => GateHost.Key });
                    app.Run(Upstream.Json("""{"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"""));
                }))
            .Build();
        await host.StartAsync();
        using HttpClient client = host.GetTestClient();

        using HttpResponseMessage first = await client.PostAsync("/v1/chat/completions", GateHost.Json(Body));
        current = strict;
        using HttpResponseMessage second = await client.PostAsync("/v1/chat/completions", GateHost.Json(Body));

        first.StatusCode.Should().Be(HttpStatusCode.OK);
        second.StatusCode.Should().Be((HttpStatusCode)429, "the reloaded meter's day limit of 1 token has no room");
        await host.StopAsync();
    }

    [Fact]
    public async Task MeterInTheOptions_IsUsedAsItIs_EvenWhenTheContainerHasAnother()
    {
        FakeTimeProvider time = GateHost.Clock();
        await using var store = new InMemoryBudgetStore(time);
        var generous = new BudgetMeter(store, new BudgetPolicy(new BudgetLimits(day: 100_000)), timeProvider: time);
        var strict = new BudgetMeter(store, new BudgetPolicy(new BudgetLimits(day: 1)), timeProvider: time);
        using IHost host = new HostBuilder()
            .ConfigureWebHost(web => web
                .UseTestServer()
                .ConfigureServices(services => services.AddSingleton(strict))
                .Configure(app =>
                {
                    app.UseKarsTokenBudget(new KarsTokenBudgetOptions { Meter = generous, KeyResolver = _ => GateHost.Key });
                    app.Run(Upstream.Json("""{"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"""));
                }))
            .Build();
        await host.StartAsync();
        using HttpClient client = host.GetTestClient();

        using HttpResponseMessage response = await client.PostAsync("/v1/chat/completions", GateHost.Json(Body));

        response.StatusCode.Should().Be(HttpStatusCode.OK);
        await host.StopAsync();
    }
}
