using System.Globalization;
using System.Text;
using Kars.Policy.Egress;

namespace Kars.Policy.Bundles;

/// <summary>Why a kars canonical document was refused (kars's <c>AllowlistVerified</c> reason for a parse failure).</summary>
internal enum KarsAllowlistFailure
{
    /// <summary>The document is canonical.</summary>
    None = 0,

    /// <summary>The document breaks one or more canonical-form rules; see <see cref="KarsAllowlistParseResult.Violations"/>.</summary>
    CanonicalFormViolation,
}

/// <summary>One broken canonical-form rule: the 1-based line (0 for the document as a whole) and what is wrong.</summary>
internal sealed record CanonicalFormViolation(int Line, string Message)
{
    public override string ToString() =>
        Line > 0 ? $"line {Line.ToString(CultureInfo.InvariantCulture)}: {Message}" : Message;
}

/// <summary>One endpoint of an <c>EgressAllowlist</c>: a host (which covers its subdomains, as in kars) and a port.</summary>
internal readonly record struct KarsEndpoint(string Host, int Port, int Line);

/// <summary>The outcome of <see cref="KarsAllowlistYaml.Parse"/>: the document, or every violation found.</summary>
internal sealed class KarsAllowlistParseResult
{
    internal KarsAllowlistParseResult(long generation, string? name, IReadOnlyList<KarsEndpoint> endpoints, IReadOnlyList<CanonicalFormViolation> violations)
    {
        Generation = generation;
        Name = name;
        Endpoints = endpoints;
        Violations = violations;
    }

    /// <summary>Gets whether the document is canonical and valid.</summary>
    public bool IsValid => Violations.Count == 0;

    /// <summary>Gets <see cref="KarsAllowlistFailure.CanonicalFormViolation"/> when any rule is broken.</summary>
    public KarsAllowlistFailure Failure => IsValid ? KarsAllowlistFailure.None : KarsAllowlistFailure.CanonicalFormViolation;

    /// <summary>Gets <c>metadata.generation</c> (&gt; 0), or 0 when it is missing or invalid.</summary>
    public long Generation { get; }

    /// <summary>Gets <c>metadata.name</c>, or <see langword="null"/>.</summary>
    public string? Name { get; }

    /// <summary>Gets the endpoints, strictly ascending by (host, port).</summary>
    public IReadOnlyList<KarsEndpoint> Endpoints { get; }

    /// <summary>Gets every violation found, in line order; empty when the document is valid.</summary>
    public IReadOnlyList<CanonicalFormViolation> Violations { get; }
}

/// <summary>
/// The strict, hand-written parser of the kars canonical <c>EgressAllowlist</c> YAML v1
/// (<c>application/vnd.kars.egress-allowlist.v1+yaml</c>): the tiny fixed subset kars writes, parsed with every rule
/// of kars's own parser (UTF-8, LF only, one trailing newline, no comments, fixed key order, exactly <c>host</c> then
/// <c>port</c> per entry, entries strictly ascending by (host, port), <c>generation</c> &gt; 0, no wildcards, hosts of
/// <c>[a-z0-9.-]</c> without a trailing dot) plus the rules kars documents but does not check (no leading dot, no empty
/// label) and the canonical form's own (no tabs, two-space indent, no blank lines, plain integers). Every violation is
/// reported, not just the first. No YAML library is used: anything outside the subset is a violation.
/// </summary>
/// <remarks>
/// Accepted shape (an optional <c>---</c> first line is tolerated, as kars does; an empty list is
/// <c>  endpoints: []</c>; <c>metadata.name</c> is optional and comes first):
/// <code>
/// apiVersion: kars.dev/v1alpha1
/// kind: EgressAllowlist
/// metadata:
///   name: my-sandbox
///   generation: 1
/// spec:
///   endpoints:
///     - host: api.github.com
///       port: 443
/// </code>
/// </remarks>
internal static class KarsAllowlistYaml
{
    /// <summary>The media type (OCI <c>artifactType</c>) of this document.</summary>
    public const string MediaType = "application/vnd.kars.egress-allowlist.v1+yaml";

    /// <summary>The pinned <c>apiVersion</c>.</summary>
    public const string ApiVersion = "kars.dev/v1alpha1";

