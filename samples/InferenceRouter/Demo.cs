using System.ClientModel;
using System.ClientModel.Primitives;
using System.Text;
using Kars.Policy.Budgets;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using OpenAI;
using OpenAI.Chat;

namespace InferenceRouter;

/// <summary>
/// <c>--demo</c>: starts a fake upstream and the router on loopback, drives the router with the official OpenAI .NET
/// SDK and prints what happened (CI checks these lines). Exit code 0 only when every call went as expected.
/// </summary>
public static class Demo
{
    /// <summary>The router's own key for the fake upstream.</summary>
    public const string UpstreamKey = "sk-upstream-demo";

    /// <summary>Alice's key: a sandbox with the default daily budget.</summary>
    public const string AliceKey = "sk-router-alice";

    /// <summary>Bob's key: a sandbox whose daily budget is 100 tokens (the demo spends 95 of them first).</summary>
    public const string BobKey = "sk-router-bob";

    /// <summary>Carol's key: a sandbox whose upstream (<c>blocked.example</c>) the egress policy does not allow.</summary>
    public const string CarolKey = "sk-router-carol";

    /// <summary>The configuration of the demo (and of the tests): everything on loopback, names mapped by a hosts
    /// table, the fake upstream as the default upstream.</summary>
    /// <param name="upstreamPort">The fake upstream's port.</param>
    /// <returns>The settings.</returns>
    public static Dictionary<string, string?> Settings(int upstreamPort) => new()
    {
        ["Logging:LogLevel:Default"] = "Warning",
        ["Router:PolicyPath"] = "policy.json",
        // Loopback plays the internet here, so the host trusts it; upstream.example is on the policy's allowlist,
        // blocked.example is not. Both resolve to the fake upstream.
        ["Router:PrivateAllow:0"] = "127.0.0.0/8",
        ["Router:Hosts:upstream.example:0"] = "127.0.0.1",
        ["Router:Hosts:blocked.example:0"] = "127.0.0.1",
        ["Router:UseSystemProxy"] = "false",
        ["Router:Upstream:BaseUrl"] = $"http://upstream.example:{upstreamPort}/v1/",
        ["Router:Upstream:ApiKey"] = UpstreamKey,
        ["Router:SandboxUpstreams:carol:BaseUrl"] = $"http://blocked.example:{upstreamPort}/v1/",
        ["Router:SandboxUpstreams:carol:ApiKey"] = UpstreamKey,
        ["Router:Clients:0:ApiKey"] = AliceKey,
        ["Router:Clients:0:Sandbox"] = "alice",
        ["Router:Clients:1:ApiKey"] = BobKey,
        ["Router:Clients:1:Sandbox"] = "bob",
        ["Router:Clients:2:ApiKey"] = CarolKey,
        ["Router:Clients:2:Sandbox"] = "carol",
        ["Router:Budget:PerRequestTokens"] = "4000",
        ["Router:Budget:DefaultCompletionTokens"] = "256",
        ["Router:Budget:Day"] = "100000",
        ["Router:Budget:Sandboxes:0:Sandbox"] = "bob",
        ["Router:Budget:Sandboxes:0:Day"] = "100",
    };

    /// <summary>Builds the router with <see cref="Settings"/> only (no appsettings.json), listening on 127.0.0.1 and a
    /// free port.</summary>
    /// <param name="upstreamPort">The fake upstream's port.</param>
    /// <param name="configure">Further changes (tests).</param>
    /// <returns>The application, not started.</returns>
    public static WebApplication BuildRouter(int upstreamPort, Action<WebApplicationBuilder>? configure = null)
    {
        var app = RouterApp.Build([], builder =>
        {
            builder.Configuration.Sources.Clear();
            builder.Configuration.AddInMemoryCollection(Settings(upstreamPort));
            configure?.Invoke(builder);
        });
        app.Urls.Clear();
        app.Urls.Add("http://127.0.0.1:0");
        return app;
    }

    /// <summary>Gets the base address of a started application.</summary>
    /// <param name="app">The application.</param>
    /// <returns>Its first address.</returns>
    public static Uri Address(WebApplication app) =>
        new(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());

    /// <summary>An OpenAI SDK chat client for the router (no retries, so a 429 surfaces at once).</summary>
    /// <param name="router">The router's base address.</param>
    /// <param name="apiKey">The client's key.</param>
    /// <returns>The client.</returns>
    public static ChatClient ChatClient(Uri router, string apiKey) => new(
        "gpt-4o-mini",
        new ApiKeyCredential(apiKey),
        new OpenAIClientOptions { Endpoint = new Uri(router, "/v1"), RetryPolicy = new ClientRetryPolicy(maxRetries: 0) });

