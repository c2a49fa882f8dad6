using System.Buffers;
using System.Globalization;
using Kars.Policy.Budgets;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Kars.Policy.AspNetCore;

/// <summary>
/// The token-budget gate (DESIGN §8): bounded body read, reservation (per-request cap included), usage read from
/// the response, settlement; the whole hold is charged whenever the usage is not proven by a clean response.
/// </summary>
internal sealed class TokenBudgetMiddleware
{
    private readonly RequestDelegate _next;
    private readonly Func<BudgetMeter> _meters;
    private readonly TokenBudgetSettings _settings;
    private readonly ILogger _logger;

    public TokenBudgetMiddleware(RequestDelegate next, Func<BudgetMeter> meters, TokenBudgetSettings settings, ILoggerFactory? loggerFactory)
    {
        _next = next;
        _meters = meters;
        _settings = settings;
        _logger = (ILogger?)loggerFactory?.CreateLogger("Kars.Policy.AspNetCore.TokenBudget") ?? NullLogger.Instance;
    }

    public Task InvokeAsync(HttpContext context)
    {
        if (!HttpMethods.IsPost(context.Request.Method) || !_settings.TryMatch(context.Request.Path, out InferenceApi api))
        {
            return _next(context);
        }

        return GateAsync(context, api);
    }

    /// <summary>The default prompt estimate: UTF-8 bytes of the whole body / 4, rounded up.</summary>
    internal static long EstimateByBytes(ReadOnlyMemory<byte> body) => (body.Length + 3L) / 4;

