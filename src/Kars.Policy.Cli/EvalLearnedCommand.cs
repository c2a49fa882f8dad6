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
            string path = parse.GetValue(from)!;
            try
            {
                var hosts = LearnedHostFile.Load(path, new FileSystem());
                string? only = parse.GetValue(sandbox);
                var skipped = new List<EgressPolicyProblem>();
                string document = LearnedHostFile.ExportPolicy(only is null ? hosts : hosts.Where(h => h.Sandbox == only), 1, skipped, path);
                console.Out.Write(document);
                if (skipped.Count > 0)
                {
                    // The document holds only what loads; say what was left out and why.
                    console.Error.WriteLine($"kars-policy: {Problems.Count(skipped.Count, "learned host")} not exported (no allow rule may name them):");
                    Problems.Write(console.Error, skipped, prefix: "  ");
                }

                return ExitCodes.Success;
            }
            catch (EgressPolicyLoadException ex)
            {
                console.Error.WriteLine($"kars-policy: the learned-hosts file does not load ({Problems.Count(ex.Problems.Count)}):");
                Problems.Write(console.Error, ex.Problems, prefix: "  ");
                return ExitCodes.UsageError;
            }
        });

        return new Command("learned", "Learned-host tools.") { export };
    }
}
