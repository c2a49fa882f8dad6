using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using Kars.Policy.Egress;

namespace Kars.Policy.Hosts;

/// <summary>DNS name validation and canonicalisation (DESIGN §2.1), shared by target parsing and rule loading.</summary>
internal static class DnsNames
{
    private static readonly IdnMapping Idn = new() { AllowUnassigned = false, UseStd3AsciiRules = false };

    /// <summary>Maps a host name to its canonical form: UTS-46 ASCII, lower case, one trailing dot removed,
    /// labels 1–63, whole name ≤ 253, characters <c>[a-z0-9_-]</c>.</summary>
    public static bool TryNormalize(ReadOnlySpan<char> name, [NotNullWhen(true)] out string? canonical, out EgressTargetError error)
    {
        // STUB (replaced by the Hosts work).
        canonical = null;
        if (name.IsEmpty)
        {
            error = EgressTargetError.Empty;
            return false;
        }

        if (IsCanonical(name))
        {
            canonical = name.ToString();
            error = EgressTargetError.None;
            return true;
        }

        try
        {
            string s = name.ToString();
            if (s.EndsWith('.'))
            {
                s = s[..^1];
            }

            string ascii = Idn.GetAscii(s).ToLowerInvariant();
            if (!IsCanonical(ascii))
            {
                error = EgressTargetError.InvalidHostName;
                return false;
            }

            canonical = ascii;
            error = EgressTargetError.None;
            return true;
        }
        catch (ArgumentException)
        {
            error = EgressTargetError.InvalidHostName;
            return false;
        }
    }

    /// <summary>Returns whether <paramref name="name"/> is already canonical (so normalising it would return it unchanged).</summary>
    public static bool IsCanonical(ReadOnlySpan<char> name)
    {
        if (name.IsEmpty || name.Length > 253)
        {
            return false;
        }

        int labelLength = 0;
        foreach (char c in name)
        {
            if (c == '.')
            {
                if (labelLength == 0)
                {
                    return false;
                }

                labelLength = 0;
                continue;
            }

            if (!(c is >= 'a' and <= 'z' or >= '0' and <= '9' or '-' or '_') || ++labelLength > 63)
            {
                return false;
            }
        }

        return labelLength > 0;
    }
}
