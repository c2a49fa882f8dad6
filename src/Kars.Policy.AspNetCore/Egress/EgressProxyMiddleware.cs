using System.Net;
using System.Net.Http;
using System.Text.Json;
using Kars.Policy.Egress;
using Kars.Policy.Http;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Kars.Policy.AspNetCore;

/// <summary>
/// The forward proxy behind <c>UseKarsEgressProxy()</c>. Authority-form <c>CONNECT host:port</c> requests are
/// decided by name, then the upstream is resolved, every answer vetted, and only a vetted address connected to
/// before the tunnel opens. Absolute-form requests (<c>GET http://host/…</c>) are decided, checked against the
/// <c>Host</c> header, and forwarded through an HttpClient whose connect callback vets each connection (no
/// redirects are followed: the client sees them and asks again). Origin-form requests go to the next middleware.
/// </summary>
internal sealed class EgressProxyMiddleware : IDisposable
{
    private static readonly HashSet<string> HopByHop = new(StringComparer.OrdinalIgnoreCase)
    {
        "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "TE", "Trailer",
        "Transfer-Encoding", "Upgrade", "Host",
    };

    private readonly RequestDelegate _next;
    private readonly IEgressPolicy _policy;
    private readonly Func<HttpContext, string?>? _sandbox;
    private readonly string? _fixedSandbox;
    private readonly Func<string, int, HttpRequestMessage?, CancellationToken, ValueTask<Stream>> _connector;
    private readonly HttpMessageInvoker _forwarder;
    private readonly TimeSpan _forwardTimeout;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger _logger;

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2000:Dispose objects before losing scope", Justification = "HttpMessageInvoker takes ownership of the handler (disposeHandler defaults to true).")]
    public EgressProxyMiddleware(RequestDelegate next, IEgressPolicy policy, KarsEgressProxyOptions options, TimeProvider? timeProvider, ILoggerFactory? loggerFactory)
    {
        _next = next;
        _policy = policy;
        _sandbox = options.SandboxResolver;
        _fixedSandbox = options.Sandbox;
        _timeProvider = timeProvider ?? TimeProvider.System;
        if (options.ForwardTimeout <= TimeSpan.Zero || options.ForwardTimeout > TimeSpan.FromHours(1))
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.ForwardTimeout, "KarsEgressProxyOptions.ForwardTimeout must be positive and at most 1 hour.");
        }

        _forwardTimeout = options.ForwardTimeout;
        var http = new EgressHttpOptions { Resolver = options.Resolver, ConnectAttemptTimeout = options.ConnectAttemptTimeout, Sandbox = options.Sandbox };
        _connector = EgressConnectCallback.CreateConnector(policy, http, _timeProvider, loggerFactory);
        _forwarder = new HttpMessageInvoker(new SocketsHttpHandler
        {
            ConnectCallback = EgressConnectCallback.Create(policy, http, _timeProvider, loggerFactory),
            UseProxy = false,
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
            UseCookies = false,
        });
        _logger = loggerFactory?.CreateLogger(typeof(EgressProxyMiddleware).FullName!) ?? NullLogger.Instance;
    }

    public Task InvokeAsync(HttpContext context)
    {
        string rawTarget = context.Features.Get<IHttpRequestFeature>()?.RawTarget ?? string.Empty;
        if (HttpMethods.IsConnect(context.Request.Method))
        {
            return TunnelAsync(context, rawTarget);
        }

        if (rawTarget.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || rawTarget.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
        {
            return ForwardAsync(context, rawTarget);
        }

        return _next(context);
    }

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2025:Do not pass IDisposable instances into unawaited tasks", Justification = "Both pump tasks are awaited (Task.WhenAll) before the streams and the token source are disposed.")]
    private async Task TunnelAsync(HttpContext context, string authority)
    {
        string? sandbox = _sandbox?.Invoke(context) ?? _fixedSandbox;
        if (!TrySplitAuthority(authority, out var host, out var port))
        {
            await DenyAsync(context, "connect", "InvalidTarget").ConfigureAwait(false);
            return;
        }

        var decision = _policy.Evaluate(authority, sandbox);
        if (!decision.IsAllowed)
        {
            await DenyAsync(context, "connect", EgressProxyLog.ReasonText(decision.Reason)).ConfigureAwait(false);
            return;
        }

        var upgrade = context.Features.Get<IHttpUpgradeFeature>();
        if (upgrade is null || !upgrade.IsUpgradableRequest)
        {
            // Kestrel does not offer HTTP/1.1 CONNECT as upgradable: tunnels need UseKarsEgressProxyTunnels() on the
            // listener, which takes CONNECT over before it reaches here.
            EgressProxyLog.TunnelUnsupported(_logger);
            await WriteJsonAsync(context, StatusCodes.Status501NotImplemented, "tunnel_unsupported", null).ConfigureAwait(false);
            return;
        }

        Stream upstream;
        try
        {
            using var carrier = new HttpRequestMessage();
            if (sandbox is not null)
            {
                carrier.Options.Set(EgressRequestOptions.Sandbox, sandbox);
            }

            upstream = await _connector(host, port, carrier, context.RequestAborted).ConfigureAwait(false);
        }
        catch (EgressDeniedException denied)
        {
            await DenyAsync(context, "connect", EgressProxyLog.ReasonText(denied.Decision.Reason)).ConfigureAwait(false);
            return;
        }
        catch (HttpRequestException ex)
        {
            EgressProxyLog.UpstreamFailed(_logger, "connect", ex.HttpRequestError.ToString());
            await WriteJsonAsync(context, StatusCodes.Status502BadGateway, "bad_gateway", null).ConfigureAwait(false);
            return;
        }

        await using (upstream.ConfigureAwait(false))
        {
            context.Response.StatusCode = StatusCodes.Status200OK;
            var client = await upgrade.UpgradeAsync().ConfigureAwait(false);
            await using (client.ConfigureAwait(false))
            {
                EgressProxyLog.TunnelOpened(_logger);
                using var done = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
                var up = PumpAsync(client, upstream, done.Token);
                var down = PumpAsync(upstream, client, done.Token);
                await Task.WhenAny(up, down).ConfigureAwait(false);
                await done.CancelAsync().ConfigureAwait(false);
                await Task.WhenAll(up, down).ConfigureAwait(false);
            }
        }
    }

    private static async Task PumpAsync(Stream from, Stream to, CancellationToken cancellationToken)
    {
        try
        {
            await from.CopyToAsync(to, cancellationToken).ConfigureAwait(false);
            await to.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or ObjectDisposedException)
        {
            // One side closed or the request was aborted: the tunnel ends.
        }
    }

    private async Task ForwardAsync(HttpContext context, string rawTarget)
    {
        string? sandbox = _sandbox?.Invoke(context) ?? _fixedSandbox;
        if (!Uri.TryCreate(rawTarget, UriKind.Absolute, out var target) || (target.Scheme != Uri.UriSchemeHttp && target.Scheme != Uri.UriSchemeHttps) || !string.IsNullOrEmpty(target.UserInfo))
        {
            await DenyAsync(context, "absolute", "InvalidTarget").ConfigureAwait(false);
            return;
        }

        if (!HostMatches(target, context.Request.Headers.Host.ToString()))
        {
            await DenyAsync(context, "absolute", "HostMismatch").ConfigureAwait(false);
            return;
        }

        var decision = _policy.Evaluate(target, sandbox);
        if (!decision.IsAllowed)
        {
            await DenyAsync(context, "absolute", EgressProxyLog.ReasonText(decision.Reason)).ConfigureAwait(false);
            return;
        }

        using var request = new HttpRequestMessage(new HttpMethod(context.Request.Method), target);
        if (sandbox is not null)
        {
            request.Options.Set(EgressRequestOptions.Sandbox, sandbox);
        }

        if (context.Request.ContentLength > 0 || context.Request.Headers.TransferEncoding.Count > 0)
        {
            request.Content = new StreamContent(context.Request.Body);
        }

        foreach (var header in context.Request.Headers)
        {
            if (HopByHop.Contains(header.Key))
            {
                continue;
            }

            if (!request.Headers.TryAddWithoutValidation(header.Key, (IEnumerable<string?>)header.Value))
            {
                request.Content?.Headers.TryAddWithoutValidation(header.Key, (IEnumerable<string?>)header.Value);
            }
        }

        using var timeout = new CancellationTokenSource(_forwardTimeout, _timeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, timeout.Token);
        HttpResponseMessage response;
        try
        {
            response = await _forwarder.SendAsync(request, linked.Token).ConfigureAwait(false);
        }
        catch (HttpRequestException ex) when (FindDenial(ex) is { } denied)
        {
            await DenyAsync(context, "absolute", EgressProxyLog.ReasonText(denied.Decision.Reason)).ConfigureAwait(false);
            return;
        }
        catch (Exception ex) when (ex is HttpRequestException || (ex is OperationCanceledException && timeout.IsCancellationRequested))
        {
            EgressProxyLog.UpstreamFailed(_logger, "absolute", ex is HttpRequestException h ? h.HttpRequestError.ToString() : "Timeout");
            await WriteJsonAsync(context, StatusCodes.Status502BadGateway, "bad_gateway", null).ConfigureAwait(false);
            return;
        }

        using (response)
        {
            context.Response.StatusCode = (int)response.StatusCode;
            foreach (var header in response.Headers.Concat(response.Content.Headers))
            {
                if (!HopByHop.Contains(header.Key))
                {
                    context.Response.Headers[header.Key] = header.Value.ToArray();
                }
            }

            EgressProxyLog.Forwarded(_logger, context.Response.StatusCode);
            await response.Content.CopyToAsync(context.Response.Body, linked.Token).ConfigureAwait(false);
        }
    }

    internal static bool HostMatches(Uri target, string hostHeader)
    {
        if (hostHeader.Length == 0)
        {
            return true; // HTTP/1.0 without Host: the absolute URI is the only authority.
        }

        if (string.Equals(hostHeader, target.Authority, StringComparison.OrdinalIgnoreCase))
        {
            return true;
        }

        return string.Equals(hostHeader, $"{target.Authority}:{target.Port}", StringComparison.OrdinalIgnoreCase)
            || (TrySplitAuthority(hostHeader, out var h, out var p) && p == target.Port && string.Equals(h, target.IdnHost, StringComparison.OrdinalIgnoreCase) && target.IsDefaultPort);
    }

    internal static bool TrySplitAuthority(string authority, out string host, out int port)
    {
        host = string.Empty;
        port = 0;
        int colon = authority.LastIndexOf(':');
        if (colon <= 0 || colon == authority.Length - 1 || (authority.StartsWith('[') && authority[colon - 1] != ']'))
        {
            return false;
        }

        if (!int.TryParse(authority.AsSpan(colon + 1), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out port) || port is < 1 or > 65535)
        {
            return false;
        }

        host = authority[..colon].Trim('[', ']');
        return host.Length > 0;
    }

    private async Task DenyAsync(HttpContext context, string form, string reason)
    {
        EgressProxyLog.Denied(_logger, form, reason);
        await WriteJsonAsync(context, StatusCodes.Status403Forbidden, "egress_denied", reason).ConfigureAwait(false);
    }

    internal static string DenialJson(string reason) => Json("egress_denied", reason);

    private static string Json(string error, string? reason)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("error", error);
            if (reason is not null)
            {
                writer.WriteString("reason", JsonNamingPolicy.CamelCase.ConvertName(reason));
            }

            writer.WriteEndObject();
        }

        return System.Text.Encoding.UTF8.GetString(buffer.ToArray());
    }

    private static async Task WriteJsonAsync(HttpContext context, int status, string error, string? reason)
    {
        byte[] body = System.Text.Encoding.UTF8.GetBytes(Json(error, reason));
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        context.Response.Headers.Connection = "close";
        context.Response.ContentLength = body.Length;
        await context.Response.Body.WriteAsync(body, context.RequestAborted).ConfigureAwait(false);
    }

    private static EgressDeniedException? FindDenial(Exception? ex)
    {
        for (int depth = 0; ex is not null && depth < 8; depth++, ex = ex.InnerException)
        {
            if (ex is EgressDeniedException denied)
            {
                return denied;
            }
        }

        return null;
    }

    public void Dispose() => _forwarder.Dispose();
}