    /// <summary>The pinned <c>kind</c>.</summary>
    public const string Kind = "EgressAllowlist";

    private static readonly string[] TopLevelKeys = ["apiVersion", "kind", "metadata", "spec"];

    /// <summary>Parses a document; never throws for any input.</summary>
    public static KarsAllowlistParseResult Parse(ReadOnlySpan<byte> bytes)
    {
        var violations = new List<CanonicalFormViolation>();
        string text;
        try
        {
            text = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            violations.Add(new(0, "the document is not valid UTF-8"));
            return new KarsAllowlistParseResult(0, null, [], violations);
        }

        if (text.Length > 0 && text[0] == '\uFEFF')
        {
            violations.Add(new(1, "a byte order mark is not canonical"));
            text = text[1..];
        }

        if (text.Contains('\r', StringComparison.Ordinal))
        {
            violations.Add(new(0, "CRLF line endings forbidden (LF only)"));
            text = text.Replace("\r", string.Empty, StringComparison.Ordinal);
        }

        if (!text.EndsWith('\n'))
        {
            violations.Add(new(0, "missing trailing newline"));
        }
        else if (text.EndsWith("\n\n", StringComparison.Ordinal))
        {
            violations.Add(new(0, "more than one trailing newline"));
        }

        string[] lines = text.TrimEnd('\n').Split('\n');
        var parser = new Parser(lines, violations);
        parser.Run();
        violations.Sort((a, b) => a.Line.CompareTo(b.Line));
        return new KarsAllowlistParseResult(parser.Generation, parser.Name, parser.Endpoints, violations);
    }

    /// <summary>Compiles a valid document into the rule model the kars <c>allowlist.json</c> reader produces: each host
    /// covers itself and its subdomains on its ports; the mode is Strict. Entries that cover a public suffix are
    /// reported in the model's warnings.</summary>
    /// <param name="result">A valid parse result.</param>
    /// <param name="digest">The digest to report for the snapshot (for a bundle, the verified artifact digest).</param>
    /// <param name="source">The name problems are reported under.</param>
    public static PolicyModel ToPolicyModel(KarsAllowlistParseResult result, string digest, string source)
    {
        ArgumentNullException.ThrowIfNull(result);
        if (!result.IsValid)
        {
            throw new ArgumentException("the document has canonical-form violations", nameof(result));
        }

        var model = new PolicyModel { Digest = digest, Generation = result.Generation, Mode = EgressMode.Strict };
        var byName = new Dictionary<string, int>(StringComparer.Ordinal);
        var overbroad = new List<EgressPolicyProblem>();
        foreach (var endpoint in result.Endpoints)
        {
            if (byName.TryGetValue(endpoint.Host, out int at))
            {
                var existing = model.NameRules[at];
                model.NameRules[at] = existing with { Ports = existing.Ports.Union(PortSet.Of([endpoint.Port])) };
                continue;
            }

            byName[endpoint.Host] = model.NameRules.Count;
            model.NameRules.Add(new NameRule(endpoint.Host, NameScope.Subtree, PortSet.Of([endpoint.Port]), endpoint.Host));
            OverbroadRules.ReportName(overbroad, source, $"line {endpoint.Line.ToString(CultureInfo.InvariantCulture)}", endpoint.Host, NameScope.Subtree);
        }

        model.Warnings.AddRange(overbroad);
        return model;
    }

    private sealed class Parser(string[] lines, List<CanonicalFormViolation> violations)
    {
        private int _index;

        public long Generation { get; private set; }

        public string? Name { get; private set; }

        public List<KarsEndpoint> Endpoints { get; } = [];

        private int LineNumber => _index + 1;