    private async Task GateAsync(HttpContext context, InferenceApi api)
    {
        // Resolved per request: a host whose configuration reloads the budget limits (AddKarsPolicy) hands out the
        // meter for the current limits; a meter kept from start-up would keep the old ones.
        BudgetMeter meter = _meters();
        string? key = _settings.KeyResolver(context);
        if (key is null)
        {
            TokenBudgetLog.KeyMissing(_logger);
            await TokenBudgetResponses.WriteErrorAsync(context, StatusCodes.Status403Forbidden, "This request has no token budget identity.", "token_budget_error", "budget_key_missing").ConfigureAwait(false);
            return;
        }

        HttpRequest request = context.Request;
        string? encoding = request.Headers.ContentEncoding;
        if (!string.IsNullOrEmpty(encoding) && !string.Equals(encoding, "identity", StringComparison.OrdinalIgnoreCase))
        {
            TokenBudgetLog.BodyRefused(_logger, "content_encoding");
            await TokenBudgetResponses.WriteErrorAsync(context, StatusCodes.Status415UnsupportedMediaType, "Encoded request bodies are not accepted on metered routes.", "invalid_request_error", "unsupported_content_encoding").ConfigureAwait(false);
            return;
        }

        int max = _settings.MaxRequestBodyBytes;
        if (request.ContentLength > max)
        {
            await RefuseTooLargeAsync(context, max).ConfigureAwait(false);
            return;
        }

        byte[]? body = null;
        byte[]? rewritten = null;
        try
        {
            int length;
            (body, length) = await ReadBodyAsync(request, max, context.RequestAborted).ConfigureAwait(false);
            if (length > max)
            {
                await RefuseTooLargeAsync(context, max).ConfigureAwait(false);
                return;
            }

            ReadOnlyMemory<byte> json = body.AsMemory(0, length);
            string? problem = InferenceRequestBody.TryRead(json.Span, out InferenceRequestFacts facts);
            if (problem is not null)
            {
                TokenBudgetLog.BodyRefused(_logger, "invalid_json");
                await TokenBudgetResponses.WriteErrorAsync(context, StatusCodes.Status400BadRequest, problem, "invalid_request_error", "invalid_request_body").ConfigureAwait(false);
                return;
            }

            if (facts.UnboundedFor(api) is { } unbounded)
            {
                TokenBudgetLog.BodyRefused(_logger, "unbounded");
                await TokenBudgetResponses.WriteErrorAsync(context, StatusCodes.Status400BadRequest, unbounded, "invalid_request_error", "unbounded_request").ConfigureAwait(false);
                return;
            }

            long prompt = _settings.PromptTokenEstimator(json);
            if (prompt < 0)
            {
                throw new InvalidOperationException(string.Create(CultureInfo.InvariantCulture, $"KarsTokenBudgetOptions.PromptTokenEstimator returned {prompt}; an estimate is 0 or more."));
            }

            (long? first, long? second) = facts.BoundsFor(api);
            long tokens = api == InferenceApi.Embeddings
                ? BudgetReservation.Compute(Math.Min(prompt, BudgetStore.MaxTokens), 0, null, null, 0)
                : BudgetReservation.Compute(Math.Min(prompt, BudgetStore.MaxTokens), first, second, meter.Policy.PerRequestTokens, _settings.DefaultCompletionTokens);

            BudgetDecision decision;
            try
            {
                decision = await meter.TryReserveAsync(key, tokens, _settings.LeaseDuration ?? meter.Policy.LeaseDuration, at: null, context.RequestAborted).ConfigureAwait(false);
            }
            catch (ArgumentException)
            {
                TokenBudgetLog.KeyInvalid(_logger);
                await TokenBudgetResponses.WriteErrorAsync(context, StatusCodes.Status403Forbidden, "This request's token budget identity is not valid.", "token_budget_error", "budget_key_invalid").ConfigureAwait(false);
                return;
            }
            catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
            {
                // The client left before a decision: nothing was reserved, and there is no one to answer.
                return;
            }
            catch (Exception ex) when (ex is BudgetException or ObjectDisposedException)
            {
                TokenBudgetLog.StoreUnavailable(_logger, TokenBudgetLog.TypeNames(ex));
                await TokenBudgetResponses.WriteErrorAsync(context, StatusCodes.Status503ServiceUnavailable, "The token budget store is unavailable; the request was not forwarded.", "token_budget_unavailable", "budget_store_unavailable").ConfigureAwait(false);
                return;
            }

            if (!decision.IsAdmitted)
            {
                await RejectAsync(context, decision, meter).ConfigureAwait(false);
                return;
            }

            if (decision.Reason == BudgetReason.Observed)
            {
                TokenBudgetLog.Observed(_logger, tokens);
            }

            // The forwarded body: the client's, with each rewrite below applied in turn (each keeps every other byte).
            ReadOnlyMemory<byte> forwardedJson = json;

            // A request that names no completion bound is sent with the one the hold assumed, so the hold stays an
            // upper bound for a response that ends without usage (client abort, cut stream).
            long completionBound = tokens - Math.Min(prompt, BudgetStore.MaxTokens);
            if (first is null && second is null && completionBound >= 1 && !api.BoundMember().IsEmpty)
            {
                var bounded = new ArrayBufferWriter<byte>(length + 48);
                InferenceRequestBody.WriteWithBound(forwardedJson.Span, api.BoundMember(), completionBound, bounded);
                forwardedJson = bounded.WrittenMemory;
            }

            if (facts.Stream && api.TakesIncludeUsage())
            {
                var withUsage = new ArrayBufferWriter<byte>(forwardedJson.Length + 64);
                InferenceRequestBody.WriteWithIncludeUsage(forwardedJson.Span, withUsage);
                forwardedJson = withUsage.WrittenMemory;
            }

            byte[] forwarded = body;
            int forwardedLength = length;
            if (!forwardedJson.Equals(json))
            {
                rewritten = ArrayPool<byte>.Shared.Rent(forwardedJson.Length);
                forwardedJson.Span.CopyTo(rewritten);
                forwarded = rewritten;
                forwardedLength = forwardedJson.Length;
            }

            await ForwardAsync(context, api, decision, forwarded, forwardedLength).ConfigureAwait(false);
        }
        finally
        {
            if (body is not null)
            {
                ArrayPool<byte>.Shared.Return(body);
            }

            if (rewritten is not null)
            {
                ArrayPool<byte>.Shared.Return(rewritten);
            }
        }
    }

