using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Kars.Policy.Egress;
using Kars.Policy.Internal;
using NodaTime;

namespace Kars.Policy.Cli;

/// <summary>
/// <c>kars-policy eval --policy FILE|DIR [--mode Strict|Learn] [--at RFC3339] [--sandbox NAME] [--json] TARGET… | --stdin</c>
/// (DESIGN §7): one decision per target. Exit 0 when every target was evaluated (whatever the verdicts), 2 on a usage
/// error or when the policy does not load.
/// </summary>
internal static class EvalCommand
{
    private static readonly Instant MinClock = Instant.FromUtc(1, 1, 1, 0, 0);
    private static readonly Instant MaxClock = Instant.FromUtc(9999, 12, 31, 23, 59, 59);

    public static Command Create(CliConsole console)
    {
        var policy = new Option<string>("--policy") { Description = "A native JSON policy file, a kars allowlist.json, or a kars folder.", Required = true };
        var mode = new Option<string?>("--mode") { Description = "Override the policy's mode: Strict or Learn." };
        var at = new Option<string?>("--at") { Description = "Evaluate as of this RFC 3339 time (approvals are time-boxed). Default: now." };
        var sandbox = new Option<string?>("--sandbox") { Description = "The sandbox name the targets come from." };
        var json = new Option<bool>("--json") { Description = "Print one JSON object per line." };
        var stdin = new Option<bool>("--stdin") { Description = "Read targets from standard input, one per line." };
        var targets = new Argument<string[]>("targets") { Description = "URLs, host:port authorities or hosts.", Arity = ArgumentArity.ZeroOrMore };

        var command = new Command("eval", "Evaluate egress targets against a policy (exit 0 even when targets are denied).")
        {
            policy, mode, at, sandbox, json, stdin, targets,
        };
        command.SetAction(parse => Run(
            console,
            parse.GetValue(policy)!,
            parse.GetValue(mode),
            parse.GetValue(at),
            parse.GetValue(sandbox),
            parse.GetValue(json),
            parse.GetValue(stdin),
            parse.GetValue(targets) ?? []));
        return command;
    }

    private static int Run(CliConsole console, string policyPath, string? modeText, string? atText, string? sandbox, bool json, bool useStdin, string[] targets)
    {
        var options = new KarsEgressOptions();
        if (modeText is not null)
        {
            // Exactly one declared name, any case (Enum.TryParse would read "Strict,Learn" as Learn and "1" as Learn).
            if (!StrictEnum.TryParse(modeText, out EgressMode mode))
            {
                return Usage(console, $"--mode must be Strict or Learn, not \"{modeText}\"");
            }

            options.Mode = mode;
        }

        TimeProvider clock = TimeProvider.System;
        if (atText is not null)
        {
            // The instant must also fit a DateTimeOffset (years 0001–9999), which the clock needs.
            if (!Rfc3339.TryParse(atText, out Instant at) || at < MinClock || at > MaxClock)
            {
                return Usage(console, $"--at must be an RFC 3339 time from 0001-01-01 to 9999-12-31, such as 2030-01-01T00:00:00Z, not \"{atText}\"");
            }

            clock = new FixedTimeProvider(at.ToDateTimeOffset());
        }

        if (useStdin == (targets.Length > 0))
        {
            return Usage(console, useStdin ? "give targets either as arguments or with --stdin, not both" : "give at least one TARGET, or --stdin");
        }

        EgressPolicy loaded;
        try
        {
            loaded = new EgressPolicy(policyPath, options, fileSystem: null, clock);
        }
        catch (ArgumentException ex)
        {
            return Usage(console, ex.Message);
        }

        if (!loaded.IsLoaded)
        {
            var problems = loaded.LastLoadProblems;
            console.Error.WriteLine($"kars-policy: the policy does not load ({Problems.Count(problems.Count)}):");
            Problems.Write(console.Error, problems, prefix: "  ");
            return ExitCodes.UsageError;
        }

        // Warnings do not stop evaluation, but an operator must see them: a skipped approval file, a feed kept at its
        // last good contents, an overbroad rule.
        if (loaded.Warnings.Count > 0)
        {
            console.Error.WriteLine($"kars-policy: the policy loaded with {Problems.Count(loaded.Warnings.Count, "warning")}:");
            Problems.Write(console.Error, loaded.Warnings, prefix: "  warning: ");
        }

        IEnumerable<string> inputs = useStdin ? ReadLines(console.In) : targets;
        var rows = new List<string[]>();
        foreach (string input in inputs)
        {
            var decision = EgressTargetParser.TryParse(input, out var target, out _)
                ? loaded.Evaluate(target, sandbox)
                : loaded.Evaluate(input);
            if (json)
            {
                console.Out.WriteLine(ToJson(input, decision));
            }
            else
            {
                rows.Add(
                [
                    OneLine(input),
                    decision.IsAllowed ? "allow" : "deny",
                    JsonNamingPolicy.CamelCase.ConvertName(decision.Reason.ToString()) + (decision.WouldDeny ? " (would deny)" : string.Empty),
                    decision.Target.IsValid ? decision.Target.ToString() : "-",
                    decision.Rule ?? "-",
                ]);
            }
        }

        if (!json)
        {
            WriteTable(console.Out, loaded, rows);
        }

        return ExitCodes.Success;
    }

