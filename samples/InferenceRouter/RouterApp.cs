using System.Net.Http.Headers;
using System.Text.Json;
using Kars.Policy.AspNetCore;
using Kars.Policy.Budgets;
using Kars.Policy.Egress;
using Microsoft.Extensions.Primitives;

namespace InferenceRouter;

/// <summary>Builds the inference router: an OpenAI-compatible endpoint in front of a configured upstream, with a
/// token budget per sandbox and every outbound connection checked by the egress policy.</summary>
public static class RouterApp
{
    /// <summary>The <see cref="HttpContext.Items"/> key of the sandbox the client's API key stands for.</summary>
    public const string SandboxItem = "InferenceRouter.Sandbox";

    /// <summary>The name of the <see cref="IHttpClientFactory"/> client that talks to upstreams.</summary>
    public const string UpstreamClient = "upstream";

    /// <summary>Builds the application (not started).</summary>
    /// <param name="args">Command-line arguments (configuration).</param>
    /// <param name="configure">Runs before the router reads its options: tests and the demo add configuration or
    /// replace services here.</param>
    /// <returns>The application.</returns>
    /// <exception cref="InvalidOperationException">The configuration is invalid (every problem is listed).</exception>
    public static WebApplication Build(string[] args, Action<WebApplicationBuilder>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
        configure?.Invoke(builder);

        // Read and check the whole configuration once, before anything starts; report every problem together.
        var options = builder.Configuration.GetSection(RouterOptions.Section).Get<RouterOptions>() ?? new RouterOptions();
        var problems = new List<string>();
        var clients = ClientTable.Create(options, problems);
        var upstreams = UpstreamTable.Create(options, problems);
        var budgetPolicy = BudgetPolicies.Create(options.Budget, problems);
        var resolver = HostsResolver.Create(options.Hosts, problems);
        if (options.MaxRequestBodyBytes <= 0)
        {
            problems.Add("Router:MaxRequestBodyBytes must be positive.");
        }

        if (problems.Count > 0)
        {
            throw new InvalidOperationException("The router's configuration is invalid:" + Environment.NewLine + string.Join(Environment.NewLine, problems));
        }

        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(clients);
        builder.Services.AddSingleton(upstreams);
        builder.Services.AddSingleton<Forwarder>();

        // begin-snippet: inference-router-services
        // The egress policy (the real engine) decides every upstream the router may reach.
        builder.Services.AddSingleton<IEgressPolicy>(sp =>
        {
            var egress = new KarsEgressOptions();
            foreach (string range in options.PrivateAllow)
            {
                egress.PrivateAllow.Add(range);
            }

            return EgressPolicy.Load(Path.Combine(AppContext.BaseDirectory, options.PolicyPath), egress, loggerFactory: sp.GetService<ILoggerFactory>());
        });

        // The upstream client: EgressPolicyHandler checks each request, the connect callback each connection.
        builder.Services.AddHttpClient(UpstreamClient)
            .AddKarsEgressPolicy(o => o.Resolver = resolver)
            .ConfigurePrimaryHttpMessageHandler((handler, _) => ((SocketsHttpHandler)handler).UseProxy = options.UseSystemProxy);

        // Token budgets: one in-memory store; the counters live there, the meter applies the per-sandbox limits.
        builder.Services.AddSingleton<BudgetStore>(sp => new InMemoryBudgetStore(sp.GetService<TimeProvider>()));
        builder.Services.AddSingleton(sp => new BudgetMeter(sp.GetRequiredService<BudgetStore>(), budgetPolicy, timeProvider: sp.GetService<TimeProvider>()));
        // end-snippet

        var app = builder.Build();

        // Load the egress policy now, so a missing or invalid policy file stops the app at start, not at the first call.
        _ = app.Services.GetRequiredService<IEgressPolicy>();

        // begin-snippet: inference-router-pipeline
        // 1. Who is calling: the client's API key names a sandbox in the host's table; an unknown key is 401.
        // 2. Where the call would go: the sandbox's upstream must be allowed by the egress policy (403 otherwise),
        //    decided before the budget so a refused call reserves nothing.
        app.Use(ResolveSandboxAndCheckUpstream);

        // 3. The budget: the sandbox is the key (the host's answer, never a client header); the BudgetMeter comes
        //    from the services. Reserves before forwarding, switches on include_usage for streams, settles from
        //    the upstream's usage; 429 with Retry-After when the sandbox is over its budget.
        app.UseKarsTokenBudget(new KarsTokenBudgetOptions
        {
            KeyResolver = context => context.Items[SandboxItem] as string,
            MaxRequestBodyBytes = options.MaxRequestBodyBytes,
            DefaultCompletionTokens = options.Budget.DefaultCompletionTokens,
        });

        // 4. Forward, streaming the answer through as it arrives.
        var forwarder = app.Services.GetRequiredService<Forwarder>();
        app.MapPost("/v1/chat/completions", context => forwarder.ForwardAsync(context, "chat/completions"));
        app.MapPost("/v1/responses", context => forwarder.ForwardAsync(context, "responses"));
        // end-snippet

        return app;
    }

