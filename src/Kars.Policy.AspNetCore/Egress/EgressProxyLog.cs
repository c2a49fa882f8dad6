using Kars.Policy.Egress;
using Microsoft.Extensions.Logging;

namespace Kars.Policy.AspNetCore;

/// <summary>Log messages of the egress forward proxy. Event ids 5200–5299 are reserved for it and never reused.
/// Messages name the request form and the reason, never the host, URL or query string.</summary>
internal static partial class EgressProxyLog
{
    [LoggerMessage(5200, LogLevel.Warning, "Egress proxy denied a {Form} request: {Reason}", EventName = "EgressProxyDenied")]
    public static partial void Denied(ILogger logger, string form, string reason);

    [LoggerMessage(5201, LogLevel.Debug, "Egress proxy tunnel opened", EventName = "EgressProxyTunnelOpened")]
    public static partial void TunnelOpened(ILogger logger);

    [LoggerMessage(5202, LogLevel.Warning, "Egress proxy could not reach the upstream of a {Form} request ({Error})", EventName = "EgressProxyUpstreamFailed")]
    public static partial void UpstreamFailed(ILogger logger, string form, string error);

    [LoggerMessage(5203, LogLevel.Error, "Egress proxy cannot tunnel: the server does not offer an upgradable CONNECT", EventName = "EgressProxyTunnelUnsupported")]
    public static partial void TunnelUnsupported(ILogger logger);

    [LoggerMessage(5204, LogLevel.Debug, "Egress proxy forwarded an absolute-form request: {StatusCode}", EventName = "EgressProxyForwarded")]
    public static partial void Forwarded(ILogger logger, int statusCode);

    internal static string ReasonText(EgressReason reason) => reason.ToString();
}