    private async Task ForwardAsync(HttpContext context, InferenceApi api, BudgetDecision decision, byte[] body, int length)
    {
        HttpRequest request = context.Request;
        Stream originalRequestBody = request.Body;
        long? originalContentLength = request.ContentLength;
        IHttpResponseBodyFeature originalResponseBody = context.Features.Get<IHttpResponseBodyFeature>()!;
        var capture = new UsageCaptureStream(originalResponseBody.Stream, context.Response, api, _settings.MaxEventBytes, _settings.MaxResponseBodyBytes);
        var captureFeature = new StreamResponseBodyFeature(capture, originalResponseBody);
        var requestBody = new MemoryStream(body, 0, length, writable: false);

        request.Body = requestBody;
        request.ContentLength = length;
        request.Headers.Remove("Transfer-Encoding");

        // The gate reads the response's usage, so the upstream is asked for an unencoded body.
        request.Headers.Remove("Accept-Encoding");
        context.Features.Set<IHttpResponseBodyFeature>(captureFeature);
        context.Response.OnStarting(static state =>
        {
            var (ctx, d) = ((HttpContext, BudgetDecision))state;
            TokenBudgetResponses.SetRateLimitHeaders(ctx.Response.Headers, d);
            return Task.CompletedTask;
        }, (context, decision));

        BudgetLease lease = decision.Lease;
        bool completed = false;
        try
        {
            await _next(context).ConfigureAwait(false);
            await captureFeature.CompleteAsync().ConfigureAwait(false);
            completed = true;
        }
        finally
        {
            context.Features.Set(originalResponseBody);
            request.Body = originalRequestBody;
            request.ContentLength = originalContentLength;
            await requestBody.DisposeAsync().ConfigureAwait(false);
            string why = !completed ? "exception"
                : context.RequestAborted.IsCancellationRequested ? "client_aborted"
                : capture.Problem ?? "no_usage";
            long? usage = null;
            long? observed = null;
            try
            {
                // One parse of the body. Without clean evidence the hold is charged, or what the upstream already
                // reported if that is more (the hold's prompt part is an estimate, so it can be below a reported input count).
                (usage, observed) = capture.ReadUsage(cleanEnd: completed && !context.RequestAborted.IsCancellationRequested);
            }
            catch (Exception ex) when (ex is InvalidOperationException or System.Text.Json.JsonException)
            {
                why = "usage_unreadable";
            }
            finally
            {
                // Whatever reading the usage did, the capture is released and the lease settled (or its hold charged).
                try
                {
                    await capture.DisposeAsync().ConfigureAwait(false);
                }
                finally
                {
                    if (lease.IsValid)
                    {
                        await SettleAsync(lease, usage, observed, why).ConfigureAwait(false);
                    }
                }
            }
        }
    }

    private async Task SettleAsync(BudgetLease lease, long? usage, long? observed, string why)
    {
        try
        {
            if (usage is { } used)
            {
                await lease.SettleAsync(used, CancellationToken.None).ConfigureAwait(false);
                TokenBudgetLog.Settled(_logger, lease.Tokens, used);
            }
            else if (observed is { } seen && seen > lease.Tokens)
            {
                await lease.SettleAsync(seen, CancellationToken.None).ConfigureAwait(false);
                TokenBudgetLog.ObservedCharged(_logger, seen, lease.Tokens, why);
            }
            else
            {
                await lease.AbandonAsync(CancellationToken.None).ConfigureAwait(false);
                TokenBudgetLog.HoldCharged(_logger, lease.Tokens, why);
            }
        }
        catch (Exception ex) when (ex is BudgetException or ObjectDisposedException or OperationCanceledException)
        {
            // The response is already on its way; the store charges the whole hold when the lease expires.
            TokenBudgetLog.SettlementFailed(_logger, TokenBudgetLog.TypeNames(ex));
        }
    }

    private async Task RejectAsync(HttpContext context, BudgetDecision decision, BudgetMeter meter)
    {
        TokenBudgetResponses.SetRateLimitHeaders(context.Response.Headers, decision);
        if (decision.Reason == BudgetReason.PerRequestTokensExceeded)
        {
            TokenBudgetLog.Rejected(_logger, decision.Tokens, "per_request_tokens_exceeded");
            string message = string.Create(CultureInfo.InvariantCulture, $"Request reserves {decision.Tokens} tokens (prompt estimate plus completion bound), above the per-request cap of {meter.Policy.PerRequestTokens} tokens.");
            await TokenBudgetResponses.WriteErrorAsync(context, StatusCodes.Status429TooManyRequests, message, "token_budget_exceeded", "per_request_tokens_exceeded").ConfigureAwait(false);
            return;
        }

        TokenBudgetLog.Rejected(_logger, decision.Tokens, "budget_exceeded");
        string window = decision.BlockingWindow is { } blocking ? TokenBudgetResponses.Name(blocking) : "budget";
        string text;
        if (decision.RetryAfter is { } retryAfter)
        {
            long seconds = TokenBudgetResponses.RetryAfterSeconds(retryAfter);
            context.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
            text = string.Create(CultureInfo.InvariantCulture, $"Token budget exceeded: the {window} window has no room for {decision.Tokens} tokens. Retry in {seconds} s.");
        }
        else
        {
            text = string.Create(CultureInfo.InvariantCulture, $"Token budget exceeded: no room for {decision.Tokens} tokens.");
        }

        await TokenBudgetResponses.WriteErrorAsync(context, StatusCodes.Status429TooManyRequests, text, "token_budget_exceeded", "budget_exceeded").ConfigureAwait(false);
    }

