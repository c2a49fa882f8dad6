using System.Buffers;
using System.Globalization;
using System.Text.Json;
using Kars.Policy.Budgets;
using Microsoft.AspNetCore.Http;
using NodaTime;

namespace Kars.Policy.AspNetCore;

/// <summary>The headers and error bodies of the token-budget gate.</summary>
internal static class TokenBudgetResponses
{
    /// <summary>The largest integer an HTTP structured field carries (RFC 9651 §3.3.1: at most 15 digits).</summary>
    private const long MaxStructuredInteger = 999_999_999_999_999;

    /// <summary>
    /// Sets the rate-limit headers from a decision (no store call). <c>RateLimit-Policy</c> lists every limited
    /// window (draft-ietf-httpapi-ratelimit-headers-10 syntax: <c>"day";q=1000;qu="tokens";w=86400</c>);
    /// <c>RateLimit</c> and the OpenAI-style <c>x-ratelimit-*-tokens</c> show the tightest window
    /// (<see cref="BudgetDecision.TryGetTightestWindow"/>: the blocking window, else the one with the fewest remaining
    /// tokens, on a tie the one that resets last). Nothing is set when no window is limited.
    /// </summary>
    public static void SetRateLimitHeaders(IHeaderDictionary headers, in BudgetDecision decision)
    {
        if (!decision.TryGetTightestWindow(out BudgetWindowQuota tightest))
        {
            return;
        }

        var policy = new System.Text.StringBuilder(96);
        for (var window = BudgetWindow.Hour; window <= BudgetWindow.Year; window++)
        {
            if (!decision.TryGetWindow(window, out BudgetWindowQuota quota))
            {
                continue;
            }

            if (policy.Length > 0)
            {
                policy.Append(", ");
            }

            long seconds = (long)quota.Period.Duration.TotalSeconds;
            policy.Append(CultureInfo.InvariantCulture, $"\"{Name(window)}\";q={Sf(quota.Limit)};qu=\"tokens\";w={Sf(seconds)}");
        }

        long reset = ResetSeconds(tightest);
        headers["RateLimit-Policy"] = policy.ToString();
        headers["RateLimit"] = string.Create(CultureInfo.InvariantCulture, $"\"{Name(tightest.Window)}\";r={Sf(tightest.Remaining)};t={Sf(reset)}");
        headers["x-ratelimit-limit-tokens"] = tightest.Limit.ToString(CultureInfo.InvariantCulture);
        headers["x-ratelimit-remaining-tokens"] = tightest.Remaining.ToString(CultureInfo.InvariantCulture);
        headers["x-ratelimit-reset-tokens"] = GoDuration(reset);
    }

    /// <summary>Gets the window's policy name in the headers: <c>hour</c>, <c>day</c>, <c>week</c>, <c>month</c>, <c>year</c>.</summary>
    public static string Name(BudgetWindow window) => window switch
    {
        BudgetWindow.Hour => "hour",
        BudgetWindow.Day => "day",
        BudgetWindow.Week => "week",
        BudgetWindow.Month => "month",
        _ => "year",
    };

    /// <summary>Whole seconds, rounded up, until the window resets (0 or more).</summary>
    public static long ResetSeconds(in BudgetWindowQuota quota)
    {
        TimeSpan after = quota.ResetAfter;
        if (after <= TimeSpan.Zero)
        {
            return 0;
        }

        return (after.Ticks + TimeSpan.TicksPerSecond - 1) / TimeSpan.TicksPerSecond;
    }

    /// <summary>Formats whole seconds the way OpenAI's <c>x-ratelimit-reset-*</c> headers do (Go durations):
    /// <c>0s</c>, <c>45s</c>, <c>1m30s</c>, <c>2h0m5s</c>.</summary>
    public static string GoDuration(long seconds)
    {
        long hours = seconds / 3600;
        long minutes = seconds % 3600 / 60;
        long rest = seconds % 60;
        if (hours > 0)
        {
            return string.Create(CultureInfo.InvariantCulture, $"{hours}h{minutes}m{rest}s");
        }

        return minutes > 0
            ? string.Create(CultureInfo.InvariantCulture, $"{minutes}m{rest}s")
            : string.Create(CultureInfo.InvariantCulture, $"{rest}s");
    }

    /// <summary>Whole seconds of a retry delay, rounded up, at least 1.</summary>
    public static long RetryAfterSeconds(TimeSpan retryAfter)
        => Math.Max(1, (retryAfter.Ticks + TimeSpan.TicksPerSecond - 1) / TimeSpan.TicksPerSecond);

    /// <summary>Writes an OpenAI-shaped error: <c>{"error":{"message","type","code"}}</c> (no <c>code</c> when
    /// <see langword="null"/>).</summary>
    public static async Task WriteErrorAsync(HttpContext context, int statusCode, string message, string type, string? code)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteStartObject("error"u8);
            writer.WriteString("message"u8, message);
            writer.WriteString("type"u8, type);
            if (code is not null)
            {
                writer.WriteString("code"u8, code);
            }

            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        HttpResponse response = context.Response;
        response.StatusCode = statusCode;
        response.ContentType = "application/json";
        response.ContentLength = buffer.WrittenCount;
        await response.Body.WriteAsync(buffer.WrittenMemory, CancellationToken.None).ConfigureAwait(false);
    }

    private static long Sf(long value) => Math.Clamp(value, 0, MaxStructuredInteger);
}
