using System.CommandLine;

namespace Kars.Policy.Cli;

/// <summary><c>kars-policy eval</c> (DESIGN §7). STUB: implemented with the egress engine.</summary>
internal static class EvalCommand
{
    public static Command Create(CliConsole console)
    {
        var command = new Command("eval", "Evaluate egress targets against a policy.");
        command.SetAction(_ =>
        {
            console.Error.WriteLine("kars-policy: eval is not implemented yet");
            return ExitCodes.UsageError;
        });
        return command;
    }
}
