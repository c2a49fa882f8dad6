using System.Globalization;
using Kars.Policy.AspNetCore;
using Kars.Policy.Budgets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Microsoft.AspNetCore.Builder;

/// <summary>Adds the Kars.Policy token-budget gate to an ASP.NET Core pipeline.</summary>
public static class KarsTokenBudgetApplicationBuilderExtensions
{
    /// <summary>
    /// Meters OpenAI-compatible inference requests (Chat Completions, Responses, Completions, Embeddings and Anthropic
    /// Messages; see <see cref="KarsTokenBudgetOptions.Routes"/>) against a <see cref="BudgetMeter"/>, in front of
    /// whatever serves them (a proxy such as YARP, or the application itself).
    /// </summary>
    /// <remarks>
    /// <para>For each metered <c>POST</c>: the budget key comes from <see cref="KarsTokenBudgetOptions.KeyResolver"/>
    /// (no key: 403); the body is read up to <see cref="KarsTokenBudgetOptions.MaxRequestBodyBytes"/> (larger: 413;
    /// not a JSON object, or a completion bound that is not a non-negative integer: 400); the reservation is the
    /// prompt estimate plus the largest completion bound the route's API honours (Chat Completions
    /// <c>max_tokens</c>/<c>max_completion_tokens</c>; Completions and Anthropic Messages <c>max_tokens</c>; Responses
    /// <c>max_output_tokens</c>) (else what the per-request cap leaves, else
    /// <see cref="KarsTokenBudgetOptions.DefaultCompletionTokens"/>). Above the per-request cap: 429 with
    /// <c>{"error":{"message","type":"token_budget_exceeded","code":"per_request_tokens_exceeded"}}</c> and no
    /// <c>Retry-After</c>. No room in a window: 429 with <c>Retry-After</c> and <c>code: "budget_exceeded"</c>. The
    /// store unavailable: 503 (<c>budget_store_unavailable</c>); nothing is forwarded.</para>
    /// <para>A streamed Chat Completions or Completions request is forwarded with
    /// <c>stream_options.include_usage: true</c>. The hold is settled with the response's <c>usage</c> (the JSON body,
    /// or the final server-sent event) only when the response ended cleanly; otherwise (no usage, an error event,
    /// a malformed or cut stream, a client abort, an exception) the whole hold is charged.</para>
    /// <para>Every gated response carries <c>RateLimit-Policy</c>/<c>RateLimit</c>
    /// (draft-ietf-httpapi-ratelimit-headers-10) and <c>x-ratelimit-limit-tokens</c>,
    /// <c>x-ratelimit-remaining-tokens</c>, <c>x-ratelimit-reset-tokens</c>, taken from the decision (set before the
    /// body starts, replacing any the upstream sent).</para>
    /// </remarks>
    /// <param name="app">The application builder.</param>
    /// <param name="options">Options (validated and copied); <see cref="KarsTokenBudgetOptions.KeyResolver"/> is required.</param>
    /// <returns>The same builder.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="app"/> is <see langword="null"/>.</exception>
    /// <exception cref="InvalidOperationException">No <see cref="BudgetMeter"/> is given or registered.</exception>
    /// <exception cref="ArgumentException">An option is invalid (every problem is listed).</exception>
    public static IApplicationBuilder UseKarsTokenBudget(this IApplicationBuilder app, KarsTokenBudgetOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(app);
        IServiceProvider services = app.ApplicationServices;
        options ??= new KarsTokenBudgetOptions();
        BudgetMeter meter = options.Meter ?? services.GetService<BudgetMeter>()
            ?? throw new InvalidOperationException("UseKarsTokenBudget() needs a BudgetMeter: set KarsTokenBudgetOptions.Meter or register one in the service container (AddKarsPolicy does).");
        var settings = new TokenBudgetSettings(Validated(options));
        ILoggerFactory? loggerFactory = services.GetService<ILoggerFactory>();

        // A meter given in the options is used as it is. Otherwise the container's is resolved per request, so a host
        // that rebuilds it when its budget configuration reloads (AddKarsPolicy registers it that way) is followed.
        Func<BudgetMeter> meters = options.Meter is not null
            ? () => meter
            : () => services.GetService<BudgetMeter>() ?? meter;
        return app.Use(next => new TokenBudgetMiddleware(next, meters, settings, loggerFactory).InvokeAsync);
    }

    /// <summary>Checks every option and reports every problem at once; returns a copy.</summary>
    internal static KarsTokenBudgetOptions Validated(KarsTokenBudgetOptions options)
    {
        var problems = new List<string>();
        if (options.KeyResolver is null)
        {
            problems.Add("KeyResolver is required: it names the budget key of a request (an identity the host trusts, never a client header unless the host decides so).");
        }

        if (options.Routes.Count == 0)
        {
            problems.Add("Routes must name at least one path.");
        }

        var seen = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (string? route in options.Routes)
        {
            if (string.IsNullOrEmpty(route) || route[0] != '/' || route.AsSpan().IndexOfAny("?#") >= 0 || route.AsSpan().ContainsAnyInRange('\0', ' '))
            {
                problems.Add($"Routes: '{route}' is not an absolute path (it starts with '/', has no query, fragment, spaces or control characters).");
            }
            else if (!seen.Add(route))
            {
                problems.Add($"Routes: '{route}' is listed twice.");
            }
        }

        CheckRange(problems, nameof(KarsTokenBudgetOptions.MaxRequestBodyBytes), options.MaxRequestBodyBytes);
        CheckRange(problems, nameof(KarsTokenBudgetOptions.MaxResponseBodyBytes), options.MaxResponseBodyBytes);
        CheckRange(problems, nameof(KarsTokenBudgetOptions.MaxEventBytes), options.MaxEventBytes);
        if (options.DefaultCompletionTokens is < 0 or > BudgetStore.MaxTokens)
        {
            problems.Add(string.Create(CultureInfo.InvariantCulture, $"DefaultCompletionTokens must be 0 to {BudgetStore.MaxTokens} (was {options.DefaultCompletionTokens})."));
        }

        if (options.LeaseDuration is { } lease && (lease <= TimeSpan.Zero || lease > BudgetRequest.MaxLeaseDuration))
        {
            problems.Add(string.Create(CultureInfo.InvariantCulture, $"LeaseDuration must be positive and at most {BudgetRequest.MaxLeaseDuration.TotalDays} days (was {lease})."));
        }

        if (problems.Count > 0)
        {
            throw new ArgumentException("Invalid KarsTokenBudgetOptions: " + string.Join(" ", problems), nameof(options));
        }

        var copy = new KarsTokenBudgetOptions
        {
            Meter = options.Meter,
            KeyResolver = options.KeyResolver,
            MaxRequestBodyBytes = options.MaxRequestBodyBytes,
            MaxResponseBodyBytes = options.MaxResponseBodyBytes,
            MaxEventBytes = options.MaxEventBytes,
            DefaultCompletionTokens = options.DefaultCompletionTokens,
            PromptTokenEstimator = options.PromptTokenEstimator,
            LeaseDuration = options.LeaseDuration,
        };
        copy.Routes.Clear();
        foreach (string route in options.Routes)
        {
            copy.Routes.Add(route);
        }

        return copy;
    }

    private static void CheckRange(List<string> problems, string name, int value)
    {
        if (value is < 1 or > KarsTokenBudgetOptions.MaxBufferBytes)
        {
            problems.Add(string.Create(CultureInfo.InvariantCulture, $"{name} must be 1 to {KarsTokenBudgetOptions.MaxBufferBytes} bytes (was {value})."));
        }
    }
}
