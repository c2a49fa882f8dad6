using Kars.Policy.Egress;
using Microsoft.Extensions.Logging;

namespace Kars.Policy.Azure;

/// <summary>Log messages of the Azure SDK and System.ClientModel integration. Event ids 5100–5199 are reserved for
/// it and never reused. Messages never name a host, URL, scope, tenant or token.</summary>
internal static partial class AzureEgressLog
{
    [LoggerMessage(5100, LogLevel.Warning, "Egress denied in the {Pipeline} pipeline: {Reason} (policy generation {Generation})", EventName = "EgressPipelineDenied")]
    public static partial void Denied(ILogger logger, string pipeline, EgressReason reason, long generation);

    [LoggerMessage(5110, LogLevel.Warning, "Token refresh failed ({Error}); serving the cached token, still valid for {RemainingSeconds} s", EventName = "TokenRefreshFailedServingCached")]
    public static partial void RefreshFailedServingCached(ILogger logger, string error, long remainingSeconds);

    [LoggerMessage(5111, LogLevel.Error, "Token refresh failed ({Error}) and no valid token is cached", EventName = "TokenRefreshFailed")]
    public static partial void RefreshFailed(ILogger logger, string error);

    [LoggerMessage(5112, LogLevel.Debug, "Token refreshed ahead of expiry; next refresh in {RefreshInSeconds} s", EventName = "TokenRefreshed")]
    public static partial void Refreshed(ILogger logger, long refreshInSeconds);
}
