using System.Globalization;
using Kars.Policy.Egress;

namespace Kars.Policy.Cli;

/// <summary>How every command prints load problems and warnings: one a line, the first <see cref="MaxShown"/>, then a
/// count of the rest. Control characters in file contents never break a line.</summary>
internal static class Problems
{
    /// <summary>The most problems printed; the rest are counted.</summary>
    public const int MaxShown = 100;

    public static void Write(TextWriter output, IReadOnlyList<EgressPolicyProblem> problems, string prefix)
    {
        int shown = Math.Min(problems.Count, MaxShown);
        for (int i = 0; i < shown; i++)
        {
            output.WriteLine(prefix + OneLine(problems[i].ToString()));
        }

        if (problems.Count > shown)
        {
            output.WriteLine($"{prefix}… and {(problems.Count - shown).ToString(CultureInfo.InvariantCulture)} more (not shown)");
        }
    }

    public static string Count(int count, string noun = "problem") =>
        $"{count.ToString(CultureInfo.InvariantCulture)} {noun}{(count == 1 ? string.Empty : "s")}";

    /// <summary>Replaces control characters (CR, LF, ESC, …) so one problem stays one line and cannot drive a terminal.</summary>
    public static string OneLine(string text) =>
        string.Create(text.Length, text, static (span, source) =>
        {
            for (int i = 0; i < source.Length; i++)
            {
                span[i] = char.IsControl(source[i]) ? '?' : source[i];
            }
        });
}