        public void Run()
        {
            CheckLines();
            if (lines.Length > 0 && lines[0] == "---")
            {
                _index = 1; // a document-start marker is tolerated, as kars tolerates it
            }

            var seen = new List<string>();
            while (_index < lines.Length)
            {
                string line = lines[_index];
                if (line.Length == 0 || line[0] == '#')
                {
                    _index++; // reported by CheckLines
                    continue;
                }

                if (line[0] is ' ' or '-')
                {
                    Add("unexpected indented or sequence line outside metadata and spec");
                    _index++;
                    continue;
                }

                if (!TrySplitKey(line, out string key, out string value))
                {
                    Add("expected a top-level \"key: value\" line");
                    _index++;
                    continue;
                }

                int expected = seen.Count;
                if (Array.IndexOf(TopLevelKeys, key) < 0)
                {
                    Add($"unknown top-level key \"{key}\"");
                }
                else if (seen.Contains(key))
                {
                    Add($"top-level key \"{key}\" appears more than once");
                }
                else if (expected >= TopLevelKeys.Length || TopLevelKeys[expected] != key)
                {
                    Add($"top-level key \"{key}\" out of order (expected \"{(expected < TopLevelKeys.Length ? TopLevelKeys[expected] : "end of document")}\"; the order is apiVersion, kind, metadata, spec)");
                }

                seen.Add(key);
                int keyLine = LineNumber;
                _index++;
                switch (key)
                {
                    case "apiVersion":
                        if (value != ApiVersion)
                        {
                            Add(keyLine, $"apiVersion must be \"{ApiVersion}\", not \"{value}\"");
                        }

                        break;
                    case "kind":
                        if (value != Kind)
                        {
                            Add(keyLine, $"kind must be \"{Kind}\", not \"{value}\"");
                        }

                        break;
                    case "metadata":
                        ExpectEmptyValue(keyLine, key, value);
                        ReadMetadata(keyLine);
                        break;
                    case "spec":
                        ExpectEmptyValue(keyLine, key, value);
                        ReadSpec(keyLine);
                        break;
                    default:
                        SkipIndented();
                        break;
                }
            }

            foreach (string key in TopLevelKeys)
            {
                if (!seen.Contains(key))
                {
                    Add(0, $"top-level keys missing or out of order: \"{key}\" is missing");
                }
            }
        }

        /// <summary>Rules about single lines that hold wherever the line is.</summary>
        private void CheckLines()
        {
            for (int i = 0; i < lines.Length; i++)
            {
                string line = lines[i];
                if (line.TrimStart(' ', '\t').StartsWith('#'))
                {
                    Add(i + 1, "comments forbidden");
                }
                else if (line.Contains('\t', StringComparison.Ordinal))
                {
                    Add(i + 1, "tabs are not canonical (indent with two spaces)");
                }
                else if (line.Length == 0)
                {
                    Add(i + 1, "empty lines are not canonical");
                }
                else if (line.EndsWith(' '))
                {
                    Add(i + 1, "trailing spaces are not canonical");
                }
            }
        }

        private void ReadMetadata(int keyLine)
        {
            bool haveGeneration = false;
            bool first = true;
            while (_index < lines.Length && lines[_index].StartsWith(' '))
            {
                string line = lines[_index];
                if (!line.StartsWith("  ", StringComparison.Ordinal) || line.Length == 2 || line[2] == ' ' || !TrySplitKey(line[2..], out string key, out string value))
                {
                    Add("expected \"  generation: N\" (two-space indent) under metadata");
                }
                else if (key == "name" && first && !haveGeneration)
                {
                    Name = value;
                    if (value.Length == 0 || value.Any(c => !(c is >= 'a' and <= 'z' or >= '0' and <= '9' or '-' or '.')))
                    {
                        Add($"metadata.name must be a lower-case slug, not \"{value}\"");
                    }
                }
                else if (key == "generation" && !haveGeneration)
                {
                    haveGeneration = true;
                    if (!TryParsePlainInteger(value, out ulong generation))
                    {
                        Add($"generation must be a plain unsigned integer > 0, not \"{value}\"");
                    }
                    else if (generation == 0)
                    {
                        Add("generation must be > 0");
                    }
                    else if (generation > long.MaxValue)
                    {
                        Add($"generation {value} is larger than this implementation supports ({long.MaxValue.ToString(CultureInfo.InvariantCulture)})");
                    }
                    else
                    {
                        Generation = (long)generation;
                    }
                }
                else
                {
                    Add($"unexpected key \"{key}\" under metadata (allowed: name, then generation)");
                }

                first = false;
                _index++;
            }

            if (!haveGeneration)
            {
                Add(keyLine, "metadata.generation is missing (it must be > 0)");
            }
        }

