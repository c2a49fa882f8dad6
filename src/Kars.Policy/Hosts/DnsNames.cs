using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using Kars.Policy.Egress;

namespace Kars.Policy.Hosts;

/// <summary>DNS name validation and canonicalisation (DESIGN §2.1), shared by target parsing and rule loading.</summary>
/// <remarks>
/// <para>The canonical form of a DNS name is its UTS-46 (non-transitional) ASCII form, in lower case, without a
/// trailing dot, made only of <c>[a-z0-9_-]</c> labels of 1–63 characters separated by single dots, at most 253
/// characters long, whose last label is not a number (WHATWG "ends in a number": all digits, or <c>0x</c> followed
/// by hex digits), and whose <c>xn--</c> labels are valid punycode that round-trips through UTS-46.</para>
/// <para>All members are stateless apart from a bounded, thread-safe cache of validated punycode names, and are
/// safe to call from any thread.</para>
/// </remarks>
internal static class DnsNames
{
    /// <summary>The longest canonical name, in characters (RFC 1035 presentation form without the root dot).</summary>
    public const int MaxNameLength = 253;

    /// <summary>The longest label, in characters (octets).</summary>
    public const int MaxLabelLength = 63;

    /// <summary>Inputs longer than this are rejected before any mapping, to bound the work done for hostile input.</summary>
    internal const int MaxInputLength = 1024;

    /// <summary>How many validated punycode names <see cref="IsCanonical"/> remembers.</summary>
    internal const int PunycodeCacheCapacity = 4096;

    private const string AcePrefix = "xn--";

    private static readonly IdnMapping Idn = new() { AllowUnassigned = false, UseStd3AsciiRules = false };

    /// <summary>The characters of a canonical name.</summary>
    private static readonly SearchValues<char> CanonicalChars =
        SearchValues.Create("abcdefghijklmnopqrstuvwxyz0123456789-_.");

    /// <summary>The ASCII characters allowed in a host before lower-casing.</summary>
    private static readonly SearchValues<char> AsciiHostChars =
        SearchValues.Create("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.");

    private static readonly SearchValues<char> HexDigits = SearchValues.Create("0123456789abcdefABCDEF");

    private static readonly SearchValues<char> Digits = SearchValues.Create("0123456789");

    private static readonly ConcurrentDictionary<string, byte> ValidatedPunycode = new(StringComparer.Ordinal);

    private static int validatedPunycodeCount;

    private static readonly ConcurrentDictionary<string, byte>.AlternateLookup<ReadOnlySpan<char>> ValidatedPunycodeLookup =
        ValidatedPunycode.GetAlternateLookup<ReadOnlySpan<char>>();

    /// <summary>Maps a host name to its canonical form: UTS-46 ASCII, lower case, one trailing dot removed,
    /// labels 1–63, whole name ≤ 253, characters <c>[a-z0-9_-]</c>.</summary>
    /// <param name="name">The host name (no port, no brackets).</param>
    /// <param name="canonical">The canonical name when the method returns <see langword="true"/>.</param>
    /// <param name="error">Why the name is invalid, or <see cref="EgressTargetError.None"/>.</param>
    /// <returns><see langword="true"/> when <paramref name="name"/> is a valid DNS name.</returns>
    public static bool TryNormalize(ReadOnlySpan<char> name, [NotNullWhen(true)] out string? canonical, out EgressTargetError error) =>
        TryNormalizeCore(name, original: null, out canonical, out error);

    /// <summary>Same as <see cref="TryNormalize(ReadOnlySpan{char}, out string?, out EgressTargetError)"/>, but returns
    /// <paramref name="name"/> itself (no allocation) when it already is canonical.</summary>
    /// <param name="name">The host name (no port, no brackets).</param>
    /// <param name="canonical">The canonical name when the method returns <see langword="true"/>.</param>
    /// <param name="error">Why the name is invalid, or <see cref="EgressTargetError.None"/>.</param>
    /// <returns><see langword="true"/> when <paramref name="name"/> is a valid DNS name.</returns>
    public static bool TryNormalize(string? name, [NotNullWhen(true)] out string? canonical, out EgressTargetError error) =>
        TryNormalizeCore(name.AsSpan(), name, out canonical, out error);

