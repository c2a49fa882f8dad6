using System.CommandLine;
using System.Globalization;
using System.IO.Abstractions;
using System.Text;
using System.Text.Json;
using Kars.Policy.Bundles;
using Kars.Policy.Egress;
using Kars.Policy.Internal;
using NodaTime;

namespace Kars.Policy.Cli;

/// <summary>
/// <c>kars-policy eval --policy FILE|DIR [--mode Strict|Learn] [--at RFC3339] [--sandbox NAME] [--json] TARGET… | --stdin</c>
/// (DESIGN §7): one decision per target. Exit 0 when every target was evaluated (whatever the verdicts), 2 on a usage
/// error or when the policy does not load. For an OCI image layout, the options of <c>verify</c> say who must have
/// signed it, <c>--digest</c> pins the manifest and <c>--expected-name</c> the signed policy name; a bundle that fails
/// verification, names another policy (or none) or does not compile is never evaluated: exit 2, the
/// <see cref="BundleFailureReason"/> on stderr, nothing on stdout.
/// </summary>
internal static class EvalCommand
{
    private static readonly Instant MinClock = Instant.FromUtc(1, 1, 1, 0, 0);
    private static readonly Instant MaxClock = Instant.FromUtc(9999, 12, 31, 23, 59, 59);

    public static Command Create(CliConsole console, IFileSystem? fileSystem = null)
    {
        fileSystem ??= new FileSystem();
        var policy = new Option<string>("--policy") { Description = "A native JSON policy file, a kars allowlist.json, a kars folder, or an OCI image layout holding a signed policy bundle.", Required = true };
        var mode = new Option<string?>("--mode") { Description = "Override the policy's mode: Strict or Learn." };
        var at = new Option<string?>("--at") { Description = "Evaluate as of this RFC 3339 time (approvals are time-boxed). Default: now." };
        var sandbox = new Option<string?>("--sandbox") { Description = "The sandbox name the targets come from." };
        var json = new Option<bool>("--json") { Description = "Print one JSON object per line." };
        var stdin = new Option<bool>("--stdin") { Description = "Read targets from standard input, one per line." };
        var targets = new Argument<string[]>("targets") { Description = "URLs, host:port authorities or hosts.", Arity = ArgumentArity.ZeroOrMore };

        var bundle = new BundleOptions();
        var command = new Command("eval", "Evaluate egress targets against a policy (exit 0 even when targets are denied).")
        {
            policy, mode, at, sandbox, json, stdin, targets,
        };
        bundle.AddTo(command);
        command.SetAction(parse => Run(
            console,
            fileSystem,
            bundle.Read(parse),
            parse.GetValue(policy)!,
            parse.GetValue(mode),
            parse.GetValue(at),
            parse.GetValue(sandbox),
            parse.GetValue(json),
            parse.GetValue(stdin),
            parse.GetValue(targets) ?? []));
        return command;
    }

    private static int Run(CliConsole console, IFileSystem fileSystem, BundleValues bundle, string policyPath, string? modeText, string? atText, string? sandbox, bool json, bool useStdin, string[] targets)
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

