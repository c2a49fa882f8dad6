using System.Buffers;

namespace Kars.Policy.Egress;

/// <summary>
/// The shape of a canonical DNS name, without the IDNA check of its <c>xn--</c> labels: characters
/// <c>[a-z0-9_-]</c>, labels of 1–63 characters separated by single dots, at most 253 characters, no trailing dot,
/// and a last label that is not a number (WHATWG "ends in a number").
/// </summary>
/// <remarks>One source, compiled into two assemblies: <c>Kars.Policy.Abstractions</c> (the
/// <see cref="EgressTarget"/> factory) and, as a linked file, <c>Kars.Policy</c> (<c>DnsNames</c>), so the factory and
/// the engine can never disagree on what "canonical" means, without either seeing the other's internals.</remarks>
internal static class CanonicalDnsName
{
    /// <summary>The longest canonical name, in characters (RFC 1035 presentation form without the root dot).</summary>
    public const int MaxNameLength = 253;

    /// <summary>The longest label, in characters (octets).</summary>
    public const int MaxLabelLength = 63;

    /// <summary>The prefix of an IDNA A-label.</summary>
    public const string AcePrefix = "xn--";

    /// <summary>The characters of a canonical name.</summary>
    private static readonly SearchValues<char> CanonicalChars =
        SearchValues.Create("abcdefghijklmnopqrstuvwxyz0123456789-_.");

    private static readonly SearchValues<char> HexDigits = SearchValues.Create("0123456789abcdefABCDEF");

    private static readonly SearchValues<char> Digits = SearchValues.Create("0123456789");

    /// <summary>Returns whether <paramref name="name"/> has the shape of a canonical name (see the type's summary).</summary>
    /// <param name="name">The candidate name.</param>
    /// <param name="hasAceLabel">Whether a label starts with <c>xn--</c> (its punycode is not checked here).</param>
    /// <returns><see langword="true"/> when the shape is canonical. Never allocates.</returns>
    public static bool HasCanonicalShape(ReadOnlySpan<char> name, out bool hasAceLabel)
    {
        hasAceLabel = false;
        if (name.IsEmpty || name.Length > MaxNameLength || name.ContainsAnyExcept(CanonicalChars))
        {
            return false;
        }

        ReadOnlySpan<char> rest = name;
        while (true)
        {
            int dot = rest.IndexOf('.');
            ReadOnlySpan<char> label = dot < 0 ? rest : rest[..dot];
            if (label.IsEmpty || label.Length > MaxLabelLength)
            {
                return false;
            }

            if (label.StartsWith(AcePrefix, StringComparison.Ordinal))
            {
                hasAceLabel = true;
            }

            if (dot < 0)
            {
                break;
            }

            rest = rest[(dot + 1)..];
        }

        return !EndsInNumber(name);
    }

    /// <summary>Returns whether the last label of <paramref name="name"/> is a number in the WHATWG sense: all
    /// ASCII digits, or <c>0x</c>/<c>0X</c> followed by zero or more hex digits.</summary>
    /// <param name="name">The host, without a trailing dot.</param>
    /// <returns><see langword="true"/> when the last label is numeric.</returns>
    public static bool EndsInNumber(ReadOnlySpan<char> name)
    {
        ReadOnlySpan<char> last = name[(name.LastIndexOf('.') + 1)..];
        if (last.IsEmpty)
        {
            return false;
        }

        if (last.Length >= 2 && last[0] == '0' && (last[1] | 0x20) == 'x')
        {
            return !last[2..].ContainsAnyExcept(HexDigits);
        }

        return !last.ContainsAnyExcept(Digits);
    }
}
