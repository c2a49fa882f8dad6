using System.Globalization;
using System.Text.Json;
using NodaTime;
using NodaTime.Text;

namespace Kars.Policy.Egress;

/// <summary>Small helpers for strict reading of policy JSON with every problem collected.</summary>
internal sealed class JsonReading(string source)
{
    private static readonly Instant MinTime = Instant.FromUtc(1, 1, 1, 0, 0);
    private static readonly Instant MaxTime = Instant.FromUtc(9999, 12, 31, 23, 59, 59);

    private static readonly JsonDocumentOptions DocumentOptions = new()
    {
        AllowTrailingCommas = false,
        CommentHandling = JsonCommentHandling.Disallow,
        MaxDepth = 32,
    };

    public string Source { get; } = source;

    public List<EgressPolicyProblem> Problems { get; } = [];

    public void Add(string path, string message, string? suggestion = null) =>
        Problems.Add(new EgressPolicyProblem(Source, path, message, suggestion));

    /// <summary>Parses the bytes; a syntax error becomes one problem and <see langword="null"/>.</summary>
    public JsonDocument? Parse(byte[] bytes)
    {
        try
        {
            return JsonDocument.Parse(bytes, DocumentOptions);
        }
        catch (JsonException ex)
        {
            Add("$", $"not valid JSON (line {(ex.LineNumber ?? 0) + 1}, byte {(ex.BytePositionInLine ?? 0) + 1})");
            return null;
        }
    }

    /// <summary>Checks that <paramref name="element"/> is an object with only known, non-repeated properties.</summary>
    public bool CheckObject(JsonElement element, string path, params string[] known)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            Add(path, $"expected an object, found {Describe(element)}");
            return false;
        }

        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var property in element.EnumerateObject())
        {
            string propertyPath = $"{path}.{property.Name}";
            if (!seen.Add(property.Name))
            {
                Add(propertyPath, "the field appears more than once");
            }
            else if (Array.IndexOf(known, property.Name) < 0)
            {
                string? close = known.FirstOrDefault(k => string.Equals(k, property.Name, StringComparison.OrdinalIgnoreCase));
                Add(propertyPath, "unknown field", close is null ? $"known fields: {string.Join(", ", known)}" : $"use \"{close}\"");
            }
        }

        return true;
    }

    public bool TryGetString(JsonElement parent, string name, string path, bool required, out string? value)
    {
        value = null;
        if (!parent.TryGetProperty(name, out var element))
        {
            if (required)
            {
                Add($"{path}.{name}", "required field is missing");
            }

            return !required;
        }

        if (element.ValueKind != JsonValueKind.String)
        {
            Add($"{path}.{name}", $"expected a string, found {Describe(element)}");
            return false;
        }

        value = element.GetString();
        return true;
    }

    public bool TryGetInstant(JsonElement parent, string name, string path, out DateTimeOffset value)
    {
        value = default;
        if (!TryGetString(parent, name, path, required: true, out string? text) || text is null)
        {
            return false;
        }

        var result = OffsetDateTimePattern.Rfc3339.Parse(text);
        if (!result.Success)
        {
            Add($"{path}.{name}", $"not an RFC 3339 time: \"{text}\"", "use a form such as \"2030-01-01T00:00:00Z\"");
            return false;
        }

        // An offset beyond ±14:00 or a year outside 0001–9999 parses as RFC 3339 but has no DateTimeOffset: report it
        // as a problem instead of letting NodaTime's conversion throw out of the load.
        Instant instant = result.Value.ToInstant();
        if (instant < MinTime || instant > MaxTime)
        {
            Add($"{path}.{name}", $"time out of range: \"{text}\"", "use a UTC time between 0001-01-01 and 9999-12-31");
            return false;
        }

        value = instant.ToDateTimeOffset();
        return true;
    }

    /// <summary>Reads an integer property within [min, max].</summary>
    public bool TryGetInt64(JsonElement element, string path, long min, long max, out long value)
    {
        value = 0;
        if (element.ValueKind != JsonValueKind.Number || !element.TryGetInt64(out value))
        {
            Add(path, $"expected an integer, found {Describe(element)}");
            return false;
        }

        if (value < min || value > max)
        {
            Add(path, $"{value.ToString(CultureInfo.InvariantCulture)} is outside {min.ToString(CultureInfo.InvariantCulture)}–{max.ToString(CultureInfo.InvariantCulture)}");
            return false;
        }

        return true;
    }

    public static string Describe(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => "nothing",
    };
}
