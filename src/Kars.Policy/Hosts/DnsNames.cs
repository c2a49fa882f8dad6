using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using Kars.Policy.Egress;
using Kars.Policy.Hosts.Idna;

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
    public const int MaxNameLength = CanonicalDnsName.MaxNameLength;

    /// <summary>The longest label, in characters (octets).</summary>
    public const int MaxLabelLength = CanonicalDnsName.MaxLabelLength;

    /// <summary>Inputs longer than this are rejected before any mapping, to bound the work done for hostile input.</summary>
    internal const int MaxInputLength = 1024;

    /// <summary>How many validated punycode names <see cref="IsCanonical"/> remembers.</summary>
    internal const int PunycodeCacheCapacity = 4096;

    /// <summary>The characters of a canonical name.</summary>
    private static readonly SearchValues<char> CanonicalChars =
        SearchValues.Create("abcdefghijklmnopqrstuvwxyz0123456789-_.");

    /// <summary>The ASCII characters allowed in a host before lower-casing.</summary>
    private static readonly SearchValues<char> AsciiHostChars =
        SearchValues.Create("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.");

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
    public static bool EndsInNumber(ReadOnlySpan<char> name) => CanonicalDnsName.EndsInNumber(name);

    /// <summary>Classifies the characters of a raw host: returns <see cref="EgressTargetError.AmbiguousCharacter"/> for
    /// whitespace, control and format characters, <c>%</c>, <c>\</c> and <c>@</c>;
    /// <see cref="EgressTargetError.InvalidHostName"/> for any other ASCII character outside <c>[A-Za-z0-9._-]</c>;
    /// otherwise <see cref="EgressTargetError.None"/>.</summary>
    /// <param name="host">The raw host text.</param>
    /// <param name="hasNonAscii">Whether the host contains a non-ASCII character (and so needs UTS-46 mapping).</param>
    /// <returns>The error, or <see cref="EgressTargetError.None"/>.</returns>
    internal static EgressTargetError ScanHostCharacters(ReadOnlySpan<char> host, out bool hasNonAscii) =>
        ToError(ScanHostCharacterRules(host, out hasNonAscii));

    /// <summary>Same as <see cref="ScanHostCharacters"/>, reporting the rule.</summary>
    /// <param name="host">The raw host text.</param>
    /// <param name="hasNonAscii">Whether the host contains a non-ASCII character.</param>
    /// <returns>The rule that rejects the host, or <see cref="DnsNameRule.Valid"/>.</returns>
    internal static DnsNameRule ScanHostCharacterRules(ReadOnlySpan<char> host, out bool hasNonAscii)
    {
        hasNonAscii = false;
        int i = host.IndexOfAnyExcept(AsciiHostChars);
        if (i < 0)
        {
            return DnsNameRule.Valid;
        }

        DnsNameRule result = DnsNameRule.Valid;
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
                    return DnsNameRule.AmbiguousCharacter;
                }

                // Keep scanning: an ambiguous character later in the input is the more precise error.
                result = DnsNameRule.AsciiCharacter;
                i++;
                continue;
            }

            hasNonAscii = true;
            if (Rune.DecodeFromUtf16(host[i..], out Rune rune, out int consumed) != OperationStatus.Done)
            {
                // A lone surrogate: never a valid name (UTS-46 disallows it).
                if (result == DnsNameRule.Valid)
                {
                    result = DnsNameRule.Uts46;
                }

                i++;
                continue;
            }

            if (IsAmbiguous(rune))
            {
                return DnsNameRule.AmbiguousCharacter;
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
        DnsNameRule rule = Normalize(name, original, out canonical);
        error = ToError(rule);
        return rule == DnsNameRule.Valid;
    }

    /// <summary>The error a parse reports for <paramref name="rule"/>.</summary>
    /// <param name="rule">The rule that rejected a name, or <see cref="DnsNameRule.Valid"/>.</param>
    /// <returns>The error.</returns>
    internal static EgressTargetError ToError(DnsNameRule rule) => rule switch
    {
        DnsNameRule.Valid => EgressTargetError.None,
        DnsNameRule.Empty => EgressTargetError.Empty,
        DnsNameRule.AmbiguousCharacter or DnsNameRule.IgnoredCodePoint => EgressTargetError.AmbiguousCharacter,
        _ => EgressTargetError.InvalidHostName,
    };

    /// <summary>Canonicalises <paramref name="name"/> and says which rule, if any, rejected it. The one
    /// implementation behind <see cref="TryNormalize(string?, out string?, out EgressTargetError)"/>; the conformance
    /// tests use it to count rejections per rule.</summary>
    /// <param name="name">The host name (no port, no brackets).</param>
    /// <param name="original">The same text as a string when the caller has one (returned when already canonical).</param>
    /// <param name="canonical">The canonical name when the result is <see cref="DnsNameRule.Valid"/>.</param>
    /// <returns>The rule that rejected the name, or <see cref="DnsNameRule.Valid"/>.</returns>
    internal static DnsNameRule Normalize(ReadOnlySpan<char> name, string? original, out string? canonical)
    {
        canonical = null;
        if (name.IsEmpty)
        {
            return DnsNameRule.Empty;
        }

        if (IsCanonical(name))
        {
            canonical = original ?? name.ToString();
            return DnsNameRule.Valid;
        }

        if (name.Length > MaxInputLength)
        {
            return DnsNameRule.InputTooLong;
        }

        DnsNameRule rule = ScanHostCharacterRules(name, out bool hasNonAscii);
        if (rule != DnsNameRule.Valid)
        {
            return rule;
        }

        return hasNonAscii || ContainsAceLabel(name)
            ? NormalizeWithUts46(name, out canonical)
            : NormalizeAscii(name, out canonical);
    }

    private static DnsNameRule NormalizeAscii(ReadOnlySpan<char> name, out string? canonical)
    {
        canonical = null;

        // One trailing dot plus the longest name; anything longer cannot become valid.
        if (name.Length > MaxNameLength + 1)
        {
            return DnsNameRule.DnsLength;
        }

        // All-ASCII without an xn-- label: UTS-46 only lower-cases it (and no ASCII code point is R, AL or AN, so
        // the Bidi rule does not apply), so the processor is not needed.
        Span<char> lower = stackalloc char[MaxNameLength + 1];
        if (Ascii.ToLower(name, lower, out int written) != OperationStatus.Done)
        {
            return DnsNameRule.AsciiCharacter;
        }

        return Finish(lower[..written], hasAceLabel: false, out canonical);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static DnsNameRule NormalizeWithUts46(ReadOnlySpan<char> name, out string? canonical)
    {
        canonical = null;
        Span<char> ascii = stackalloc char[MaxInputLength];
        Uts46Errors errors = Uts46.ToAscii(name, ascii, out int written);
        if ((errors & ~(Uts46Errors.Ignored | Uts46Errors.TooLong | Uts46Errors.AceNotCanonical)) != 0)
        {
            return DnsNameRule.Uts46;
        }

        if ((errors & Uts46Errors.Ignored) != 0)
        {
            return DnsNameRule.IgnoredCodePoint;
        }

        if ((errors & Uts46Errors.TooLong) != 0 || written > MaxNameLength + 1)
        {
            return DnsNameRule.DnsLength;
        }

        if ((errors & Uts46Errors.AceNotCanonical) != 0)
        {
            return DnsNameRule.PunycodeRoundTrip;
        }

        return Finish(ascii[..written], hasAceLabel: true, out canonical);
    }

    /// <summary>Validates a lower-case ASCII name (after any mapping), removes one trailing dot and creates the string.
    /// A name that went through the UTS-46 processor is remembered when it has an <c>xn--</c> label.</summary>
    private static DnsNameRule Finish(ReadOnlySpan<char> lower, bool hasAceLabel, out string? canonical)
    {
        canonical = null;
        if (lower.ContainsAnyExcept(CanonicalChars))
        {
            return DnsNameRule.AsciiCharacter;
        }

        if (lower.EndsWith('.'))
        {
            lower = lower[..^1];
        }

        if (lower.IsEmpty || !HasCanonicalShape(lower, out bool aceLabel))
        {
            return lower.IsEmpty || !HasValidLengths(lower) ? DnsNameRule.DnsLength : DnsNameRule.EndsInNumber;
        }

        if (hasAceLabel && aceLabel)
        {
            if (ValidatedPunycodeLookup.ContainsKey(lower))
            {
                canonical = lower.ToString();
                return DnsNameRule.Valid;
            }

            string candidate = lower.ToString();

            // Bounded so hostile input cannot grow it without limit; once full, new names simply stay on the slow path.
            if (Volatile.Read(ref validatedPunycodeCount) < PunycodeCacheCapacity && ValidatedPunycode.TryAdd(candidate, 0))
            {
                Interlocked.Increment(ref validatedPunycodeCount);
            }

            canonical = candidate;
            return DnsNameRule.Valid;
        }

        canonical = lower.ToString();
        return DnsNameRule.Valid;
    }

    private static bool HasValidLengths(ReadOnlySpan<char> name)
    {
        if (name.Length > MaxNameLength)
        {
            return false;
        }

        foreach (Range r in name.Split('.'))
        {
            int length = r.GetOffsetAndLength(name.Length).Length;
            if (length is 0 or > MaxLabelLength)
            {
                return false;
            }
        }

        return true;
    }

    private static bool ContainsAceLabel(ReadOnlySpan<char> name)
    {
        ReadOnlySpan<char> rest = name;
        while (true)
        {
            if (rest.Length >= 4 && (rest[0] | 0x20) == 'x' && (rest[1] | 0x20) == 'n' && rest[2] == '-' && rest[3] == '-')
            {
                return true;
            }

            int dot = rest.IndexOf('.');
            if (dot < 0)
            {
                return false;
            }

            rest = rest[(dot + 1)..];
        }
    }

    /// <summary>Checks everything about a canonical name except the validity of its punycode labels.</summary>
    private static bool HasCanonicalShape(ReadOnlySpan<char> name, out bool hasAceLabel) =>
        CanonicalDnsName.HasCanonicalShape(name, out hasAceLabel);
}

