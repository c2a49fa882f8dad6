using System.Buffers;
using System.Net;
using System.Net.Http.Headers;
using Kars.Policy.Http;
using Microsoft.AspNetCore.Http.Features;

namespace InferenceRouter;

/// <summary>Forwards a request to the sandbox's upstream and streams the answer back as it arrives.</summary>
internal sealed class Forwarder(IHttpClientFactory clients, UpstreamTable upstreams, RouterOptions options, ILogger<Forwarder> logger)
{
    // Response headers passed back to the client. Everything else (the upstream's own rate-limit headers, which
    // describe the router's account, cookies, hop-by-hop headers, Content-Length) stays behind.
    private static readonly string[] PassedHeaders = ["x-request-id", "openai-processing-ms"];

    /// <summary>How much longer than the client's body the token budget gate's rewrites may make it
    /// (<c>,"stream_options":{"include_usage":true}</c> is 40 bytes; a written completion bound such as
    /// <c>,"max_completion_tokens":</c> and up to 19 digits is at most 45).</summary>
    internal const int GateRewriteMargin = 128;

    public async Task ForwardAsync(HttpContext context, string relativePath)
    {
        if (context.Items[RouterApp.SandboxItem] is not string sandbox)
        {
            // Only the authentication step sets the sandbox: without it, nothing is forwarded (fail closed).
            context.Response.Headers.WWWAuthenticate = "Bearer";
            await OpenAIError.WriteAsync(context, StatusCodes.Status401Unauthorized, "Unknown or missing API key.", "invalid_request_error", "invalid_api_key");
            return;
        }

        Upstream upstream = upstreams.For(sandbox);
        CancellationToken aborted = context.RequestAborted;

        // The token budget gate already enforced MaxRequestBodyBytes on the client's body; the body it forwards may
        // be longer by its rewrites (include_usage, a written completion bound: at most 85 bytes), so the forwarder's own cap leaves a margin.
        int max = (int)Math.Min((long)options.MaxRequestBodyBytes + GateRewriteMargin, int.MaxValue);
        byte[]? body = await ReadBoundedAsync(context.Request, max, aborted);
        if (body is null)
        {
            await OpenAIError.WriteAsync(context, StatusCodes.Status413PayloadTooLarge, "The request body is too large.", "invalid_request_error", "request_too_large");
            return;
        }

        // begin-snippet: inference-router-forward
        using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(upstream.BaseUri, relativePath))
        {
            Content = new ByteArrayContent(body),
        };
        request.Content.Headers.ContentType = MediaTypeHeaderValue.TryParse(context.Request.ContentType, out var type)
            ? type
            : new MediaTypeHeaderValue("application/json");
        if (upstream.ApiKey.Length > 0)
        {
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", upstream.ApiKey);   // never the client's key
        }

        request.Options.Set(EgressRequestOptions.Sandbox, sandbox);   // decisions are attributed to the sandbox

        HttpResponseMessage response;
        try
        {
            response = await clients.CreateClient(RouterApp.UpstreamClient).SendAsync(request, HttpCompletionOption.ResponseHeadersRead, aborted);
        }
        catch (EgressDeniedException denied)   // e.g. the upstream's name resolved to a private address
        {
            RouterLog.UpstreamDenied(logger, denied.Decision.Reason, denied.Checkpoint.ToString());
            await OpenAIError.EgressDeniedAsync(context, denied.Decision.Reason);
            return;
        }
        catch (HttpRequestException e)
        {
            RouterLog.UpstreamUnreachable(logger, e.HttpRequestError);
            await OpenAIError.WriteAsync(context, StatusCodes.Status502BadGateway, "The upstream could not be reached.", "upstream_error", "bad_gateway");
            return;
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            return;
        }
        catch (OperationCanceledException)   // HttpClient.Timeout: the upstream sent no headers in time
        {
            RouterLog.UpstreamTimedOut(logger);
            await OpenAIError.WriteAsync(context, StatusCodes.Status504GatewayTimeout, "The upstream did not answer in time.", "upstream_error", "gateway_timeout");
            return;
        }

        using (response)
        {
            await CopyResponseAsync(context, response, aborted);
        }
        // end-snippet
    }

    private async Task CopyResponseAsync(HttpContext context, HttpResponseMessage response, CancellationToken aborted)
    {
        if (response.StatusCode is HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden)
        {
            // The upstream refused the router's own key: not the client's fault, and its body is not the client's.
            await OpenAIError.WriteAsync(context, StatusCodes.Status502BadGateway, "The upstream refused the router's credentials.", "upstream_error", "upstream_unauthorized");
            return;
        }

        context.Response.StatusCode = (int)response.StatusCode;
        if (response.Content.Headers.ContentType is { } contentType)
        {
            context.Response.ContentType = contentType.ToString();
        }

        foreach (string name in PassedHeaders)
        {
            if (response.Headers.TryGetValues(name, out var values))
            {
                context.Response.Headers[name] = values.ToArray();
            }
        }

        // Stream: no response buffering, and each piece the upstream sends is written and flushed at once, so a
        // server-sent event reaches the client when the upstream sends it.
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        byte[] buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
        long copied = 0;
        try
        {
            await using Stream upstreamBody = await response.Content.ReadAsStreamAsync(aborted);
            int read;
            while ((read = await upstreamBody.ReadAsync(buffer, aborted)) > 0)
            {
                await context.Response.Body.WriteAsync(buffer.AsMemory(0, read), aborted);
                await context.Response.Body.FlushAsync(aborted);
                copied += read;
            }
        }
        catch (Exception e) when (e is IOException or HttpRequestException && !aborted.IsCancellationRequested)
        {
            // The upstream broke off mid-answer: end the client's response abruptly too, so it cannot mistake a cut
            // stream for a complete one (and the budget charges the whole hold: no clean final usage arrived).
            RouterLog.UpstreamStreamFailed(logger, copied);
            context.Abort();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    /// <summary>Reads the body, or returns <see langword="null"/> when it is larger than <paramref name="max"/>.</summary>
    private static async Task<byte[]?> ReadBoundedAsync(HttpRequest request, int max, CancellationToken cancellationToken)
    {
        if (request.ContentLength > max)
        {
            return null;
        }

        using var copy = new MemoryStream();
        byte[] buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
        try
        {
            int read;
            while ((read = await request.Body.ReadAsync(buffer, cancellationToken)) > 0)
            {
                if (copy.Length + read > max)
                {
                    return null;
                }

                copy.Write(buffer, 0, read);
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        return copy.ToArray();
    }
}
