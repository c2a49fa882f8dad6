using System.Buffers;
using System.IO.Pipelines;
using System.Net.Http;
using System.Text;
using Kars.Policy.Egress;
using Kars.Policy.Http;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Kars.Policy.AspNetCore;

/// <summary>
/// Kestrel connection middleware that serves an HTTP/1.1 <c>CONNECT host:port</c> arriving as the first request of a
/// connection (Kestrel does not offer HTTP/1.1 CONNECT to HTTP middleware as an upgradable request, so a tunnel has to
/// be taken over at the connection level). Any other first request is handed to Kestrel untouched.
/// </summary>
internal sealed class EgressTunnelConnectionHandler
{
    private const int MaxHead = 16 * 1024;
    private static readonly byte[] ConnectPrefix = "CONNECT "u8.ToArray();
    private static readonly byte[] HeadEnd = "\r\n\r\n"u8.ToArray();

    private readonly IEgressPolicy _policy;
    private readonly string? _sandbox;
    private readonly Func<string, int, HttpRequestMessage?, CancellationToken, ValueTask<Stream>> _connector;
    private readonly ILogger _logger;

    public EgressTunnelConnectionHandler(IEgressPolicy policy, KarsEgressProxyOptions options, TimeProvider? timeProvider, ILoggerFactory? loggerFactory)
    {
        _policy = policy;
        _sandbox = options.Sandbox;
        _connector = EgressConnectCallback.CreateConnector(
            policy,
            new EgressHttpOptions { Resolver = options.Resolver, ConnectAttemptTimeout = options.ConnectAttemptTimeout, Sandbox = options.Sandbox },
            timeProvider,
            loggerFactory);
        _logger = loggerFactory?.CreateLogger(typeof(EgressProxyMiddleware).FullName!) ?? NullLogger.Instance;
    }

    public async Task OnConnectionAsync(ConnectionContext connection, ConnectionDelegate next)
    {
        var input = connection.Transport.Input;
        var ct = connection.ConnectionClosed;
        while (true)
        {
            ReadResult result = await input.ReadAsync(ct).ConfigureAwait(false);
            var buffer = result.Buffer;
            if (!MayBeConnect(buffer))
            {
                input.AdvanceTo(buffer.Start);
                await next(connection).ConfigureAwait(false);
                return;
            }

            var reader = new SequenceReader<byte>(buffer);
            if (reader.TryReadTo(out ReadOnlySequence<byte> head, HeadEnd, advancePastDelimiter: true))
            {
                string text = Encoding.ASCII.GetString(head.ToArray());
                input.AdvanceTo(reader.Position);
                await TunnelAsync(connection, text, ct).ConfigureAwait(false);
                return;
            }

            if (buffer.Length > MaxHead || result.IsCompleted)
            {
                input.AdvanceTo(buffer.End);
                await WriteAsync(connection, 400, "Bad Request", "{\"error\":\"bad_request\"}", ct).ConfigureAwait(false);
                return;
            }

            input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    private static bool MayBeConnect(ReadOnlySequence<byte> buffer)
    {
        int n = (int)Math.Min(buffer.Length, ConnectPrefix.Length);
        Span<byte> start = stackalloc byte[ConnectPrefix.Length];
        buffer.Slice(0, n).CopyTo(start);
        return start[..n].SequenceEqual(ConnectPrefix.AsSpan(0, n));
    }

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2025:Do not pass IDisposable instances into unawaited tasks", Justification = "Both pump tasks are awaited (Task.WhenAll) before the streams and the token source are disposed.")]
    private async Task TunnelAsync(ConnectionContext connection, string head, CancellationToken ct)
    {
        string requestLine = head.Split("\r\n", 2)[0];
        string[] parts = requestLine.Split(' ');
        if (parts.Length != 3 || !parts[2].StartsWith("HTTP/1.", StringComparison.Ordinal)
            || !EgressProxyMiddleware.TrySplitAuthority(parts[1], out var host, out var port))
        {
            await DenyAsync(connection, "InvalidTarget", ct).ConfigureAwait(false);
            return;
        }

        var decision = _policy.Evaluate(parts[1], _sandbox);
        if (!decision.IsAllowed)
        {
            await DenyAsync(connection, decision.Reason.ToString(), ct).ConfigureAwait(false);
            return;
        }

        Stream upstream;
        try
        {
            upstream = await _connector(host, port, null, ct).ConfigureAwait(false);
        }
        catch (EgressDeniedException denied)
        {
            await DenyAsync(connection, denied.Decision.Reason.ToString(), ct).ConfigureAwait(false);
            return;
        }
        catch (HttpRequestException ex)
        {
            EgressProxyLog.UpstreamFailed(_logger, "connect", ex.HttpRequestError.ToString());
            await WriteAsync(connection, 502, "Bad Gateway", "{\"error\":\"bad_gateway\"}", ct).ConfigureAwait(false);
            return;
        }

        await using (upstream.ConfigureAwait(false))
        {
            await connection.Transport.Output.WriteAsync("HTTP/1.1 200 Connection Established\r\n\r\n"u8.ToArray(), ct).ConfigureAwait(false);
            EgressProxyLog.TunnelOpened(_logger);
            using var done = CancellationTokenSource.CreateLinkedTokenSource(ct);
            var up = PumpAsync(connection.Transport.Input.AsStream(leaveOpen: true), upstream, done.Token);
            var down = PumpAsync(upstream, connection.Transport.Output.AsStream(leaveOpen: true), done.Token);
            await Task.WhenAny(up, down).ConfigureAwait(false);
            await done.CancelAsync().ConfigureAwait(false);
            await Task.WhenAll(up, down).ConfigureAwait(false);
        }
    }

    private static async Task PumpAsync(Stream from, Stream to, CancellationToken ct)
    {
        try
        {
            await from.CopyToAsync(to, ct).ConfigureAwait(false);
            await to.FlushAsync(ct).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
            // One side closed or the connection ended: the tunnel ends.
        }
    }

    private async Task DenyAsync(ConnectionContext connection, string reason, CancellationToken ct)
    {
        EgressProxyLog.Denied(_logger, "connect", reason);
        await WriteAsync(connection, 403, "Forbidden", EgressProxyMiddleware.DenialJson(reason), ct).ConfigureAwait(false);
    }

    private static async Task WriteAsync(ConnectionContext connection, int status, string phrase, string json, CancellationToken ct)
    {
        byte[] body = Encoding.UTF8.GetBytes(json);
        string head = $"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n";
        PipeWriter output = connection.Transport.Output;
        await output.WriteAsync(Encoding.ASCII.GetBytes(head), ct).ConfigureAwait(false);
        await output.WriteAsync(body, ct).ConfigureAwait(false);
        await output.CompleteAsync().ConfigureAwait(false);
    }
}