        private void ReadSpec(int keyLine)
        {
            bool haveEndpoints = false;
            while (_index < lines.Length && lines[_index].StartsWith(' '))
            {
                string line = lines[_index];
                if (!line.StartsWith("  ", StringComparison.Ordinal) || line.Length == 2 || line[2] == ' ' || !TrySplitKey(line[2..], out string key, out string value))
                {
                    Add("expected \"  endpoints:\" (two-space indent) under spec");
                    _index++;
                    continue;
                }

                if (key != "endpoints" || haveEndpoints)
                {
                    Add(haveEndpoints && key == "endpoints" ? "spec.endpoints appears more than once" : $"unexpected key \"{key}\" under spec (allowed: endpoints)");
                    _index++;
                    SkipDeeper(4);
                    continue;
                }

                haveEndpoints = true;
                int endpointsLine = LineNumber;
                _index++;
                if (value == "[]")
                {
                    continue;
                }

                if (value.Length != 0)
                {
                    Add(endpointsLine, "spec.endpoints must be a block sequence of {host, port} entries (or [] when empty)");
                    SkipDeeper(4);
                    continue;
                }

                ReadEndpoints();
            }

            if (!haveEndpoints)
            {
                Add(keyLine, "spec.endpoints is missing (it must be a sequence)");
            }
        }

        private void ReadEndpoints()
        {
            KarsEndpoint? previous = null;
            while (_index < lines.Length && lines[_index].StartsWith("    ", StringComparison.Ordinal))
            {
                string line = lines[_index];
                int entryLine = LineNumber;
                if (!line.StartsWith("    - ", StringComparison.Ordinal))
                {
                    Add("expected an entry \"    - host: NAME\"");
                    _index++;
                    continue;
                }

                // The entry's keys: the first on the "- " line, the rest on lines indented six spaces.
                var keys = new List<(string Key, string Value, int Line)>();
                if (TrySplitKey(line[6..], out string firstKey, out string firstValue))
                {
                    keys.Add((firstKey, firstValue, entryLine));
                }
                else
                {
                    Add("an entry must be a map of host and port");
                }

                _index++;
                while (_index < lines.Length && lines[_index].StartsWith("      ", StringComparison.Ordinal))
                {
                    if (lines[_index].Length > 6 && lines[_index][6] != ' ' && TrySplitKey(lines[_index][6..], out string key, out string value))
                    {
                        keys.Add((key, value, LineNumber));
                    }
                    else
                    {
                        Add("expected \"      port: N\" (six-space indent) in the entry");
                    }

                    _index++;
                }

                var endpoint = ReadEntry(keys, entryLine);
                if (endpoint is { } current)
                {
                    if (previous is { } last)
                    {
                        int order = string.CompareOrdinal(last.Host, current.Host);
                        if (order == 0 && last.Port == current.Port)
                        {
                            Add(entryLine, $"duplicate entry {current.Host}:{current.Port.ToString(CultureInfo.InvariantCulture)}");
                        }
                        else if (order > 0 || (order == 0 && last.Port > current.Port))
                        {
                            Add(entryLine, $"entries not sorted by (host, port): {current.Host}:{current.Port.ToString(CultureInfo.InvariantCulture)} comes after {last.Host}:{last.Port.ToString(CultureInfo.InvariantCulture)}");
                        }
                    }

                    previous = current;
                    Endpoints.Add(current);
                }
            }
        }

        private KarsEndpoint? ReadEntry(List<(string Key, string Value, int Line)> keys, int entryLine)
        {
            if (keys.Count != 2 || keys[0].Key != "host" || keys[1].Key != "port")
            {
                string found = string.Join(", ", keys.Select(k => k.Key));
                Add(entryLine, keys.Count == 2 && keys[0].Key == "port" && keys[1].Key == "host"
                    ? "wrong key order: an entry is host, then port"
                    : $"an entry has exactly the keys host then port (key order), found: {(found.Length == 0 ? "nothing" : found)}");
            }

            string? host = null;
            int port = 0;
            foreach (var (key, value, line) in keys)
            {
                if (key == "host" && host is null)
                {
                    host = CheckHost(value, line) ? value : string.Empty;
                }
                else if (key == "port" && port == 0)
                {
                    if (!TryParsePlainInteger(value, out ulong number) || number is 0 or > 65535)
                    {
                        Add(line, $"port must be an integer in 1..65535, not \"{value}\"");
                        port = -1;
                    }
                    else
                    {
                        port = (int)number;
                    }
                }
            }

            return host is { Length: > 0 } && port > 0 && keys.Count == 2 && keys[0].Key == "host" ? new KarsEndpoint(host, port, entryLine) : null;
        }