    /// <summary>Returns whether <paramref name="name"/> is already canonical (so normalising it would return it unchanged).</summary>
    /// <param name="name">The candidate name.</param>
    /// <returns><see langword="true"/> when <paramref name="name"/> is in canonical form. Never allocates.</returns>
    /// <remarks>A name with an <c>xn--</c> label counts as canonical only after the slow path has validated it once
    /// (a bounded cache); until then this returns <see langword="false"/> and callers take the validating path.</remarks>
    public static bool IsCanonical(ReadOnlySpan<char> name)
    {
        if (!HasCanonicalShape(name, out bool hasAceLabel))
        {
            return false;
        }

        return !hasAceLabel || ValidatedPunycodeLookup.ContainsKey(name);
    }

    /// <summary>Returns whether the last label of <paramref name="name"/> is a number in the WHATWG sense: all
    /// ASCII digits, or <c>0x</c>/<c>0X</c> followed by zero or more hex digits. Such a host is parsed as IPv4 by
    /// browsers and resolvers and must never be treated as a DNS name.</summary>
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

    /// <summary>Classifies the characters of a raw host: returns <see cref="EgressTargetError.AmbiguousCharacter"/> for
    /// whitespace, control and format characters, <c>%</c>, <c>\</c> and <c>@</c>;
    /// <see cref="EgressTargetError.InvalidHostName"/> for any other ASCII character outside <c>[A-Za-z0-9._-]</c>;
    /// otherwise <see cref="EgressTargetError.None"/>.</summary>
    /// <param name="host">The raw host text.</param>
    /// <param name="hasNonAscii">Whether the host contains a non-ASCII character (and so needs UTS-46 mapping).</param>
    /// <returns>The error, or <see cref="EgressTargetError.None"/>.</returns>
    internal static EgressTargetError ScanHostCharacters(ReadOnlySpan<char> host, out bool hasNonAscii)
    {
        hasNonAscii = false;
        int i = host.IndexOfAnyExcept(AsciiHostChars);
        if (i < 0)
        {
            return EgressTargetError.None;
        }

        EgressTargetError result = EgressTargetError.None;
        while (i < host.Length)
        {
            char c = host[i];
            if (AsciiHostChars.Contains(c))
            {
                i++;
                continue;
            }

            if (char.IsAscii(c))
            {
                if (IsAmbiguous(c))
                {
                    return EgressTargetError.AmbiguousCharacter;
                }

                // Keep scanning: an ambiguous character later in the input is the more precise error.
                result = EgressTargetError.InvalidHostName;
                i++;
                continue;
            }

            hasNonAscii = true;
            if (Rune.DecodeFromUtf16(host[i..], out Rune rune, out int consumed) != OperationStatus.Done)
            {
                // A lone surrogate: never a valid name.
                result = EgressTargetError.InvalidHostName;
                i++;
                continue;
            }

            if (IsAmbiguous(rune))
            {
                return EgressTargetError.AmbiguousCharacter;
            }

            i += consumed;
        }

        return result;
    }

    /// <summary>Whether <paramref name="c"/> is an ASCII character that URL parsers treat differently inside a host:
    /// whitespace, controls, <c>%</c>, <c>\</c> and <c>@</c>.</summary>
    /// <param name="c">The character.</param>
    /// <returns><see langword="true"/> when the character makes a host ambiguous.</returns>
    internal static bool IsAmbiguous(char c) => c is '%' or '\\' or '@' || char.IsWhiteSpace(c) || char.IsControl(c);

    /// <summary>Whether <paramref name="rune"/> is whitespace, a control character, or a Unicode format character
    /// (except ZWNJ/ZWJ, which UTS-46 checks in context). UTS-46 would silently delete some of these (soft hyphen,
    /// zero-width space, BOM), so a host that contains them looks different to a human and to other parsers.</summary>
    /// <param name="rune">The scalar value.</param>
    /// <returns><see langword="true"/> when the scalar makes a host ambiguous.</returns>
    internal static bool IsAmbiguous(Rune rune)
    {
        if (Rune.IsWhiteSpace(rune) || Rune.IsControl(rune))
        {
            return true;
        }

        return rune.Value is not (0x200C or 0x200D) && Rune.GetUnicodeCategory(rune) == UnicodeCategory.Format;
    }

