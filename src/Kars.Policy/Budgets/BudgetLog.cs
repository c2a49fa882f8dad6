using Microsoft.Extensions.Logging;

namespace Kars.Policy.Budgets;

/// <summary>Log messages of the budget stores. Event ids 3000–3099 belong to budgets; never reuse one.</summary>
internal static partial class BudgetLog
{
    [LoggerMessage(3001, LogLevel.Information, "Budget store opened in '{Directory}': {Keys} keys, {OpenLeases} open leases, {Replayed} log records replayed", EventName = "BudgetStoreOpened")]
    public static partial void StoreOpened(ILogger logger, string directory, int keys, int openLeases, long replayed);

    [LoggerMessage(3002, LogLevel.Warning, "Dropped an incomplete final record of {Bytes} bytes at byte {Offset} of '{Path}' (a write cut short, never acknowledged)", EventName = "BudgetLogTornTail")]
    public static partial void TornTail(ILogger logger, string path, long offset, long bytes);

    [LoggerMessage(3003, LogLevel.Debug, "Budget store '{Directory}' compacted at sequence {Sequence}", EventName = "BudgetStoreCompacted")]
    public static partial void Compacted(ILogger logger, string directory, long sequence);

    [LoggerMessage(3004, LogLevel.Error, "Budget store '{Directory}' stopped deciding after a write failure", EventName = "BudgetStoreWriteFailed")]
    public static partial void WriteFailed(ILogger logger, Exception exception, string directory);

    [LoggerMessage(3005, LogLevel.Warning, "Budget store '{Directory}' was corrupt and was restored from its backup generation (budget.snapshot.bak + budget.wal.bak + budget.wal)", EventName = "BudgetStoreRecoveredFromBackup")]
    public static partial void RecoveredFromBackup(ILogger logger, Exception exception, string directory);
}
