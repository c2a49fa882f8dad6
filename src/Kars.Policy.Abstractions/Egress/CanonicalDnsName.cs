using System.Buffers;
using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

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
    public static bool HasCanonicalShape(ReadOnlySpan<char> name, out bool hasAceLabel) => HasCanonicalShape(name, out hasAceLabel, out _);

    /// <summary>As <see cref="HasCanonicalShape(ReadOnlySpan{char}, out bool)"/>, and hands back the dot mask its pass
    /// found, so a caller that walks the labels need not read the name again.</summary>
    /// <param name="name">The candidate name.</param>
    /// <param name="hasAceLabel">Whether a label starts with <c>xn--</c> (its punycode is not checked here).</param>
    /// <param name="dots">For a canonical name of at most 64 characters, bit i set when <c>name[i] == '.'</c>; 0 for a
    /// longer name and when the shape is not canonical.</param>
    /// <returns><see langword="true"/> when the shape is canonical. Never allocates.</returns>
    public static bool HasCanonicalShape(ReadOnlySpan<char> name, out bool hasAceLabel, out ulong dots)
    {
        hasAceLabel = false;
        dots = 0;
        ulong shortDots = 0;
        if (name.Length is >= 1 and <= 64)
        {
            if (!ScanShortName(name, out shortDots, out ulong hyphens))
            {
                return false;
            }

            // The usual case, read from the masks of one vectorised pass: no empty label, no label over 63 characters
            // (only possible for 64 characters without a dot), and a last label that is a number only if it starts with
            // a digit. Two hyphens in a row may start an xn-- label: the general path below finds it.
            if ((hyphens & (hyphens >> 1)) == 0)
            {
                if (!LabelsNonEmpty(shortDots, name.Length) || (name.Length == 64 && shortDots == 0)
                    || (char.IsAsciiDigit(name[LastLabelStart(shortDots)]) && EndsInNumber(name)))
                {
                    return false;
                }

                dots = shortDots;
                return true;
            }
        }

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

        if (EndsInNumber(name))
        {
            return false;
        }

        // A name of up to 64 characters that came here (two hyphens in a row) has its mask from the vector pass; a
        // longer one has none.
        dots = shortDots;
        return true;
    }

    /// <summary>
    /// One pass over a name of 1 to 64 characters that both validates its characters and finds its label boundaries:
    /// false when a character is outside <c>[a-z0-9_.-]</c>; otherwise bit i of <paramref name="dots"/> is set when
    /// <c>name[i] == '.'</c> and bit i of <paramref name="hyphens"/> when <c>name[i] == '-'</c>. Eight characters per
    /// vector step; the last step overlaps the one before it rather than falling back to a scalar loop.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool ScanShortName(ReadOnlySpan<char> name, out ulong dots, out ulong hyphens)
    {
        int length = name.Length;
        ref ushort r = ref Unsafe.As<char, ushort>(ref MemoryMarshal.GetReference(name));
        ulong dotMask = 0;
        ulong hyphenMask = 0;
        if (Vector128.IsHardwareAccelerated && length >= 8)
        {
            uint bad = 0;
            int i = 0;
            while (true)
            {
                var v = Vector128.LoadUnsafe(ref r, (nuint)i);
                var dot = Vector128.Equals(v, Vector128.Create((ushort)'.'));
                var hyphen = Vector128.Equals(v, Vector128.Create((ushort)'-'));
                var ok = Vector128.LessThanOrEqual(v - Vector128.Create((ushort)'a'), Vector128.Create((ushort)25))
                    | Vector128.LessThanOrEqual(v - Vector128.Create((ushort)'0'), Vector128.Create((ushort)9))
                    | Vector128.Equals(v, Vector128.Create((ushort)'_'))
                    | dot
                    | hyphen;
                bad |= ~ok.ExtractMostSignificantBits() & 0xFF;
                dotMask |= (ulong)dot.ExtractMostSignificantBits() << i;
                hyphenMask |= (ulong)hyphen.ExtractMostSignificantBits() << i;
                if (i + 8 == length)
                {
                    break;
                }

                i = Math.Min(i + 8, length - 8);
            }

            dots = dotMask;
            hyphens = hyphenMask;
            return bad == 0;
        }

        for (int i = 0; i < length; i++)
        {
            char c = name[i];
            if (c == '.')
            {
                dotMask |= 1UL << i;
            }
            else if (c == '-')
            {
                hyphenMask |= 1UL << i;
            }
            else if (!char.IsAsciiLetterLower(c) && !char.IsAsciiDigit(c) && c != '_')
            {
                dots = hyphens = 0;
                return false;
            }
        }

        dots = dotMask;
        hyphens = hyphenMask;
        return true;
    }

    /// <summary>From the dot mask of a name of <paramref name="length"/> (1–64) characters: no dot first, last or next to
    /// another, so no label is empty.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool LabelsNonEmpty(ulong dots, int length) =>
        (dots & 1) == 0 && ((dots >> (length - 1)) & 1) == 0 && (dots & (dots >> 1)) == 0;

    /// <summary>From the dot mask of a name of at most 64 characters: where its last label starts.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int LastLabelStart(ulong dots) => dots == 0 ? 0 : 64 - BitOperations.LeadingZeroCount(dots);

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
