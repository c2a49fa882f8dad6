using Microsoft.Extensions.Logging;

namespace Kars.Policy.Egress;

/// <summary>Log messages of the egress engine. Event ids 1100–1199 are reserved for egress and never reused.
/// Messages name files, digests and counts, never a target host or URL.</summary>
internal static partial class EgressLog
{
    [LoggerMessage(1100, LogLevel.Information, "Egress policy loaded from '{Path}': digest {Digest}, generation {Generation}, {NameCount} names", EventName = "EgressPolicyLoaded")]
    public static partial void PolicyLoaded(ILogger logger, string path, string digest, long generation, int nameCount);

    [LoggerMessage(1101, LogLevel.Error, "Egress policy '{Path}' failed to load ({ProblemCount} problems, first: {FirstProblem}); {Fallback}", EventName = "EgressPolicyLoadFailed")]
    public static partial void PolicyLoadFailed(ILogger logger, string path, int problemCount, string firstProblem, string fallback);

    [LoggerMessage(1102, LogLevel.Warning, "Egress policy warning: {Problem}", EventName = "EgressPolicyWarning")]
    public static partial void PolicyWarning(ILogger logger, string problem);

    [LoggerMessage(1103, LogLevel.Error, "Egress policy last-known-good store failed to {Operation}: {Error}", EventName = "EgressPolicyLastKnownGoodFailed")]
    public static partial void LastKnownGoodFailed(ILogger logger, string operation, string error);

    [LoggerMessage(1104, LogLevel.Error, "{Count} egress policy change listener(s) threw ({ExceptionType}); the new state is in force", EventName = "EgressPolicyChangeListenerFailed")]
    public static partial void ChangeListenerFailed(ILogger logger, int count, string exceptionType);
}
