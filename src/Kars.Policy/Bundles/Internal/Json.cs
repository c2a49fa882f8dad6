using System.Buffers.Text;
using System.Globalization;
using System.Text.Json;
using NodaTime;
using NodaTime.Text;

namespace Kars.Policy.Bundles;

/// <summary>Strict readers for the proto3-JSON shapes of Sigstore documents; every failure is a <see cref="BundleException"/>.</summary>
internal static class Json
{
    private static readonly JsonDocumentOptions Strict = new() { AllowDuplicateProperties = false, MaxDepth = 64 };

    public static JsonDocument Parse(ReadOnlyMemory<byte> utf8, string what)
    {
        // JSON is UTF-8 (RFC 8259 §8.1). The reader decodes only what it reads, so without this check invalid bytes in
        // a member nobody reads (a hint, an unknown member's name) would pass.
        if (!System.Text.Unicode.Utf8.IsValid(utf8.Span))
        {
            throw BundleException.Malformed($"{what} is not valid UTF-8");
        }

        try
        {
            return JsonDocument.Parse(utf8, Strict);
        }
        catch (JsonException ex)
        {
            throw BundleException.Malformed($"{what} is not valid JSON ({ex.Message})");
        }
    }

    public static JsonElement Object(JsonElement parent, string name, string what)
    {
        if (parent.ValueKind != JsonValueKind.Object || !parent.TryGetProperty(name, out var value) || value.ValueKind != JsonValueKind.Object)
        {
            throw BundleException.Malformed($"{what}: \"{name}\" must be an object");
        }

        return value;
    }

    public static JsonElement? OptionalObject(JsonElement parent, string name, string what)
    {
        if (parent.ValueKind != JsonValueKind.Object || !parent.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return value.ValueKind == JsonValueKind.Object ? value : throw BundleException.Malformed($"{what}: \"{name}\" must be an object");
    }

    public static JsonElement Array(JsonElement parent, string name, string what)
    {
        if (parent.ValueKind != JsonValueKind.Object || !parent.TryGetProperty(name, out var value) || value.ValueKind != JsonValueKind.Array)
        {
            throw BundleException.Malformed($"{what}: \"{name}\" must be an array");
        }

        return value;
    }

    public static string String(JsonElement parent, string name, string what) =>
        OptionalString(parent, name, what) ?? throw BundleException.Malformed($"{what}: \"{name}\" is missing");

    public static string? OptionalString(JsonElement parent, string name, string what)
    {
        if (parent.ValueKind != JsonValueKind.Object || !parent.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        return value.ValueKind == JsonValueKind.String ? value.GetString()! : throw BundleException.Malformed($"{what}: \"{name}\" must be a string");
    }

    public static byte[] Bytes(JsonElement parent, string name, string what) =>
        Base64(String(parent, name, what), $"{what}.{name}");

    /// <summary>A proto3 int64: a decimal string or a JSON number; never negative.</summary>
    public static long NonNegativeInt64(JsonElement parent, string name, string what) =>
        OptionalNonNegativeInt64(parent, name, what) ?? throw BundleException.Malformed($"{what}: \"{name}\" is missing");

    public static long? OptionalNonNegativeInt64(JsonElement parent, string name, string what)
    {
        if (parent.ValueKind != JsonValueKind.Object || !parent.TryGetProperty(name, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }

        long result = -1;
        bool ok = value.ValueKind switch
        {
            JsonValueKind.Number => value.TryGetInt64(out result),
            JsonValueKind.String => IsDecimal(value.GetString()!) && long.TryParse(value.GetString(), NumberStyles.None, CultureInfo.InvariantCulture, out result),
            _ => false,
        };
        if (!ok || result < 0)
        {
            throw BundleException.Malformed($"{what}: \"{name}\" must be a non-negative 64-bit integer");
        }

        return result;
    }

    /// <summary>Standard base64 with padding; white space and any other character are refused.</summary>
    public static byte[] Base64(string text, string what)
    {
        if (text.Length % 4 != 0 || !System.Buffers.Text.Base64.IsValid(text, out _) || text.AsSpan().ContainsAny(" \t\r\n"))
        {
            throw BundleException.Malformed($"{what} is not valid base64");
        }

        return Convert.FromBase64String(text);
    }

    public static DateTimeOffset Timestamp(string text, string what)
    {
        var parsed = OffsetDateTimePattern.Rfc3339.Parse(text);
        if (!parsed.Success)
        {
            throw BundleException.Malformed($"{what}: \"{text}\" is not an RFC 3339 time");
        }

        return parsed.Value.ToInstant().ToDateTimeOffset();
    }

    public static DateTimeOffset FromUnixSeconds(long seconds, string what)
    {
        if (seconds > 253402300799L)
        {
            throw BundleException.Malformed($"{what} is out of range");
        }

        return Instant.FromUnixTimeSeconds(seconds).ToDateTimeOffset();
    }

    private static bool IsDecimal(string text) => text.Length is > 0 and <= 19 && text.AsSpan().IndexOfAnyExceptInRange('0', '9') < 0;
}
