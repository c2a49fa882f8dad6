using System.Globalization;
using System.Text.Json;
using Kars.Policy.Internal;

namespace Kars.Policy.Egress;

/// <summary>Reads the native JSON policy document (DESIGN §5) strictly, collecting every problem with its JSON path.</summary>
internal static class NativePolicyReader
{
    private static readonly string[] RootFields = ["schemaVersion", "generation", "mode", "allow", "blocklist", "blocklistExceptions", "approvals"];
    private static readonly string[] RuleFields = ["host", "cidr", "ports"];
    private static readonly string[] BlocklistFields = ["domains", "files"];
    private static readonly string[] ApprovalFields = ["name", "hosts", "reason", "ticket", "effectiveAt", "expiresAt"];
    private static readonly string[] ApprovalHostFields = ["host", "port"];

    /// <summary>Reads a native policy document. <paramref name="resolveFeed"/> turns a feed path into a full path, or says why it may not be read.</summary>
    /// <remarks>Overbroad rules (see <see cref="OverbroadRules"/>) go to <paramref name="overbroad"/> when given, else to the model's warnings.</remarks>
    public static PolicyModel? Read(byte[] bytes, string source, Func<string, FeedPath> resolveFeed, List<EgressPolicyProblem> problems, List<EgressPolicyProblem>? overbroad = null)
    {
        var json = new JsonReading(source);
        using var document = json.Parse(bytes);
        PolicyModel? model = null;
        if (document is not null)
        {
            model = ReadRoot(document.RootElement, json, bytes, resolveFeed);
        }

        problems.AddRange(json.Problems);
        model = json.Problems.Count == 0 ? model : null;
        json.FlushOverbroad(overbroad, model);
        return model;
    }

    private static PolicyModel ReadRoot(JsonElement root, JsonReading json, byte[] bytes, Func<string, FeedPath> resolveFeed)
    {
        long generation = 0;
        var mode = EgressMode.Strict;
        if (json.CheckObject(root, "$", RootFields))
        {
            if (!root.TryGetProperty("schemaVersion", out var version))
            {
                json.Add("$.schemaVersion", "required field is missing", "use \"schemaVersion\": 1");
            }
            else if (json.TryGetInt64(version, "$.schemaVersion", 1, long.MaxValue, out long v) && v != 1)
            {
                json.Add("$.schemaVersion", $"schema version {v} is not supported", "use 1");
            }

            if (root.TryGetProperty("generation", out var gen))
            {
                json.TryGetInt64(gen, "$.generation", 1, long.MaxValue, out generation);
            }

            if (json.TryGetString(root, "mode", "$", required: false, out string? modeText) && modeText is not null)
            {
                // Exactly one declared name, any case: never a number, a comma list or padded text (Enum.TryParse would
                // read "Strict,Learn" as Learn).
                if (StrictEnum.TryParse(modeText, out EgressMode parsed))
                {
                    mode = parsed;
                }
                else
                {
                    json.Add("$.mode", $"unknown mode \"{modeText}\"", "use \"Strict\" or \"Learn\"");
                }
            }
        }

        var model = new PolicyModel { Digest = PolicyDigest.OfDocument(bytes), Generation = generation, Mode = mode };
        if (root.ValueKind != JsonValueKind.Object)
        {
            return model;
        }

        if (root.TryGetProperty("allow", out var allow))
        {
            ReadAllow(allow, json, model);
        }

        if (root.TryGetProperty("blocklist", out var blocklist) && json.CheckObject(blocklist, "$.blocklist", BlocklistFields))
        {
            if (blocklist.TryGetProperty("domains", out var domains))
            {
                ReadStrings(domains, "$.blocklist.domains", json, (text, path) =>
                {
                    string candidate = text;
                    if (HostPatterns.TryParseExactHost(candidate, allowSingleLabel: true, out string name, out string? error, out string? suggestion))
                    {
                        if (model.BlockDomains.Contains(name))
                        {
                            json.Add(path, $"duplicate blocklist domain \"{name}\"");
                        }
                        else
                        {
                            model.BlockDomains.Add(name);
                        }
                    }
                    else
                    {
                        json.Add(path, error!, suggestion);
                    }
                });
            }

            if (blocklist.TryGetProperty("files", out var files))
            {
                ReadStrings(files, "$.blocklist.files", json, (text, path) =>
                {
                    var feedPath = text.Length == 0 ? new FeedPath(null, "the path is empty") : resolveFeed(text);
                    string? resolved = feedPath.FullPath;
                    if (resolved is null)
                    {
                        json.Add(path, $"not a usable feed path: \"{text}\": {feedPath.Error}", "put the feed in the policy's folder (or below it) and name it relative to the folder");
                    }
                    else if (model.FeedFiles.Exists(f => string.Equals(f.ResolvedPath, resolved, StringComparison.Ordinal)))
                    {
                        json.Add(path, $"duplicate feed file \"{text}\"");
                    }
                    else
                    {
                        model.FeedFiles.Add((resolved, text));
                    }
                });
            }
        }

        if (root.TryGetProperty("blocklistExceptions", out var exceptions))
        {
            ReadStrings(exceptions, "$.blocklistExceptions", json, (text, path) =>
            {
                if (!HostPatterns.TryParseExactHost(text, allowSingleLabel: false, out string name, out string? error, out string? suggestion))
                {
                    json.Add(path, error!, suggestion);
                }
                else if (model.BlocklistExceptions.Contains(name))
                {
                    json.Add(path, $"duplicate blocklist exception \"{name}\"");
                }
                else
                {
                    model.BlocklistExceptions.Add(name);
                }
            });
        }

        if (root.TryGetProperty("approvals", out var approvals))
        {
            ReadApprovals(approvals, json, model);
        }

        return model;
    }

