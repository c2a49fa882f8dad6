using Microsoft.Extensions.Logging;

namespace Kars.Policy.DependencyInjection;

/// <summary>Log messages of Kars.Policy.Extensions. Event ids 6000–6099 belong to it; never reuse one.</summary>
internal static partial class ExtensionsLog
{
    [LoggerMessage(6000, LogLevel.Information, "Kars budget options reloaded: a new budget policy is in force", EventName = "KarsBudgetOptionsReloaded")]
    public static partial void BudgetOptionsReloaded(ILogger logger);

    [LoggerMessage(6001, LogLevel.Error, "Kars budget options reload refused ({ProblemCount} problems, first: {FirstProblem}); the budget policy in force is kept", EventName = "KarsBudgetOptionsReloadRejected")]
    public static partial void BudgetOptionsReloadRejected(ILogger logger, int problemCount, string firstProblem);
}
