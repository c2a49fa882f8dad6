using System.Text.Json;
using Kars.Policy.Budgets;
using Kars.Policy.Internal;

namespace Kars.Policy.Cli;

/// <summary>
/// Reads the limits file of <c>budget replay</c> (DESIGN §7):
/// <c>{"mode","perRequestTokens","limits":{window:n},"keys":{key:{"parent","limits"}}}</c>, plus the optional
/// <c>leaseSeconds</c> (how long an unsettled request holds its tokens; 600 by default). Unknown fields and duplicate
/// names (fields, keys, windows: JSON would silently keep the last) are errors.
/// </summary>
internal static class BudgetLimitsFile
{
    public static BudgetPolicy Parse(string json)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Disallow });
        }
        catch (JsonException ex)
        {
            throw new BudgetReplayException($"limits file: not valid JSON ({ex.Message})");
        }

        using (document)
        {
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new BudgetReplayException("limits file: the root must be a JSON object");
            }

            var mode = BudgetMode.Enforce;
            long? perRequest = null;
            TimeSpan? lease = null;
            BudgetLimits defaults = BudgetLimits.None;
            var keys = new Dictionary<string, BudgetKeyPolicy>(StringComparer.Ordinal);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (JsonProperty property in root.EnumerateObject())
            {
                Unique(seen, property.Name, property.Name);
                switch (property.Name)
                {
                    case "mode":
                        // One strict reader: a declared name in any case, never a number, a list or padding.
                        mode = property.Value.ValueKind == JsonValueKind.String && StrictEnum.TryParse(property.Value.GetString(), out BudgetMode m)
                            ? m
                            : throw new BudgetReplayException($"limits file: mode must be one of {StrictEnum.Names<BudgetMode>()} (any case), not {property.Value.GetRawText()}");
                        break;
                    case "perRequestTokens":
                        perRequest = property.Value.ValueKind == JsonValueKind.Null ? null : Count(property.Value, "perRequestTokens");
                        break;
                    case "leaseSeconds":
                        long seconds = Count(property.Value, "leaseSeconds");
                        lease = seconds > 0 && seconds <= (long)BudgetRequest.MaxLeaseDuration.TotalSeconds
                            ? TimeSpan.FromSeconds(seconds)
                            : throw new BudgetReplayException($"limits file: leaseSeconds must be from 1 to {(long)BudgetRequest.MaxLeaseDuration.TotalSeconds} (365 days)");
                        break;
                    case "limits":
                        defaults = Limits(property.Value, "limits");
                        break;
                    case "keys":
                        if (property.Value.ValueKind != JsonValueKind.Object)
                        {
                            throw new BudgetReplayException("limits file: keys must be an object");
                        }

                        foreach (JsonProperty key in property.Value.EnumerateObject())
                        {
                            if (!keys.TryAdd(key.Name, Key(key)))
                            {
                                throw new BudgetReplayException($"limits file: duplicate key 'keys.{key.Name}'");
                            }
                        }

                        break;
                    default:
                        throw new BudgetReplayException($"limits file: unknown field '{property.Name}'");
                }
            }

            try
            {
                foreach (string key in keys.Keys)
                {
                    _ = new BudgetLevel(key, BudgetLimits.None);
                }

                return new BudgetPolicy(defaults, keys, mode, perRequest, lease);
            }
            catch (ArgumentException ex)
            {
                throw new BudgetReplayException("limits file: " + ex.Message.Split(" (Parameter", 2)[0]);
            }
        }
    }

    private static BudgetKeyPolicy Key(JsonProperty key)
    {
        string path = $"keys.{key.Name}";
        if (key.Value.ValueKind != JsonValueKind.Object)
        {
            throw new BudgetReplayException($"limits file: {path} must be an object");
        }

        BudgetLimits limits = BudgetLimits.None;
        string? parent = null;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (JsonProperty property in key.Value.EnumerateObject())
        {
            Unique(seen, property.Name, $"{path}.{property.Name}");
            switch (property.Name)
            {
                case "limits":
                    limits = Limits(property.Value, path + ".limits");
                    break;
                case "parent":
                    parent = property.Value.ValueKind switch
                    {
                        JsonValueKind.Null => null,
                        JsonValueKind.String when property.Value.GetString() is { Length: > 0 } p => p,
                        _ => throw new BudgetReplayException($"limits file: {path}.parent must be a key name"),
                    };
                    break;
                default:
                    throw new BudgetReplayException($"limits file: unknown field '{path}.{property.Name}'");
            }
        }

        return new BudgetKeyPolicy(limits, parent);
    }

    private static BudgetLimits Limits(JsonElement element, string path)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            throw new BudgetReplayException($"limits file: {path} must be an object");
        }

        var values = new long?[5];
        foreach (JsonProperty property in element.EnumerateObject())
        {
            // Window names through the one strict enum reader (any case; never a number, a list or padding), and
            // duplicates by window, so "day" and "Day" cannot say two different things.
            if (!StrictEnum.TryParse(property.Name, out BudgetWindow window))
            {
                throw new BudgetReplayException($"limits file: unknown window '{path}.{property.Name}' (use hour, day, week, month, year)");
            }

            if (values[(int)window] is not null)
            {
                throw new BudgetReplayException($"limits file: duplicate window '{path}.{property.Name}'");
            }

            values[(int)window] = Count(property.Value, $"{path}.{property.Name}");
        }

        return new BudgetLimits(values[(int)BudgetWindow.Hour], values[(int)BudgetWindow.Day], values[(int)BudgetWindow.Week], values[(int)BudgetWindow.Month], values[(int)BudgetWindow.Year]);
    }

    private static void Unique(HashSet<string> seen, string name, string path)
    {
        if (!seen.Add(name))
        {
            throw new BudgetReplayException($"limits file: duplicate field '{path}'");
        }
    }

    private static long Count(JsonElement element, string path)
        => element.ValueKind == JsonValueKind.Number && element.TryGetInt64(out long value) && value >= 0
            ? value
            : throw new BudgetReplayException($"limits file: {path} must be a whole number ≥ 0");
}

/// <summary>Bad replay input: the message (one line) goes to stderr and the exit code is 2.</summary>
internal sealed class BudgetReplayException(string message) : Exception(message);
