using System.Net.Http;
using Kars.Policy.Egress;
using Microsoft.Extensions.Logging;

namespace Kars.Policy.Http;

/// <summary>
/// Creates <see cref="SocketsHttpHandler.ConnectCallback"/> delegates that check every connection an
/// <see cref="HttpClient"/> opens, including each redirect hop and each connection to a proxy.
/// </summary>
/// <remarks>
/// <para>For each new connection the callback: (1) decides the connection's host and port with
/// <see cref="IEgressPolicy.Evaluate(string, string?)"/>; (2) when the connection goes to a proxy, also decides the
/// request's destination (the <c>CONNECT</c> target for HTTPS, the absolute URI for plain HTTP); (3) resolves the
/// host name once with <see cref="EgressHttpOptions.Resolver"/> and refuses the connection when any answer is denied
/// by <see cref="IEgressPolicy.EvaluateResolvedAddress"/> (one non-public answer refuses the name, unless the policy
/// allows that range); (4) connects to the vetted addresses only, in order, each attempt bounded by
/// <see cref="EgressHttpOptions.ConnectAttemptTimeout"/>. Nothing resolves the name a second time, so a DNS answer
/// that changes between the check and the connect changes nothing.</para>
/// <para>A refusal throws <see cref="EgressDeniedException"/>, which <see cref="SocketsHttpHandler"/> wraps in its own
/// <see cref="HttpRequestException"/>; <see cref="EgressPolicyHandler"/> unwraps it. HTTP/3 (QUIC) connections do not
/// pass through a connect callback: <see cref="EgressPolicyHandler"/> keeps requests on HTTP/2 or lower.</para>
/// </remarks>
public static class EgressConnectCallback
{
    /// <summary>Creates a connect callback.</summary>
    /// <param name="policy">The policy that decides.</param>
    /// <param name="options">Options; <see langword="null"/> for the defaults. Copied on creation.</param>
    /// <param name="timeProvider">The clock for attempt time-outs; <see langword="null"/> for <see cref="TimeProvider.System"/>.</param>
    /// <param name="loggerFactory">Where denials and failed attempts are logged; <see langword="null"/> for none.</param>
    /// <returns>The callback, for <see cref="SocketsHttpHandler.ConnectCallback"/>.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="policy"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public static Func<SocketsHttpConnectionContext, CancellationToken, ValueTask<Stream>> Create(
        IEgressPolicy policy,
        EgressHttpOptions? options = null,
        TimeProvider? timeProvider = null,
        ILoggerFactory? loggerFactory = null)
    {
        var connector = new EgressConnector(policy, options, timeProvider, loggerFactory?.CreateLogger(typeof(EgressConnectCallback).FullName!));
        return connector.ConnectAsync;
    }

    /// <summary>
    /// Creates the check behind the connect callback as a plain function, for hosts that open their own upstream
    /// connections (a forward proxy tunnelling <c>CONNECT</c>): it decides <c>host:port</c>, resolves the name once,
    /// refuses when any answer is denied, and connects to the vetted addresses only, each attempt bounded.
    /// </summary>
    /// <param name="policy">The policy that decides.</param>
    /// <param name="options">Options; <see langword="null"/> for the defaults. Copied on creation.</param>
    /// <param name="timeProvider">The clock for attempt time-outs; <see langword="null"/> for <see cref="TimeProvider.System"/>.</param>
    /// <param name="loggerFactory">Where denials and failed attempts are logged; <see langword="null"/> for none.</param>
    /// <returns>A function of (host, port, the request the connection is for or <see langword="null"/>, cancellation)
    /// that returns the connected stream or throws <see cref="EgressDeniedException"/>.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="policy"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public static Func<string, int, HttpRequestMessage?, CancellationToken, ValueTask<Stream>> CreateConnector(
        IEgressPolicy policy,
        EgressHttpOptions? options = null,
        TimeProvider? timeProvider = null,
        ILoggerFactory? loggerFactory = null)
    {
        var connector = new EgressConnector(policy, options, timeProvider, loggerFactory?.CreateLogger(typeof(EgressConnectCallback).FullName!));
        return connector.ConnectAsync;
    }

    /// <summary>Creates a <see cref="SocketsHttpHandler"/> whose connect callback checks every connection.</summary>
    /// <param name="policy">The policy that decides.</param>
    /// <param name="options">Options; <see langword="null"/> for the defaults. Copied on creation.</param>
    /// <param name="timeProvider">The clock for attempt time-outs; <see langword="null"/> for <see cref="TimeProvider.System"/>.</param>
    /// <param name="loggerFactory">Where denials and failed attempts are logged; <see langword="null"/> for none.</param>
    /// <returns>A new handler; the caller owns it.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="policy"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException">An option is out of range.</exception>
    public static SocketsHttpHandler CreateHandler(
        IEgressPolicy policy,
        EgressHttpOptions? options = null,
        TimeProvider? timeProvider = null,
        ILoggerFactory? loggerFactory = null) =>
        new() { ConnectCallback = Create(policy, options, timeProvider, loggerFactory) };
}