    /// <summary>Reads targets exactly as written: lines end only at LF (one CR just before the LF is dropped, any
    /// other CR stays in the line and so makes the target invalid), nothing is trimmed, one leading BOM is dropped.
    /// Empty lines and lines that start with <c>#</c> are skipped.</summary>
    internal static IEnumerable<string> ReadLines(TextReader reader)
    {
        var line = new StringBuilder();
        char[] buffer = new char[4096];
        bool first = true;
        int read;
        while ((read = reader.Read(buffer, 0, buffer.Length)) > 0)
        {
            int start = 0;
            if (first)
            {
                first = false;
                if (buffer[0] == '\uFEFF')
                {
                    start = 1;
                }
            }

            for (int i = start; i < read; i++)
            {
                if (buffer[i] != '\n')
                {
                    line.Append(buffer[i]);
                    continue;
                }

                if (line.Length > 0 && line[^1] == '\r')
                {
                    line.Length--;
                }

                if (TakeLine(line) is { } target)
                {
                    yield return target;
                }
            }
        }

        if (TakeLine(line) is { } last)
        {
            yield return last;
        }
    }

    private static string? TakeLine(StringBuilder line)
    {
        string text = line.ToString();
        line.Clear();
        return text.Length == 0 || text[0] == '#' ? null : text;
    }

    internal static string ToJson(string input, in EgressDecision decision)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("target", input);
            writer.WriteString("verdict", decision.IsAllowed ? "allow" : "deny");
            writer.WriteString("reason", JsonNamingPolicy.CamelCase.ConvertName(decision.Reason.ToString()));
            if (decision.Target.IsValid)
            {
                writer.WriteString("host", decision.Target.Host);
                writer.WriteNumber("port", decision.Target.Port);
            }
            else
            {
                writer.WriteNull("host");
                writer.WriteNull("port");
                writer.WriteString("error", JsonNamingPolicy.CamelCase.ConvertName(decision.TargetError.ToString()));
            }

            if (decision.Rule is null)
            {
                writer.WriteNull("rule");
            }
            else
            {
                writer.WriteString("rule", decision.Rule);
            }

            writer.WriteBoolean("wouldDeny", decision.WouldDeny);
            writer.WriteString("mode", decision.Mode.ToString());
            writer.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    private static void WriteTable(TextWriter output, EgressPolicy policy, List<string[]> rows)
    {
        output.WriteLine($"policy {policy.PolicyPath} {policy.Digest} generation {policy.Generation.ToString(CultureInfo.InvariantCulture)} mode {policy.Mode}");
        string[] header = ["TARGET", "VERDICT", "REASON", "HOST:PORT", "RULE"];
        int[] widths = [.. header.Select((h, i) => Math.Max(h.Length, rows.Count == 0 ? 0 : rows.Max(r => r[i].Length)))];
        output.WriteLine(Format(header, widths));
        foreach (var row in rows)
        {
            output.WriteLine(Format(row, widths));
        }
    }

    private static string Format(string[] cells, int[] widths) =>
        string.Join("  ", cells.Select((c, i) => i == cells.Length - 1 ? c : c.PadRight(widths[i]))).TrimEnd();

    private static string OneLine(string text) =>
        text.Replace('\r', ' ').Replace('\n', ' ');

    private static int Usage(CliConsole console, string message)
    {
        console.Error.WriteLine($"kars-policy: {message}");
        return ExitCodes.UsageError;
    }

    /// <summary>A clock stopped at one instant (for <c>--at</c>).</summary>
    private sealed class FixedTimeProvider(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }
}
