using Microsoft.Extensions.Logging;

namespace Kars.Policy.Http;

/// <summary>Log messages of the HttpClient integration. Event ids 5000–5099 are reserved for it and never reused.
/// Messages name reasons, checkpoints and counts, never a host, address, URL or query string.</summary>
internal static partial class HttpEgressLog
{
    [LoggerMessage(5000, LogLevel.Warning, "Egress denied at {Checkpoint}: {Reason} (policy generation {Generation})", EventName = "EgressDenied")]
    public static partial void Denied(ILogger logger, EgressCheckpoint checkpoint, Kars.Policy.Egress.EgressReason reason, long generation);

    [LoggerMessage(5001, LogLevel.Debug, "Egress connection attempt {Attempt} of {Attempts} timed out after {TimeoutMs} ms; trying the next address", EventName = "EgressConnectAttemptTimedOut")]
    public static partial void AttemptTimedOut(ILogger logger, int attempt, int attempts, double timeoutMs);

    [LoggerMessage(5002, LogLevel.Debug, "Egress connection attempt {Attempt} of {Attempts} failed ({Error}); trying the next address", EventName = "EgressConnectAttemptFailed")]
    public static partial void AttemptFailed(ILogger logger, int attempt, int attempts, string error);

    [LoggerMessage(5003, LogLevel.Warning, "Egress connection refused: the host name did not resolve", EventName = "EgressNameNotResolved")]
    public static partial void NotResolved(ILogger logger);

    [LoggerMessage(5004, LogLevel.Debug, "HTTP/3 request downgraded to HTTP/2: QUIC connections bypass the egress connect callback", EventName = "EgressHttp3Downgraded")]
    public static partial void Http3Downgraded(ILogger logger);
}
