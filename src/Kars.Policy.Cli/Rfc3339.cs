using NodaTime;
using NodaTime.Text;

namespace Kars.Policy.Cli;

/// <summary>
/// The one RFC 3339 reader of the CLI (<c>eval --at</c>, the <c>at</c> of <c>budget replay</c> events): strict
/// <c>uuuu-MM-ddTHH:mm:ss</c>, an optional fraction of 1–9 digits, then <c>Z</c> or <c>±HH:mm</c>; lower-case
/// <c>t</c>/<c>z</c> accepted per RFC 3339 §5.6; no leap second.
/// </summary>
internal static class Rfc3339
{
    private static readonly OffsetDateTimePattern Pattern = OffsetDateTimePattern.CreateWithInvariantCulture("uuuu'-'MM'-'dd'T'HH':'mm':'ss;FFFFFFFFFo<Z+HH:mm>");

    /// <summary>Parses strict RFC 3339: <c>uuuu-MM-ddTHH:mm:ss</c>, an optional fraction of 1–9 digits, then <c>Z</c> or <c>±HH:mm</c>.</summary>
    public static bool TryParse(string text, out Instant instant)
    {
        instant = default;

        // RFC 3339 §5.6 allows lower-case 't' and 'z'; nothing else differs between the cases of this grammar.
        // The checks around the pattern: four-digit year without sign, '.' (never ',') and at least one fraction digit.
        string upper = text.ToUpperInvariant();
        if (upper.Length < 20 || !char.IsAsciiDigit(upper[0]) || !char.IsAsciiDigit(upper[1]) || !char.IsAsciiDigit(upper[2]) || !char.IsAsciiDigit(upper[3])
            || upper[4] != '-' || upper.Contains(',', StringComparison.Ordinal) || upper.EndsWith(".Z", StringComparison.Ordinal)
            || upper.Contains(".+", StringComparison.Ordinal) || upper.Contains(".-", StringComparison.Ordinal))
        {
            return false;
        }

        ParseResult<OffsetDateTime> result = Pattern.Parse(upper);
        if (!result.Success)
        {
            return false;
        }

        instant = result.Value.ToInstant();
        return true;
    }
}