        Loaded loaded;
        if (IsOciLayout(fileSystem, policyPath))
        {
            // A signed bundle: verified first, and never evaluated unless it verified (DESIGN §7).
            if (!TryLoadBundle(console, fileSystem, bundle, policyPath, options, out loaded))
            {
                return ExitCodes.UsageError;
            }
        }
        else
        {
            if (bundle.Any)
            {
                return Usage(console, "--key, --certificate-identity(-regexp), --certificate-oidc-issuer, --trusted-root, --insecure-ignore-tlog, --digest and --expected-name apply only to an OCI image layout");
            }

            EgressPolicy policy;
            try
            {
                policy = new EgressPolicy(policyPath, options, fileSystem: null, clock);
            }
            catch (ArgumentException ex)
            {
                return Usage(console, ex.Message);
            }

            if (!policy.IsLoaded)
            {
                var problems = policy.LastLoadProblems;
                console.Error.WriteLine($"kars-policy: the policy does not load ({Problems.Count(problems.Count)}):");
                Problems.Write(console.Error, problems, prefix: "  ");
                return ExitCodes.UsageError;
            }

            loaded = new Loaded(policy.PolicyPath, policy.Digest, policy.Generation, policy.Mode, policy.Warnings, policy);
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
                ? loaded.Policy.Evaluate(target, sandbox)
                : loaded.Policy.Evaluate(input, null);
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

    private static void WriteTable(TextWriter output, Loaded policy, List<string[]> rows)
    {
        output.WriteLine($"policy {policy.Path} {policy.Digest} generation {policy.Generation.ToString(CultureInfo.InvariantCulture)} mode {policy.Mode}");
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

    /// <summary>An OCI image layout: <c>oci-layout</c> in the folder, or in its Kubernetes <c>..data</c>.</summary>
    private static bool IsOciLayout(IFileSystem fileSystem, string path)
    {
        try
        {
            return fileSystem.Directory.Exists(path)
                && (fileSystem.File.Exists(fileSystem.Path.Combine(path, "oci-layout")) || fileSystem.File.Exists(fileSystem.Path.Combine(path, "..data", "oci-layout")));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            return false;
        }
    }

    private static bool TryLoadBundle(CliConsole console, IFileSystem fileSystem, BundleValues bundle, string path, KarsEgressOptions options, out Loaded loaded)
    {
        loaded = null!;
        if (!VerifyCommands.TryBuild(console, fileSystem, bundle.Signer, requireRoot: false, out var verifier, out var signer))
        {
            return false;
        }

        if (bundle.Digest is not null && !SigstoreArtifact.TryFromDigest(bundle.Digest, out _))
        {
            Usage(console, $"{BundleFailureReason.InvalidReference}: --digest \"{bundle.Digest}\" is not sha256:<64 lower-case hex digits>");
            return false;
        }

        if (bundle.ExpectedName is not null && string.IsNullOrWhiteSpace(bundle.ExpectedName))
        {
            Usage(console, "--expected-name must not be empty");
            return false;
        }

        using var source = new OciBundleEgressPolicySource(path, verifier, signer, bundle.Digest, options, fileSystem, expectedName: bundle.ExpectedName);
        EgressPolicySnapshot snapshot;
        try
        {
            snapshot = source.Load();
        }
        catch (EgressPolicyLoadException ex)
        {
            var reason = ex.Problems.Select(p => p.BundleFailure).FirstOrDefault(r => r is not null);
            console.Error.WriteLine(reason is { } r
                ? $"kars-policy: the bundle was refused: {r}; no target was evaluated"
                : "kars-policy: the bundle was refused; no target was evaluated");
            Problems.Write(console.Error, ex.Problems, prefix: "  ");
            return false;
        }

        loaded = new Loaded(path, snapshot.Digest, snapshot.Generation, snapshot.Mode, snapshot.Warnings, snapshot);
        return true;
    }

    private static int Usage(CliConsole console, string message)
    {
        console.Error.WriteLine($"kars-policy: {message}");
        return ExitCodes.UsageError;
    }

    /// <summary>The policy being evaluated: a file or folder policy, or a verified bundle's snapshot.</summary>
    private sealed record Loaded(string Path, string? Digest, long Generation, EgressMode Mode, IReadOnlyList<EgressPolicyProblem> Warnings, IEgressPolicy Policy);

    private sealed record BundleValues(VerifyCommands.SignerValues Signer, string? Digest, string? ExpectedName)
    {
        public bool Any => Signer.Any || Digest is not null || ExpectedName is not null;
    }

    /// <summary>For an OCI layout policy: <c>verify</c>'s signer options (<see cref="VerifyCommands.SignerOptions"/>), the
    /// manifest pin and the expected policy name (<see cref="OciBundleEgressPolicySource"/>'s <c>expectedName</c>).</summary>
    private sealed class BundleOptions
    {
        private readonly VerifyCommands.SignerOptions _signer = new("OCI layout");
        private readonly Option<string?> _digest = new("--digest") { Description = "OCI layout: the policy manifest to evaluate, sha256:<hex> (default: the one policy manifest)." };
        private readonly Option<string?> _expectedName = new("--expected-name") { Description = "OCI layout: the policy this sandbox runs: the signed kars metadata.name must equal it (another name, no name or a native JSON policy is IdentityMismatch)." };

        public void AddTo(Command command)
        {
            _signer.AddTo(command);
            command.Options.Add(_digest);
            command.Options.Add(_expectedName);
        }

        public BundleValues Read(ParseResult parse) => new(_signer.Read(parse), parse.GetValue(_digest), parse.GetValue(_expectedName));
    }

    /// <summary>A clock stopped at one instant (for <c>--at</c>).</summary>
    private sealed class FixedTimeProvider(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }
}
