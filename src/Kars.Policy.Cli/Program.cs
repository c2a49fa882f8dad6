using System.CommandLine;

namespace Kars.Policy.Cli;

/// <summary>Entry point of <c>kars-policy</c>. Exit codes: 0 success, 1 a verification failed, 2 usage or load error.</summary>
internal static class Program
{
    public static int Main(string[] args) => Run(args, Console.In, Console.Out, Console.Error);

    /// <summary>Runs the CLI against the given streams; tests call this directly.</summary>
    public static int Run(string[] args, TextReader stdin, TextWriter stdout, TextWriter stderr)
    {
        var console = new CliConsole(stdin, stdout, stderr);
        var root = new RootCommand("kars-policy: operator commands over the Kars.Policy engines.")
        {
            EvalCommand.Create(console),
            BudgetCommand.Create(console),
            EvalLearnedCommand.Create(console),
            VerifyCommands.CreateVerifyBlob(console, new System.IO.Abstractions.FileSystem()),
            VerifyCommands.CreateVerify(console, new System.IO.Abstractions.FileSystem()),
        };

        ParseResult parse = root.Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var error in parse.Errors)
            {
                stderr.WriteLine($"kars-policy: {error.Message}");
            }

            return ExitCodes.UsageError;
        }

        try
        {
            return parse.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Never a stack trace: one line naming what failed.
            stderr.WriteLine($"kars-policy: {ex.Message}");
            return ExitCodes.UsageError;
        }
    }
}

/// <summary>The process exit codes of every command (DESIGN §7).</summary>
internal static class ExitCodes
{
    public const int Success = 0;
    public const int VerificationFailed = 1;
    public const int UsageError = 2;
}

/// <summary>The standard streams a command reads and writes, injectable for tests.</summary>
internal sealed record CliConsole(TextReader In, TextWriter Out, TextWriter Error);