/// <summary>Which rule decided a DNS name (see <c>docs/hosts.md</c>, "DNS names"). Everything except
/// <see cref="Uts46"/> is a rule of this library on top of (stricter than) UTS-46 with the documented flags.</summary>
internal enum DnsNameRule
{
    /// <summary>The name is valid.</summary>
    Valid,

    /// <summary>The input is empty.</summary>
    Empty,

    /// <summary>The input is longer than <see cref="DnsNames.MaxInputLength"/>.</summary>
    InputTooLong,

    /// <summary>Whitespace, a control or format (Cf) character other than ZWNJ/ZWJ, <c>%</c>, <c>\</c> or <c>@</c>.</summary>
    AmbiguousCharacter,

    /// <summary>An ASCII character outside <c>[a-z0-9_-.]</c> (before or after mapping). UTS-46 with
    /// UseSTD3ASCIIRules off allows it; DNS names and this library do not.</summary>
    AsciiCharacter,

    /// <summary>UTS-46 processing reported an error (disallowed code point, Punycode, validity, CONTEXTJ, Bidi).</summary>
    Uts46,

    /// <summary>A code point that UTS-46 ignores (deletes), such as U+034F or a variation selector.</summary>
    IgnoredCodePoint,

    /// <summary>An empty label, a label longer than 63, or a name longer than 253 (one trailing dot allowed).</summary>
    DnsLength,

    /// <summary>The last label is a number (WHATWG "ends in a number"): an IPv4 address or nothing.</summary>
    EndsInNumber,

    /// <summary>An <c>xn--</c> label whose Punycode is not the canonical encoding of what it decodes to.</summary>
    PunycodeRoundTrip,
}
