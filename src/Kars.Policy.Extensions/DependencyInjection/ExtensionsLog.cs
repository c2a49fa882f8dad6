using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;

namespace Kars.Policy.DependencyInjection;

/// <summary>Log messages of Kars.Policy.Extensions. Event ids 6000–6099 belong to it; never reuse one.</summary>
internal static partial class ExtensionsLog
{
    [LoggerMessage(6000, LogLevel.Information, "Kars budget options reloaded: a new budget policy is in force", EventName = "KarsBudgetOptionsReloaded")]
    public static partial void BudgetOptionsReloaded(ILogger logger);

    /// <summary>Logs a refused reload. The problem text names configuration paths, and a listed budget key is a path
    /// segment (<c>Kars:Budgets:Keys:&lt;key&gt;</c>) or a quoted parent: both are replaced by <c>***</c>, since a
    /// budget key may be an API key or a tenant id.</summary>
    public static void BudgetOptionsReloadRejected(ILogger logger, int problemCount, string firstProblem)
        => BudgetOptionsReloadRejectedCore(logger, problemCount, RedactBudgetKeys(firstProblem));

    /// <summary>Replaces every budget key in a configuration problem's text with <c>***</c>.</summary>
    internal static string RedactBudgetKeys(string problem)
        => QuotedParent().Replace(KeySegment().Replace(problem, "***"), "***");

    [LoggerMessage(6001, LogLevel.Error, "Kars budget options reload refused ({ProblemCount} problems, first: {FirstProblem}); the budget policy in force is kept", EventName = "KarsBudgetOptionsReloadRejected")]
    private static partial void BudgetOptionsReloadRejectedCore(ILogger logger, int problemCount, string firstProblem);

    [LoggerMessage(6002, LogLevel.Warning, "Kars options that apply only at start changed in configuration ({Options}); the values in force are kept until the process restarts", EventName = "KarsRestartOptionsChanged")]
    public static partial void RestartOptionsChanged(ILogger logger, string options);

    [LoggerMessage(6003, LogLevel.Warning, "Kars could not check a configuration reload for options that apply only at start ({ErrorType})", EventName = "KarsRestartOptionsCheckFailed")]
    public static partial void RestartOptionsCheckFailed(ILogger logger, string errorType);

    // The segment after "Budgets:Keys:" (a configuration key holds no ':'), up to the next ':' or the end.
    [GeneratedRegex(@"(?<=(?:^|:)Budgets:Keys:)[^:]+", RegexOptions.CultureInvariant)]
    private static partial Regex KeySegment();

    // The parent a key names, quoted by the validator: ":Parent '<key>'".
    [GeneratedRegex(@"(?<=:Parent ')[^']*(?=')", RegexOptions.CultureInvariant)]
    private static partial Regex QuotedParent();
}