    private static async Task ResolveSandboxAndCheckUpstream(HttpContext context, RequestDelegate next)
    {
        // Routing matches paths ignoring case, so must this check: "/V1/..." reaches the same endpoints.
        if (!context.Request.Path.StartsWithSegments("/v1", StringComparison.OrdinalIgnoreCase))
        {
            await next(context);
            return;
        }

        var clients = context.RequestServices.GetRequiredService<ClientTable>();
        if (BearerToken(context.Request.Headers.Authorization) is not { } apiKey || !clients.TryResolve(apiKey, out string sandbox))
        {
            context.Response.Headers.WWWAuthenticate = "Bearer";
            await OpenAIError.WriteAsync(context, StatusCodes.Status401Unauthorized, "Unknown or missing API key.", "invalid_request_error", "invalid_api_key");
            return;
        }

        context.Items[SandboxItem] = sandbox;
        Upstream upstream = context.RequestServices.GetRequiredService<UpstreamTable>().For(sandbox);
        EgressDecision decision = context.RequestServices.GetRequiredService<IEgressPolicy>().Evaluate(upstream.BaseUri, sandbox);
        if (!decision.IsAllowed)
        {
            RouterLog.UpstreamDenied(context.RequestServices.GetRequiredService<ILogger<Forwarder>>(), decision.Reason, "Request");
            await OpenAIError.EgressDeniedAsync(context, decision.Reason);
            return;
        }

        await next(context);
    }

    private static string? BearerToken(StringValues authorization)
    {
        if (authorization.Count != 1 || authorization[0] is not { } value)
        {
            return null;
        }

        const string Scheme = "Bearer ";
        if (value.Length <= Scheme.Length || !value.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }

        string token = value[Scheme.Length..].Trim();
        return token.Length == 0 ? null : token;
    }
}

/// <summary>Errors in the OpenAI shape: <c>{"error":{"message","type","code"}}</c>.</summary>
internal static class OpenAIError
{
    public static async Task WriteAsync(HttpContext context, int status, string message, string type, string? code)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        await using var writer = new Utf8JsonWriter(context.Response.Body);
        writer.WriteStartObject();
        writer.WriteStartObject("error");
        writer.WriteString("message", message);
        writer.WriteString("type", type);
        if (code is null)
        {
            writer.WriteNull("code");
        }
        else
        {
            writer.WriteString("code", code);
        }

        writer.WriteEndObject();
        writer.WriteEndObject();
        await writer.FlushAsync(context.RequestAborted);
    }

    /// <summary>403: the egress policy refused the upstream (the reason in camel case; never the host).</summary>
    public static Task EgressDeniedAsync(HttpContext context, EgressReason reason) =>
        WriteAsync(context, StatusCodes.Status403Forbidden, "The egress policy does not allow the upstream of this request.", "egress_denied",
            JsonNamingPolicy.CamelCase.ConvertName(reason.ToString()));
}

/// <summary>Log messages: reasons and checkpoints, never a host, URL or key.</summary>
internal static partial class RouterLog
{
    [LoggerMessage(EventId = 9000, Level = LogLevel.Warning, Message = "Upstream refused by the egress policy: {Reason} at {Checkpoint}")]
    public static partial void UpstreamDenied(ILogger logger, EgressReason reason, string checkpoint);

    [LoggerMessage(EventId = 9001, Level = LogLevel.Warning, Message = "Upstream unreachable: {Error}")]
    public static partial void UpstreamUnreachable(ILogger logger, HttpRequestError error);

    [LoggerMessage(EventId = 9002, Level = LogLevel.Warning, Message = "Upstream stream ended with an error after {Bytes} bytes")]
    public static partial void UpstreamStreamFailed(ILogger logger, long bytes);

    [LoggerMessage(EventId = 9003, Level = LogLevel.Warning, Message = "Upstream did not answer before the client's timeout")]
    public static partial void UpstreamTimedOut(ILogger logger);
}
