using System.CommandLine;
using System.IO.Abstractions;
using Kars.Policy.Budgets;

namespace Kars.Policy.Cli;

/// <summary><c>kars-policy budget replay --limits FILE [--store memory|file:PATH|redis:CONN] [--json] &lt; events.jsonl</c> (DESIGN §7).</summary>
internal static class BudgetCommand
{
    public static Command Create(CliConsole console) => Create(console, new FileSystem(), TimeProvider.System);

    public static Command Create(CliConsole console, IFileSystem fileSystem, TimeProvider time)
    {
        var command = new Command("budget", "Token budget tools.");
        var limits = new Option<string>("--limits") { Description = "The limits file (JSON).", Required = true };
        var store = new Option<string>("--store") { Description = "memory (default), file:PATH or redis:CONN.", DefaultValueFactory = _ => "memory" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object per event instead of a table." };
        var replay = new Command("replay", "Replay recorded budget events (JSON lines on stdin) against proposed limits.")
        {
            limits,
            store,
            json,
        };
        replay.SetAction(parse => Run(console, fileSystem, time, parse.GetValue(limits)!, parse.GetValue(store) ?? "memory", parse.GetValue(json)));
        command.Subcommands.Add(replay);
        return command;
    }

    private static int Run(CliConsole console, IFileSystem fileSystem, TimeProvider time, string limitsPath, string storeSpec, bool json)
    {
        try
        {
            string text;
            try
            {
                text = fileSystem.File.ReadAllText(limitsPath);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
            {
                throw new BudgetReplayException($"limits file '{limitsPath}' cannot be read: {ex.Message}");
            }

            BudgetPolicy policy = BudgetLimitsFile.Parse(text);
            return RunAsync(console, fileSystem, time, policy, storeSpec, json).GetAwaiter().GetResult();
        }
        catch (BudgetReplayException ex)
        {
            console.Error.WriteLine($"kars-policy: {ex.Message}");
            return ExitCodes.UsageError;
        }
        catch (BudgetException ex)
        {
            console.Error.WriteLine($"kars-policy: {ex.Message}");
            return ExitCodes.UsageError;
        }
    }

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Performance", "CA1849:Call async methods when in an async method", Justification = "The CLI writes to its console synchronously everywhere; one async write here would not change anything.")]
    private static async Task<int> RunAsync(CliConsole console, IFileSystem fileSystem, TimeProvider time, BudgetPolicy policy, string storeSpec, bool json)
    {
        BudgetStore store = await BudgetReplay.OpenStoreAsync(storeSpec, fileSystem, time).ConfigureAwait(false);
        await using (store.ConfigureAwait(false))
        {
            if (store is FileBudgetStore { TornBytesDiscarded: > 0 } file)
            {
                console.Error.WriteLine($"kars-policy: warning: {file.Directory}: dropped an incomplete final log record of {file.TornBytesDiscarded} bytes (a write cut short by a crash, never acknowledged)");
            }

            return await BudgetReplay.RunAsync(policy, store, console.In, console.Out, json).ConfigureAwait(false);
        }
    }
}
