using System.Globalization;
using System.Text;
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

    /// <summary>Gets the overbroad-rule findings (warnings, or errors when the options say so; the loader decides).</summary>
    public List<EgressPolicyProblem> Overbroad { get; } = [];

    public void Add(string path, string message, string? suggestion = null) =>
        Problems.Add(new EgressPolicyProblem(Source, path, message, suggestion));

    public void CheckOverbroad(string path, string name, NameScope scope) =>
        OverbroadRules.ReportName(Overbroad, Source, path, name, scope);

    public void CheckOverbroad(string path, System.Net.IPNetwork network) =>
        OverbroadRules.ReportCidr(Overbroad, Source, path, network);

    /// <summary>Hands the overbroad findings to <paramref name="sink"/> when given, else to the model's warnings.</summary>
    public void FlushOverbroad(List<EgressPolicyProblem>? sink, PolicyModel? model)
    {
        if (sink is not null)
        {
            sink.AddRange(Overbroad);
        }
        else
        {
            model?.Warnings.AddRange(Overbroad);
        }
    }

    /// <summary>Parses the bytes; a syntax error becomes one problem and <see langword="null"/>. A byte order mark, and
    /// every string or field name that holds invalid UTF-8 or a lone surrogate escape, is reported with its JSON path
    /// (all of them), and the document is then refused, so no reader can meet a string it cannot decode.</summary>
    public JsonDocument? Parse(byte[] bytes)
    {
        if (bytes.AsSpan().StartsWith("\uFEFF"u8))
        {
            Add("$", "the file starts with a UTF-8 byte order mark (BOM), which JSON does not allow (RFC 8259 §8.1)", "save the file as UTF-8 without a byte order mark");
            return null;
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(bytes, DocumentOptions);
        }
        catch (JsonException ex)
        {
            Add("$", $"not valid JSON (line {(ex.LineNumber ?? 0) + 1}, byte {(ex.BytePositionInLine ?? 0) + 1})");
            return null;
        }

        if (!CheckStrings(bytes))
        {
            document.Dispose();
            return null;
        }

        return document;
    }

    /// <summary>Walks every token once (the syntax is already known to be valid) and reports each string or field name
    /// that does not decode to valid UTF-16: invalid UTF-8 bytes, or a <c>\uD800</c>-style escape without its pair.</summary>
    private bool CheckStrings(byte[] bytes)
    {
        int before = Problems.Count;
        var reader = new Utf8JsonReader(bytes, new JsonReaderOptions { AllowTrailingCommas = false, CommentHandling = JsonCommentHandling.Disallow, MaxDepth = DocumentOptions.MaxDepth });
        // One frame per open container: the current field name of an object, the current index of an array.
        var frames = new List<(bool IsArray, int Index, string? Name)>();
        while (reader.Read())
        {
            switch (reader.TokenType)
            {
                case JsonTokenType.PropertyName:
                    bool decoded = TryDecode(ref reader, out string? name);
                    frames[^1] = (false, 0, decoded ? name : "<field>");
                    if (!decoded)
                    {
                        Add(PathOf(frames), $"a field name holds {DescribeBadString(reader)}", "write the text as valid UTF-8, and escape astral characters as surrogate pairs");
                    }

                    break;
                case JsonTokenType.EndObject:
                case JsonTokenType.EndArray:
                    frames.RemoveAt(frames.Count - 1);
                    break;
                default:
                    if (frames.Count > 0 && frames[^1].IsArray)
                    {
                        frames[^1] = (true, frames[^1].Index + 1, null);
                    }

                    if (reader.TokenType is JsonTokenType.StartObject or JsonTokenType.StartArray)
                    {
                        frames.Add((reader.TokenType == JsonTokenType.StartArray, -1, null));
                    }
                    else if (reader.TokenType == JsonTokenType.String && !TryDecode(ref reader, out _))
                    {
                        Add(PathOf(frames), $"the string holds {DescribeBadString(reader)}", "write the text as valid UTF-8, and escape astral characters as surrogate pairs");
                    }

                    break;
            }
        }

        return Problems.Count == before;
    }

    private static string PathOf(List<(bool IsArray, int Index, string? Name)> frames)
    {
        var path = new StringBuilder("$");
        foreach (var (isArray, index, name) in frames)
        {
            if (isArray)
            {
                path.Append('[').Append(index.ToString(CultureInfo.InvariantCulture)).Append(']');
            }
            else if (name is not null)
            {
                path.Append('.').Append(name);
            }
        }

        return path.ToString();
    }

    private static bool TryDecode(ref Utf8JsonReader reader, out string? text)
    {
        try
        {
            text = reader.GetString();
            return true;
        }
        catch (InvalidOperationException)
        {
            text = null;
            return false;
        }
    }

    private static string DescribeBadString(Utf8JsonReader reader)
    {
        ReadOnlySpan<byte> raw = reader.HasValueSequence ? System.Buffers.BuffersExtensions.ToArray(reader.ValueSequence) : reader.ValueSpan;
        return System.Text.Unicode.Utf8.IsValid(raw)
            ? "a lone surrogate escape (\\uD800–\\uDFFF without its pair), which is not text"
            : "bytes that are not valid UTF-8";
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
        // The conversion itself can overflow at the edges of NodaTime's range (year 9999 with a negative offset).
        Instant instant;
        try
        {
            instant = result.Value.ToInstant();
        }
        catch (Exception ex) when (ex is OverflowException or ArgumentOutOfRangeException)
        {
            instant = Instant.MaxValue;
        }

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