    private async Task RefuseTooLargeAsync(HttpContext context, int max)
    {
        TokenBudgetLog.BodyRefused(_logger, "too_large");
        string message = string.Create(CultureInfo.InvariantCulture, $"The request body is larger than {max} bytes.");
        await TokenBudgetResponses.WriteErrorAsync(context, StatusCodes.Status413PayloadTooLarge, message, "invalid_request_error", "request_too_large").ConfigureAwait(false);
    }

    /// <summary>Reads at most <paramref name="max"/> + 1 bytes into a pooled buffer (one more than allowed tells
    /// "too large" without reading the rest).</summary>
    private static async Task<(byte[] Buffer, int Length)> ReadBodyAsync(HttpRequest request, int max, CancellationToken cancellationToken)
    {
        int limit = max == int.MaxValue ? max : max + 1;
        int initial = request.ContentLength is { } declared ? (int)Math.Min(declared + 1, limit) : Math.Min(16 * 1024, limit);
        byte[] buffer = ArrayPool<byte>.Shared.Rent(Math.Max(initial, 1));
        int length = 0;
        try
        {
            while (length < limit)
            {
                if (length == buffer.Length)
                {
                    byte[] grown = ArrayPool<byte>.Shared.Rent((int)Math.Min((long)buffer.Length * 2, limit));
                    buffer.AsSpan(0, length).CopyTo(grown);
                    ArrayPool<byte>.Shared.Return(buffer);
                    buffer = grown;
                }

                int read = await request.Body.ReadAsync(buffer.AsMemory(length, Math.Min(buffer.Length, limit) - length), cancellationToken).ConfigureAwait(false);
                if (read == 0)
                {
                    break;
                }

                length += read;
            }

            return (buffer, length);
        }
        catch
        {
            ArrayPool<byte>.Shared.Return(buffer);
            throw;
        }
    }
}

/// <summary>The validated, copied options the middleware runs with.</summary>
internal sealed class TokenBudgetSettings
{
    private readonly (string Path, InferenceApi Api)[] _routes;

    public TokenBudgetSettings(KarsTokenBudgetOptions options)
    {
        LeaseDuration = options.LeaseDuration;
        _routes = options.Routes.Select(r => NormalizePath(r)).Select(r => (r, InferenceApis.FromPath(r))).ToArray();
        KeyResolver = options.KeyResolver!;
        MaxRequestBodyBytes = options.MaxRequestBodyBytes;
        MaxResponseBodyBytes = options.MaxResponseBodyBytes;
        MaxEventBytes = options.MaxEventBytes;
        DefaultCompletionTokens = options.DefaultCompletionTokens;
        PromptTokenEstimator = options.PromptTokenEstimator ?? TokenBudgetMiddleware.EstimateByBytes;
    }

    public Func<HttpContext, string?> KeyResolver { get; }

    /// <summary>The configured lease duration; <see langword="null"/> for the meter policy's.</summary>
    public TimeSpan? LeaseDuration { get; }

    public int MaxRequestBodyBytes { get; }

    public int MaxResponseBodyBytes { get; }

    public int MaxEventBytes { get; }

    public long DefaultCompletionTokens { get; }

    public Func<ReadOnlyMemory<byte>, long> PromptTokenEstimator { get; }

    /// <summary>
    /// The path with repeated slashes collapsed and trailing slashes removed (<c>/</c> stays <c>/</c>). Endpoint
    /// routing serves <c>/v1/chat/completions/</c> from a <c>MapPost("/v1/chat/completions")</c> endpoint, so the
    /// gate compares this form: it meters every spelling routing may send to the endpoint, and more (fail closed).
    /// </summary>
    internal static string NormalizePath(string path)
    {
        if (!path.Contains("//", StringComparison.Ordinal) && (path.Length <= 1 || path[^1] != '/'))
        {
            return path;
        }

        var builder = new System.Text.StringBuilder(path.Length);
        foreach (char c in path)
        {
            if (c == '/' && builder.Length > 0 && builder[^1] == '/')
            {
                continue;
            }

            builder.Append(c);
        }

        while (builder.Length > 1 && builder[^1] == '/')
        {
            builder.Length--;
        }

        return builder.ToString();
    }

    public bool TryMatch(PathString path, out InferenceApi api)
    {
        string? value = path.Value;
        if (value is not null)
        {
            value = NormalizePath(value);
            foreach ((string route, InferenceApi routeApi) in _routes)
            {
                if (string.Equals(value, route, StringComparison.OrdinalIgnoreCase))
                {
                    api = routeApi;
                    return true;
                }
            }
        }

        api = default;
        return false;
    }
}
