using System.Globalization;
using System.Text.Json;

namespace Kars.Policy.Egress;

/// <summary>Reads the files kars writes: the compiled <c>allowlist.json</c> and <c>approval-*.json</c> (reference §1.1).
/// Entries cover the host and its subdomains, as in kars; unlike kars, invalid entries are reported instead of
/// silently dropped or rewritten.</summary>
internal static class KarsPolicyReader
{
    /// <summary>The file name kars uses for the baseline allowlist, and the name in its digest.</summary>
    public const string AllowlistFileName = "allowlist.json";

    private static readonly string[] AllowlistFields = ["schemaVersion", "endpoints"];
    private static readonly string[] EndpointFields = ["host", "port"];
    private static readonly string[] ApprovalFields = ["schemaVersion", "approvalName", "sandbox", "hosts", "reason", "ticket", "effectiveAt", "expiresAt"];

    /// <summary>Returns whether the document looks like a kars allowlist (an object with <c>endpoints</c>, or only <c>schemaVersion</c>).</summary>
    public static bool LooksLikeKarsAllowlist(byte[] bytes)
    {
        try
        {
            using var document = JsonDocument.Parse(bytes);
            var root = document.RootElement;
            return root.ValueKind == JsonValueKind.Object
                && (root.TryGetProperty("endpoints", out _)
                    || (root.EnumerateObject().Count() == 1 && root.TryGetProperty("schemaVersion", out _)));
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException)
        {
            // Not readable as JSON (or holds text that does not decode): the native reader reports why, with paths.
            return false;
        }
    }

    /// <summary>Reads a kars <c>allowlist.json</c>; overbroad entries go to <paramref name="overbroad"/> when given, else to the model's warnings.</summary>
    public static PolicyModel? ReadAllowlist(byte[] bytes, string source, List<EgressPolicyProblem> problems, List<EgressPolicyProblem>? overbroad = null)
    {
        var json = new JsonReading(source);
        using var document = json.Parse(bytes);
        var model = new PolicyModel { Digest = PolicyDigest.OfKarsFile(AllowlistFileName, bytes), Generation = 0, Mode = EgressMode.Strict };
        if (document is not null && json.CheckObject(document.RootElement, "$", AllowlistFields))
        {
            var root = document.RootElement;
            CheckSchemaVersion(root, json);
            if (root.TryGetProperty("endpoints", out var endpoints))
            {
                var byName = new Dictionary<string, int>(StringComparer.Ordinal);
                foreach (var (name, port, _) in ReadHosts(endpoints, "$.endpoints", json))
                {
                    if (byName.TryGetValue(name, out int at))
                    {
                        var existing = model.NameRules[at];
                        model.NameRules[at] = existing with { Ports = existing.Ports.Union(PortSet.Of([port])) };
                    }
                    else
                    {
                        byName[name] = model.NameRules.Count;
                        model.NameRules.Add(new NameRule(name, NameScope.Subtree, PortSet.Of([port]), name));
                    }
                }
            }
        }

        problems.AddRange(json.Problems);
        PolicyModel? result = json.Problems.Count == 0 ? model : null;
        json.FlushOverbroad(overbroad, result);
        return result;
    }

    /// <summary>Reads a kars <c>approval-*.json</c>; overbroad hosts go to <paramref name="overbroad"/> when given.</summary>
    public static Approval? ReadApproval(byte[] bytes, string source, List<EgressPolicyProblem> problems, List<EgressPolicyProblem>? overbroad = null)
    {
        var json = new JsonReading(source);
        using var document = json.Parse(bytes);
        Approval? approval = null;
        if (document is not null && json.CheckObject(document.RootElement, "$", ApprovalFields))
        {
            var root = document.RootElement;
            CheckSchemaVersion(root, json);
            json.TryGetString(root, "approvalName", "$", required: true, out string? name);
            json.TryGetString(root, "sandbox", "$", required: false, out _);
            json.TryGetString(root, "reason", "$", required: false, out string? reason);
            json.TryGetString(root, "ticket", "$", required: false, out string? ticket);
            bool times = json.TryGetInstant(root, "effectiveAt", "$", out var effectiveAt)
                & json.TryGetInstant(root, "expiresAt", "$", out var expiresAt);
            if (times && expiresAt <= effectiveAt)
            {
                json.Add("$.expiresAt", "expiresAt must be after effectiveAt");
            }

            var hosts = new List<ApprovalHost>();
            if (!root.TryGetProperty("hosts", out var hostsElement))
            {
                json.Add("$.hosts", "required field is missing");
            }
            else
            {
                foreach (var (host, port, _) in ReadHosts(hostsElement, "$.hosts", json))
                {
                    hosts.Add(new ApprovalHost(host, NameScope.Subtree, port));
                }
            }

            if (json.Problems.Count == 0)
            {
                approval = new Approval(name!, hosts, reason, ticket, effectiveAt, expiresAt, source);
            }
        }

        problems.AddRange(json.Problems);
        if (approval is not null)
        {
            json.FlushOverbroad(overbroad, null);
        }

        return approval;
    }

    private static void CheckSchemaVersion(JsonElement root, JsonReading json)
    {
        if (!root.TryGetProperty("schemaVersion", out var version))
        {
            json.Add("$.schemaVersion", "required field is missing");
        }
        else if (json.TryGetInt64(version, "$.schemaVersion", 1, long.MaxValue, out long v) && v != 1)
        {
            json.Add("$.schemaVersion", $"schema version {v} is not supported");
        }
    }

    private static List<(string Name, int Port, string Path)> ReadHosts(JsonElement array, string path, JsonReading json)
    {
        var result = new List<(string, int, string)>();
        if (array.ValueKind != JsonValueKind.Array)
        {
            json.Add(path, $"expected an array, found {JsonReading.Describe(array)}");
            return result;
        }

        int i = 0;
        foreach (var entry in array.EnumerateArray())
        {
            string entryPath = $"{path}[{i.ToString(CultureInfo.InvariantCulture)}]";
            i++;
            if (!json.CheckObject(entry, entryPath, EndpointFields)
                || !json.TryGetString(entry, "host", entryPath, required: true, out string? host) || host is null)
            {
                continue;
            }

            long port = 443;
            if (entry.TryGetProperty("port", out var portElement) && !json.TryGetInt64(portElement, $"{entryPath}.port", 1, 65535, out port))
            {
                continue;
            }

            // kars trims and lower-cases (compile_to_doc); everything else must already be a valid name.
            string normalized = host.Trim().ToLowerInvariant();
            if (!HostPatterns.TryParseExactHost(normalized, allowSingleLabel: false, out string name, out string? error, out string? suggestion))
            {
                json.Add($"{entryPath}.host", error!, suggestion);
                continue;
            }

            json.CheckOverbroad($"{entryPath}.host", name, NameScope.Subtree);
            result.Add((name, (int)port, entryPath));
        }

        return result;
    }
}