    private static void ReadAllow(JsonElement allow, JsonReading json, PolicyModel model)
    {
        if (allow.ValueKind != JsonValueKind.Array)
        {
            json.Add("$.allow", $"expected an array, found {JsonReading.Describe(allow)}");
            return;
        }

        var firstSeen = new Dictionary<string, string>(StringComparer.Ordinal);
        int index = 0;
        foreach (var rule in allow.EnumerateArray())
        {
            string path = $"$.allow[{index.ToString(CultureInfo.InvariantCulture)}]";
            index++;
            if (!json.CheckObject(rule, path, RuleFields))
            {
                continue;
            }

            bool hasHost = rule.TryGetProperty("host", out _);
            bool hasCidr = rule.TryGetProperty("cidr", out _);
            if (hasHost && hasCidr)
            {
                json.Add(path, "a rule has either \"host\" or \"cidr\", not both", "split it into two rules");
                continue;
            }

            if (!hasHost && !hasCidr)
            {
                json.Add(path, "a rule needs \"host\" or \"cidr\"");
                continue;
            }

            bool portsOk = TryReadPorts(rule, path, json, out var ports);
            if (hasHost)
            {
                if (!json.TryGetString(rule, "host", path, required: true, out string? text) || text is null)
                {
                    continue;
                }

                if (!HostPatterns.TryParseRuleHost(text, out string name, out var scope, out string? error, out string? suggestion))
                {
                    json.Add($"{path}.host", error!, suggestion);
                    continue;
                }

                string key = scope == NameScope.Wildcard ? "*." + name : name;
                if (firstSeen.TryGetValue(key, out string? firstPath))
                {
                    json.Add($"{path}.host", $"duplicate rule for \"{key}\" (first at {firstPath})", "merge the ports into one rule");
                    continue;
                }

                firstSeen[key] = $"{path}.host";
                json.CheckOverbroad($"{path}.host", name, scope);
                if (portsOk)
                {
                    model.NameRules.Add(new NameRule(name, scope, ports, key));
                }
            }
            else
            {
                if (!json.TryGetString(rule, "cidr", path, required: true, out string? text) || text is null)
                {
                    continue;
                }

                if (!HostPatterns.TryParseCidr(text, out var network, out string? error, out string? suggestion))
                {
                    json.Add($"{path}.cidr", error!, suggestion);
                    continue;
                }

                string key = network.ToString();
                if (firstSeen.TryGetValue(key, out string? firstPath))
                {
                    json.Add($"{path}.cidr", $"duplicate rule for \"{key}\" (first at {firstPath})", "merge the ports into one rule");
                    continue;
                }

                firstSeen[key] = $"{path}.cidr";
                json.CheckOverbroad($"{path}.cidr", network);
                if (portsOk)
                {
                    model.CidrRules.Add(new CidrRule(network, ports, key));
                }
            }
        }
    }

    private static bool TryReadPorts(JsonElement rule, string path, JsonReading json, out PortSet ports)
    {
        ports = PortSet.Default;
        if (!rule.TryGetProperty("ports", out var element))
        {
            return true;
        }

        string portsPath = $"{path}.ports";
        if (element.ValueKind == JsonValueKind.String)
        {
            if (element.GetString() == "*")
            {
                ports = PortSet.AnyPort;
                return true;
            }

            json.Add(portsPath, "expected a list of ports or \"*\"", "use [443] or [\"*\"]");
            return false;
        }

        if (element.ValueKind != JsonValueKind.Array)
        {
            json.Add(portsPath, $"expected a list of ports, found {JsonReading.Describe(element)}", "use [443] or [\"*\"]");
            return false;
        }

        if (element.GetArrayLength() == 0)
        {
            json.Add(portsPath, "the port list is empty", "omit \"ports\" for [443], or use [\"*\"] for any port");
            return false;
        }

        bool ok = true;
        bool any = false;
        var list = new List<int>();
        int i = 0;
        foreach (var port in element.EnumerateArray())
        {
            string portPath = $"{portsPath}[{i.ToString(CultureInfo.InvariantCulture)}]";
            i++;
            if (port.ValueKind == JsonValueKind.String && port.GetString() == "*")
            {
                any = true;
                continue;
            }

            if (!json.TryGetInt64(port, portPath, 1, 65535, out long value))
            {
                ok = false;
                continue;
            }

            if (list.Contains((int)value))
            {
                json.Add(portPath, $"duplicate port {value.ToString(CultureInfo.InvariantCulture)}");
                ok = false;
                continue;
            }

            list.Add((int)value);
        }

        if (any && (list.Count > 0 || element.GetArrayLength() > 1))
        {
            json.Add(portsPath, "\"*\" already means every port", "use [\"*\"] alone");
            return false;
        }

        if (ok)
        {
            ports = any ? PortSet.AnyPort : PortSet.Of(list);
        }

        return ok;
    }

