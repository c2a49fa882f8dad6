using System.CommandLine;
using System.IO.Abstractions;
using Kars.Policy.Egress;

namespace Kars.Policy.Cli;

/// <summary><c>kars-policy learned export --from FILE [--sandbox NAME]</c> (DESIGN §7): prints a proposed Strict native
/// policy document built from a learned-hosts file written by <see cref="EgressPolicy.SaveLearnedHosts"/>.</summary>
internal static class EvalLearnedCommand
{
    public static Command Create(CliConsole console)
    {
        var from = new Option<string>("--from") { Description = "A learned-hosts file written by EgressPolicy.SaveLearnedHosts.", Required = true };
        var sandbox = new Option<string?>("--sandbox") { Description = "Only the hosts this sandbox used." };
        var export = new Command("export", "Print a proposed Strict policy document from recorded learned hosts.") { from, sandbox };
        export.SetAction(parse =>
        {
            try
            {
                var hosts = LearnedHostStore.Load(new FileSystem(), parse.GetValue(from)!);
                string? only = parse.GetValue(sandbox);
                console.Out.Write(LearnedHostStore.ExportPolicy(only is null ? hosts : hosts.Where(h => h.Sandbox == only)));
                return ExitCodes.Success;
            }
            catch (EgressPolicyLoadException ex)
            {
                console.Error.WriteLine($"kars-policy: {ex.Problems.FirstOrDefault()?.ToString() ?? ex.Message}");
                return ExitCodes.UsageError;
            }
        });

        return new Command("learned", "Learned-host tools.") { export };
    }
}
