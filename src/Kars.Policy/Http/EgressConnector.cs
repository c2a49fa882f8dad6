using System.Net;
using System.Net.Http;
using System.Net.Sockets;
using Kars.Policy.Egress;
using Microsoft.Extensions.Logging;

namespace Kars.Policy.Http;

/// <summary>The connect-time check behind <see cref="EgressConnectCallback"/>: vet the name, resolve it once,
/// vet every answer, then connect only to the vetted addresses, in order, each attempt bounded.</summary>
internal sealed class EgressConnector
{
    private readonly IEgressPolicy _policy;
    private readonly EgressHttpOptions _options;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger _logger;
    private readonly Func<IPEndPoint, CancellationToken, ValueTask<Stream>> _connect;

    internal EgressConnector(
        IEgressPolicy policy,
        EgressHttpOptions? options,
        TimeProvider? timeProvider,
        ILogger? logger,
        Func<IPEndPoint, CancellationToken, ValueTask<Stream>>? connect = null)
    {
        ArgumentNullException.ThrowIfNull(policy);
        _policy = policy;
        _options = (options ?? new EgressHttpOptions()).Validate();
        _timeProvider = timeProvider ?? TimeProvider.System;
        _logger = logger ?? Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
        _connect = connect ?? ConnectSocketAsync;
    }

    public ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken) =>
        ConnectAsync(context.DnsEndPoint.Host, context.DnsEndPoint.Port, context.InitialRequestMessage, cancellationToken);

    internal async ValueTask<Stream> ConnectAsync(string host, int port, HttpRequestMessage? request, CancellationToken cancellationToken)
    {
        string? sandbox = EgressRequestOptions.GetSandbox(request, _options.Sandbox);

        // 1. The connection's own host and port: the destination, or the proxy when one is in use.
        IPAddress? literal = IPAddress.TryParse(host, out var parsed) ? Canonical(parsed) : null;
        string authority = literal is { AddressFamily: AddressFamily.InterNetworkV6 } ? $"[{literal}]:{port}" : $"{host}:{port}";
        Deny(_policy.Evaluate(authority, sandbox), EgressCheckpoint.Connect);

        // 2. Through a proxy, the destination the request names (the CONNECT target for HTTPS). The proxy resolves
        //    that name, so only the name can be checked here; the proxy must check the addresses.
        //    SocketsHttpHandler opens an HTTPS tunnel with its own CONNECT request to the proxy URI, whose Host header is
        //    the target authority; a plain-HTTP request keeps its absolute target URI.
        if (request is not null && request.Method == HttpMethod.Connect)
        {
            Deny(_policy.Evaluate(request.Headers.Host ?? string.Empty, sandbox), EgressCheckpoint.ProxyTarget);
        }
        else if (request?.RequestUri is { IsAbsoluteUri: true } target && IsProxyHop(target, host, port))
        {
            Deny(_policy.Evaluate(target, sandbox), EgressCheckpoint.ProxyTarget);
        }

        // 3. Resolve once, vet every answer (one non-public answer refuses the whole name), connect to those only.
        IPAddress[] addresses = literal is not null ? [literal] : await ResolveAsync(host, cancellationToken).ConfigureAwait(false);
        if (addresses.Length == 0)
        {
            HttpEgressLog.NotResolved(_logger);
            throw new HttpRequestException(HttpRequestError.NameResolutionError, "The host name did not resolve to any address.");
        }

        for (int i = 0; i < addresses.Length; i++)
        {
            addresses[i] = Canonical(addresses[i]);
            // The name (or literal) was decided above; an answer is refused for what only the address can show:
            // a non-public range the policy does not allow (or no policy). A public answer of an allowed name needs no
            // CIDR rule of its own, though EvaluateResolvedAddress, deciding it as an IP literal, reports NotAllowlisted.
            EgressDecision answer = _policy.EvaluateResolvedAddress(addresses[i], port, sandbox);
            if (answer.Reason is EgressReason.NonPublicAddress or EgressReason.InvalidTarget or EgressReason.NoPolicy)
            {
                Deny(answer, EgressCheckpoint.ResolvedAddress);
            }
        }

        return await ConnectInOrderAsync(addresses, port, cancellationToken).ConfigureAwait(false);
    }

    private static bool IsProxyHop(Uri target, string host, int port) =>
        target.Port != port || !string.Equals(target.IdnHost.Trim('[', ']'), host.Trim('[', ']'), StringComparison.OrdinalIgnoreCase);

    private static IPAddress Canonical(IPAddress address) => address.IsIPv4MappedToIPv6 ? address.MapToIPv4() : address;

    private async ValueTask<IPAddress[]> ResolveAsync(string host, CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(_options.ConnectAttemptTimeout, _timeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            var addresses = await _options.Resolver!.ResolveAsync(host, linked.Token).ConfigureAwait(false);
            return addresses is null ? [] : (IPAddress[])addresses.Clone();
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new HttpRequestException(HttpRequestError.NameResolutionError, "The host name did not resolve within the connect time-out.");
        }
    }

    private async ValueTask<Stream> ConnectInOrderAsync(IPAddress[] addresses, int port, CancellationToken cancellationToken)
    {
        int attempts = Math.Min(addresses.Length, _options.MaxConnectAttempts);
        Exception? last = null;
        for (int i = 0; i < attempts; i++)
        {
            using var timeout = new CancellationTokenSource(_options.ConnectAttemptTimeout, _timeProvider);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
            try
            {
                return await _connect(new IPEndPoint(addresses[i], port), linked.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException ex) when (!cancellationToken.IsCancellationRequested && timeout.IsCancellationRequested)
            {
                HttpEgressLog.AttemptTimedOut(_logger, i + 1, attempts, _options.ConnectAttemptTimeout.TotalMilliseconds);
                last = new TimeoutException("The connection attempt timed out.", ex);
            }
            catch (Exception ex) when (ex is SocketException or IOException)
            {
                HttpEgressLog.AttemptFailed(_logger, i + 1, attempts, ex is SocketException se ? se.SocketErrorCode.ToString() : ex.GetType().Name);
                last = ex;
            }
        }

        cancellationToken.ThrowIfCancellationRequested();
        throw new HttpRequestException(HttpRequestError.ConnectionError, $"None of the {attempts} vetted address(es) accepted the connection.", last);
    }

    private void Deny(in EgressDecision decision, EgressCheckpoint checkpoint)
    {
        if (!decision.IsAllowed)
        {
            HttpEgressLog.Denied(_logger, checkpoint, decision.Reason, decision.PolicyGeneration);
            throw new EgressDeniedException(decision, checkpoint);
        }
    }

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2000:Dispose objects before losing scope", Justification = "The socket is disposed on failure and owned by the returned NetworkStream on success.")]
    private static async ValueTask<Stream> ConnectSocketAsync(IPEndPoint endPoint, CancellationToken cancellationToken)
    {
        var socket = new Socket(endPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(endPoint, cancellationToken).ConfigureAwait(false);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }
}