    /// <summary>Runs the demo.</summary>
    /// <param name="output">Where to print.</param>
    /// <returns>0 when every call went as expected, 1 otherwise.</returns>
    public static async Task<int> RunAsync(TextWriter output)
    {
        ArgumentNullException.ThrowIfNull(output);
        await using var upstream = await FakeUpstream.StartAsync(UpstreamKey);
        await using var app = BuildRouter(upstream.Port);
        await app.StartAsync();
        Uri router = Address(app);
        var meter = app.Services.GetRequiredService<BudgetMeter>();
        var failures = new List<string>();
        output.WriteLine($"router on {router}, upstream http://upstream.example:{upstream.Port}/v1/ (a fake on 127.0.0.1)");

        // begin-snippet: inference-router-client
        ChatClient alice = ChatClient(router, AliceKey);
        ChatCompletion completion = await alice.CompleteChatAsync([new UserChatMessage("Say hello")]);
        output.WriteLine($"chat   alice -> \"{completion.Content[0].Text}\", usage {completion.Usage.TotalTokenCount} tokens, budget used {await DayUsedAsync(meter, "alice")}");

        var streamed = new StringBuilder();
        int updates = 0;
        ChatTokenUsage? usage = null;
        await foreach (StreamingChatCompletionUpdate update in alice.CompleteChatStreamingAsync([new UserChatMessage("Count to three")]))
        {
            updates++;
            foreach (ChatMessageContentPart part in update.ContentUpdate)
            {
                streamed.Append(part.Text);
            }

            usage = update.Usage ?? usage;
        }
        // end-snippet

        output.WriteLine($"stream alice -> \"{streamed}\" in {updates} update(s), usage {usage?.TotalTokenCount.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none"} tokens, budget used {await DayUsedAsync(meter, "alice")}");
        long expected = upstream.Calls.Sum(c => (long)(c.Usage?.TotalTokens ?? 0));
        if (await DayUsedAsync(meter, "alice") != expected)
        {
            failures.Add($"alice's budget should hold exactly the upstream's usage ({expected})");
        }

        // Bob has already spent 95 of his 100 tokens today; a request that holds 16 completion tokens plus its prompt
        // fits his daily limit but not what is left of it: 429 with Retry-After (seconds until the day rolls over).
        await SpendAsync(meter, "bob", 95);
        output.WriteLine($"bob has used {await DayUsedAsync(meter, "bob")} of his 100 tokens today");
        await ExpectErrorAsync(output, "bob  ", ChatClient(router, BobKey), 429, failures);
        await ExpectErrorAsync(output, "carol", ChatClient(router, CarolKey), 403, failures);
        await ExpectErrorAsync(output, "nokey", ChatClient(router, "sk-unknown"), 401, failures);

        output.WriteLine($"the fake upstream answered {upstream.Calls.Count} call(s)");
        if (upstream.Calls.Count != 2)
        {
            failures.Add("only alice's two calls should have reached the upstream");
        }

        foreach (string failure in failures)
        {
            output.WriteLine("FAILED: " + failure);
        }

        output.WriteLine(failures.Count == 0 ? "demo: ok" : "demo: FAILED");
        await app.StopAsync();
        return failures.Count == 0 ? 0 : 1;
    }

    private static async Task ExpectErrorAsync(TextWriter output, string who, ChatClient client, int status, List<string> failures)
    {
        try
        {
            await client.CompleteChatAsync([new UserChatMessage("Hello")], new ChatCompletionOptions { MaxOutputTokenCount = 16 });
            output.WriteLine($"chat   {who} -> answered");
            failures.Add($"{who.Trim()}: expected HTTP {status}, got an answer");
        }
        catch (ClientResultException e)
        {
            PipelineResponse? response = e.GetRawResponse();
            string retryAfter = response is not null && response.Headers.TryGetValue("Retry-After", out string? value) ? $", Retry-After {value}" : string.Empty;
            output.WriteLine($"chat   {who} -> HTTP {e.Status}{retryAfter} {response?.Content}");
            if (e.Status != status)
            {
                failures.Add($"{who.Trim()}: expected HTTP {status}, got {e.Status}");
            }
        }
    }

    /// <summary>Records <paramref name="tokens"/> as spent by <paramref name="sandbox"/> (as an earlier call would have).</summary>
    /// <param name="meter">The router's meter.</param>
    /// <param name="sandbox">The sandbox.</param>
    /// <param name="tokens">The tokens.</param>
    /// <returns>A task.</returns>
    public static async Task SpendAsync(BudgetMeter meter, string sandbox, long tokens)
    {
        ArgumentNullException.ThrowIfNull(meter);
        BudgetDecision decision = await meter.TryReserveAsync(sandbox, tokens);
        if (!decision.IsAdmitted)
        {
            throw new InvalidOperationException($"{sandbox} cannot spend {tokens} tokens: {decision}");
        }

        await decision.Lease.SettleAsync(tokens);
    }

    /// <summary>Reads how many tokens a sandbox has used today (settled usage and open holds).</summary>
    /// <param name="meter">The router's meter.</param>
    /// <param name="sandbox">The sandbox.</param>
    /// <returns>Used plus held tokens in the day window.</returns>
    public static async Task<long> DayUsedAsync(BudgetMeter meter, string sandbox)
    {
        ArgumentNullException.ThrowIfNull(meter);
        BudgetStatus status = await meter.GetStatusAsync(sandbox);
        BudgetWindowStatus? day = status.Windows.FirstOrDefault(w => w.Window == BudgetWindow.Day);
        return day is null ? 0 : day.Used + day.Held;
    }
}