        private bool CheckHost(string host, int line)
        {
            int before = violations.Count;
            if (host.Length == 0)
            {
                Add(line, "host must not be empty");
                return false;
            }

            if (host.Contains('*', StringComparison.Ordinal))
            {
                Add(line, $"wildcards are not allowed (\"{host}\"); an entry already covers its subdomains");
                return false;
            }

            foreach (char c in host)
            {
                if (!(c is >= 'a' and <= 'z' or >= '0' and <= '9' or '.' or '-'))
                {
                    Add(line, $"invalid byte '{(char.IsControl(c) ? '?' : c)}' (U+{((int)c).ToString("X4", CultureInfo.InvariantCulture)}) in host \"{host}\" (allowed: a-z 0-9 . -)");
                    return false;
                }
            }

            if (host.EndsWith('.'))
            {
                Add(line, $"host \"{host}\" has a trailing dot");
            }

            if (host.StartsWith('.'))
            {
                Add(line, $"host \"{host}\" has a leading dot");
            }

            if (host.Contains("..", StringComparison.Ordinal))
            {
                Add(line, $"host \"{host}\" has an empty label (\"..\")");
            }

            // Then the rules every kars host entry meets in this library (the allowlist.json reader's): a multi-label
            // DNS name with labels of 1-63 characters, never an IP address.
            if (violations.Count == before && !HostPatterns.TryParseExactHost(host, allowSingleLabel: false, out _, out string? error, out _))
            {
                Add(line, $"host \"{host}\": {error}");
            }

            return violations.Count == before;
        }

        private void ExpectEmptyValue(int line, string key, string value)
        {
            if (value.Length != 0)
            {
                Add(line, $"{key} must be a block map (nothing after \"{key}:\")");
            }
        }

        private void SkipIndented()
        {
            while (_index < lines.Length && lines[_index].StartsWith(' '))
            {
                _index++;
            }
        }

        private void SkipDeeper(int indent)
        {
            string prefix = new(' ', indent);
            while (_index < lines.Length && lines[_index].StartsWith(prefix, StringComparison.Ordinal))
            {
                _index++;
            }
        }

        /// <summary>Splits <c>key: value</c> or <c>key:</c>; the key is <c>[A-Za-z]+</c>, exactly one space after the colon.</summary>
        private static bool TrySplitKey(string line, out string key, out string value)
        {
            key = string.Empty;
            value = string.Empty;
            int colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0 || !line.AsSpan(0, colon).ContainsOnlyAsciiLetters())
            {
                return false;
            }

            key = line[..colon];
            if (colon == line.Length - 1)
            {
                return true;
            }

            if (line[colon + 1] != ' ' || colon + 2 >= line.Length || line[colon + 2] == ' ')
            {
                return false;
            }

            value = line[(colon + 2)..];
            return true;
        }

        /// <summary>Plain decimal digits without sign or leading zeros (the canonical integer form).</summary>
        private static bool TryParsePlainInteger(string text, out ulong value)
        {
            value = 0;
            if (text.Length == 0 || (text.Length > 1 && text[0] == '0'))
            {
                return false;
            }

            return text.All(char.IsAsciiDigit) && ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out value);
        }

        private void Add(string message) => violations.Add(new(LineNumber, message));

        private void Add(int line, string message) => violations.Add(new(line, message));
    }
}

file static class SpanExtensions
{
    public static bool ContainsOnlyAsciiLetters(this ReadOnlySpan<char> span)
    {
        foreach (char c in span)
        {
            if (!char.IsAsciiLetter(c))
            {
                return false;
            }
        }

        return true;
    }
}
