using System.CommandLine;

namespace Kars.Policy.Cli;

/// <summary><c>kars-policy budget …</c> (DESIGN §7). STUB: implemented with the budget engine.</summary>
internal static class BudgetCommand
{
    public static Command Create(CliConsole console)
    {
        var command = new Command("budget", "Token budget tools.");
        var replay = new Command("replay", "Replay recorded budget events against proposed limits.");
        replay.SetAction(_ =>
        {
            console.Error.WriteLine("kars-policy: budget replay is not implemented yet");
            return ExitCodes.UsageError;
        });
        command.Subcommands.Add(replay);
        return command;
    }
}