    private static void ReadApprovals(JsonElement approvals, JsonReading json, PolicyModel model)
    {
        if (approvals.ValueKind != JsonValueKind.Array)
        {
            json.Add("$.approvals", $"expected an array, found {JsonReading.Describe(approvals)}");
            return;
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        int index = 0;
        foreach (var approval in approvals.EnumerateArray())
        {
            string path = $"$.approvals[{index.ToString(CultureInfo.InvariantCulture)}]";
            index++;
            if (!json.CheckObject(approval, path, ApprovalFields))
            {
                continue;
            }

            int before = json.Problems.Count;
            json.TryGetString(approval, "name", path, required: true, out string? name);
            if (name is { Length: 0 })
            {
                json.Add($"{path}.name", "the name is empty");
            }
            else if (name is not null && !names.Add(name))
            {
                json.Add($"{path}.name", $"duplicate approval name \"{name}\"");
            }

            json.TryGetString(approval, "reason", path, required: true, out string? reason);
            json.TryGetString(approval, "ticket", path, required: false, out string? ticket);
            bool times = json.TryGetInstant(approval, "effectiveAt", path, out var effectiveAt)
                & json.TryGetInstant(approval, "expiresAt", path, out var expiresAt);
            if (times && expiresAt <= effectiveAt)
            {
                json.Add($"{path}.expiresAt", "expiresAt must be after effectiveAt");
            }

            var hosts = new List<ApprovalHost>();
            if (!approval.TryGetProperty("hosts", out var hostsElement))
            {
                json.Add($"{path}.hosts", "required field is missing");
            }
            else if (hostsElement.ValueKind != JsonValueKind.Array || hostsElement.GetArrayLength() == 0)
            {
                json.Add($"{path}.hosts", "expected a non-empty array of {\"host\", \"port\"}");
            }
            else
            {
                int h = 0;
                foreach (var host in hostsElement.EnumerateArray())
                {
                    string hostPath = $"{path}.hosts[{h.ToString(CultureInfo.InvariantCulture)}]";
                    h++;
                    if (!json.CheckObject(host, hostPath, ApprovalHostFields)
                        || !json.TryGetString(host, "host", hostPath, required: true, out string? hostText) || hostText is null)
                    {
                        continue;
                    }

                    long port = 443;
                    if (host.TryGetProperty("port", out var portElement) && !json.TryGetInt64(portElement, $"{hostPath}.port", 1, 65535, out port))
                    {
                        continue;
                    }

                    if (!HostPatterns.TryParseRuleHost(hostText, out string hostName, out var scope, out string? error, out string? suggestion))
                    {
                        json.Add($"{hostPath}.host", error!, suggestion);
                        continue;
                    }

                    if (hosts.Exists(x => x.Name == hostName && x.Scope == scope && x.Port == port))
                    {
                        json.Add(hostPath, $"duplicate approval host \"{hostText}:{port.ToString(CultureInfo.InvariantCulture)}\"");
                        continue;
                    }

                    json.CheckOverbroad($"{hostPath}.host", hostName, scope);
                    hosts.Add(new ApprovalHost(hostName, scope, (int)port));
                }
            }

            if (json.Problems.Count == before)
            {
                model.Approvals.Add(new Approval(name!, hosts, reason, ticket, effectiveAt, expiresAt, json.Source));
            }
        }
    }

    private static void ReadStrings(JsonElement array, string path, JsonReading json, Action<string, string> onItem)
    {
        if (array.ValueKind != JsonValueKind.Array)
        {
            json.Add(path, $"expected an array of strings, found {JsonReading.Describe(array)}");
            return;
        }

        int i = 0;
        foreach (var item in array.EnumerateArray())
        {
            string itemPath = $"{path}[{i.ToString(CultureInfo.InvariantCulture)}]";
            i++;
            if (item.ValueKind != JsonValueKind.String)
            {
                json.Add(itemPath, $"expected a string, found {JsonReading.Describe(item)}");
                continue;
            }

            onItem(item.GetString()!, itemPath);
        }
    }
}