    private static bool TryNormalizeCore(ReadOnlySpan<char> name, string? original, [NotNullWhen(true)] out string? canonical, out EgressTargetError error)
    {
        canonical = null;
        if (name.IsEmpty)
        {
            error = EgressTargetError.Empty;
            return false;
        }

        if (IsCanonical(name))
        {
            canonical = original ?? name.ToString();
            error = EgressTargetError.None;
            return true;
        }

        if (name.Length > MaxInputLength)
        {
            error = EgressTargetError.InvalidHostName;
            return false;
        }

        error = ScanHostCharacters(name, out bool hasNonAscii);
        if (error != EgressTargetError.None)
        {
            return false;
        }

        return hasNonAscii
            ? TryNormalizeUnicode(original ?? name.ToString(), out canonical, out error)
            : TryNormalizeAscii(name, out canonical, out error);
    }

    private static bool TryNormalizeAscii(ReadOnlySpan<char> name, [NotNullWhen(true)] out string? canonical, out EgressTargetError error)
    {
        canonical = null;

        // One trailing dot plus the longest name; anything longer cannot become valid.
        if (name.Length > MaxNameLength + 1)
        {
            error = EgressTargetError.InvalidHostName;
            return false;
        }

        Span<char> lower = stackalloc char[MaxNameLength + 1];
        if (Ascii.ToLower(name, lower, out int written) != OperationStatus.Done)
        {
            error = EgressTargetError.InvalidHostName;
            return false;
        }

        return TryFinish(lower[..written], out canonical, out error);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static bool TryNormalizeUnicode(string name, [NotNullWhen(true)] out string? canonical, out EgressTargetError error)
    {
        canonical = null;
        string ascii;
        try
        {
            ascii = Idn.GetAscii(name);
        }
        catch (ArgumentException)
        {
            error = EgressTargetError.InvalidHostName;
            return false;
        }

        if (ascii.Length > MaxNameLength + 1)
        {
            error = EgressTargetError.InvalidHostName;
            return false;
        }

        Span<char> lower = stackalloc char[MaxNameLength + 1];
        if (Ascii.ToLower(ascii, lower, out int written) != OperationStatus.Done)
        {
            error = EgressTargetError.InvalidHostName;
            return false;
        }

        return TryFinish(lower[..written], out canonical, out error);
    }

    /// <summary>Validates a lower-case ASCII name (after any mapping), removes one trailing dot and creates the string.</summary>
    private static bool TryFinish(ReadOnlySpan<char> lower, [NotNullWhen(true)] out string? canonical, out EgressTargetError error)
    {
        canonical = null;
        error = EgressTargetError.InvalidHostName;
        if (lower.EndsWith('.'))
        {
            lower = lower[..^1];
        }

        if (lower.IsEmpty || !HasCanonicalShape(lower, out bool hasAceLabel))
        {
            return false;
        }

        if (hasAceLabel && !ValidatedPunycodeLookup.ContainsKey(lower))
        {
            string candidate = lower.ToString();
            if (!IsValidPunycodeName(candidate))
            {
                return false;
            }

            // Bounded so hostile input cannot grow it without limit; once full, new names simply stay on the slow path.
            if (Volatile.Read(ref validatedPunycodeCount) < PunycodeCacheCapacity && ValidatedPunycode.TryAdd(candidate, 0))
            {
                Interlocked.Increment(ref validatedPunycodeCount);
            }

            canonical = candidate;
            error = EgressTargetError.None;
            return true;
        }

        canonical = lower.ToString();
        error = EgressTargetError.None;
        return true;
    }

    /// <summary>Checks everything about a canonical name except the validity of its punycode labels.</summary>
    private static bool HasCanonicalShape(ReadOnlySpan<char> name, out bool hasAceLabel)
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

    /// <summary>Validates the <c>xn--</c> labels of a lower-case ASCII name: they must decode and re-encode to
    /// exactly the same text under UTS-46 (which also applies the Bidi and CONTEXTJ rules across the whole name).</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static bool IsValidPunycodeName(string name)
    {
        try
        {
            string unicode = Idn.GetUnicode(name);
            return string.Equals(Idn.GetAscii(unicode), name, StringComparison.Ordinal);
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}
