using System.Text;

namespace Kars.Policy.Hosts.Idna;

/// <summary>What <see cref="Uts46.ToAscii"/> found wrong with a domain name. Several may be set.</summary>
[Flags]
internal enum Uts46Errors
{
    /// <summary>No error.</summary>
    None = 0,

    /// <summary>A disallowed code point or an unpaired surrogate (UTS-46 P1/V7).</summary>
    Disallowed = 1 << 0,

    /// <summary>A code point that UTS-46 ignores (deletes). Not an error in UTS-46; this library's stricter rule
    /// rejects it because the text a reader sees is not the host.</summary>
    Ignored = 1 << 1,

    /// <summary>An <c>xn--</c> label that is not valid Punycode, is empty, decodes to ASCII only, or contains
    /// non-ASCII (UTS-46 P4, A3).</summary>
    Punycode = 1 << 2,

    /// <summary>A decoded label that is not in NFC (V1).</summary>
    NotNormalized = 1 << 3,

    /// <summary>A label that starts with <c>xn--</c> after decoding (V4, with CheckHyphens off).</summary>
    AcePrefix = 1 << 4,

    /// <summary>A label that contains a full stop (V5).</summary>
    FullStop = 1 << 5,

    /// <summary>A label that starts with a combining mark (V6).</summary>
    LeadingMark = 1 << 6,

    /// <summary>A decoded label with a code point whose status is not valid or deviation (V7).</summary>
    InvalidCodePoint = 1 << 7,

    /// <summary>ZWNJ or ZWJ outside the contexts of RFC 5892 Appendix A.1/A.2 (C1, C2).</summary>
    ContextJ = 1 << 8,

    /// <summary>A label of a Bidi domain name that breaks a rule of RFC 5893 §2 (B1–B6).</summary>
    Bidi = 1 << 9,

    /// <summary>An <c>xn--</c> label whose Punycode is not the one this processor writes for the decoded label
    /// (a non-canonical encoding). Not an error in UTS-46; this library's stricter rule rejects it.</summary>
    AceNotCanonical = 1 << 11,

    /// <summary>The input is longer than <see cref="Uts46.MaxInputLength"/> or the output does not fit the
    /// destination. Never set for names short enough to be DNS names.</summary>
    TooLong = 1 << 10,
}

/// <summary>The bundled UTS #46 processor: <c>ToASCII</c> with non-transitional processing, for the Unicode version
/// of <see cref="UnicodeTables.UnicodeVersion"/>. Uses only the library's generated tables: no ICU, no
/// <c>IdnMapping</c>, no <see cref="string.Normalize()"/>, so every machine and globalization mode gives the same
/// answer.</summary>
/// <remarks>
/// <para>Flags (UTS #46 §4): Transitional_Processing = false; UseSTD3ASCIIRules = false; CheckHyphens = false;
/// CheckBidi = true; CheckJoiners = true; VerifyDnsLength = false here (the caller, <see cref="DnsNames"/>, applies
/// its own, stricter length rules). Ignored code points are deleted as UTS-46 says, but reported as
/// <see cref="Uts46Errors.Ignored"/> so that callers can reject them.</para>
/// <para>Processing goes on after an error, as the specification describes, so that the output and every error are
/// reported; a caller must treat any error as a rejection. Never allocates: work buffers start on the stack and
/// move to pooled arrays only for unusually long input.</para>
/// </remarks>
internal static class Uts46
{
    /// <summary>Longer input is refused with <see cref="Uts46Errors.TooLong"/>, to bound the work.</summary>
    public const int MaxInputLength = 4096;

    private const string AcePrefix = "xn--";

    /// <summary>Runs UTS-46 ToASCII (non-transitional) on <paramref name="input"/>.</summary>
    /// <param name="input">The domain name (UTF-16).</param>
    /// <param name="destination">Receives the ASCII result.</param>
    /// <param name="written">How many characters were written to <paramref name="destination"/>.</param>
    /// <returns>The errors found; <see cref="Uts46Errors.None"/> when the result is valid.</returns>
    public static Uts46Errors ToAscii(ReadOnlySpan<char> input, Span<char> destination, out int written)
    {
        written = 0;
        if (input.Length > MaxInputLength)
        {
            return Uts46Errors.TooLong;
        }

        Span<int> initial = stackalloc int[256];
        var text = new CodePointBuffer(initial);
        Span<int> labelInitial = stackalloc int[128];
        var label = new CodePointBuffer(labelInitial);
        try
        {
            Uts46Errors errors = Map(input, ref text);
            Nfc.Normalize(ref text);
            ReadOnlySpan<int> all = text.Span;
            bool bidiDomain = IsBidiDomain(all, ref label);

            int start = 0;
            while (true)
            {
                int dot = all[start..].IndexOf('.');
                ReadOnlySpan<int> raw = dot < 0 ? all[start..] : all[start..(start + dot)];
                errors |= ProcessLabel(raw, bidiDomain, ref label, out bool decoded);
                int labelStart = written;
                if (!WriteLabel(decoded ? label.Span : raw, destination, ref written))
                {
                    errors |= Uts46Errors.TooLong;
                }
                else if (decoded && !SameText(destination[labelStart..written], raw))
                {
                    errors |= Uts46Errors.AceNotCanonical;
                }

                if (dot < 0)
                {
                    break;
                }

                if (written >= destination.Length)
                {
                    errors |= Uts46Errors.TooLong;
                    break;
                }

                destination[written++] = '.';
                start += dot + 1;
            }

            return errors;
        }
        finally
        {
            text.Dispose();
            label.Dispose();
        }
    }

    /// <summary>Step 1 (map) of UTS-46 processing, non-transitional.</summary>
    private static Uts46Errors Map(ReadOnlySpan<char> input, ref CodePointBuffer output)
    {
        Uts46Errors errors = Uts46Errors.None;
        for (int i = 0; i < input.Length;)
        {
            int c = input[i];
            if (c < 0x80)
            {
                output.Add(c is >= 'A' and <= 'Z' ? c + 0x20 : c);
                i++;
                continue;
            }

            if (Rune.DecodeFromUtf16(input[i..], out Rune rune, out int consumed) != System.Buffers.OperationStatus.Done)
            {
                // An unpaired surrogate: disallowed (kept as is, so the error stays visible).
                errors |= Uts46Errors.Disallowed;
                output.Add(c);
                i++;
                continue;
            }

            i += consumed;
            c = rune.Value;
            switch (UnicodeTables.GetIdnaStatus(c, out int single, out ReadOnlySpan<char> mapping))
            {
                case UnicodeTables.IdnaStatus.Valid:
                case UnicodeTables.IdnaStatus.Deviation:
                    output.Add(c);
                    break;
                case UnicodeTables.IdnaStatus.Ignored:
                    errors |= Uts46Errors.Ignored;
                    break;
                case UnicodeTables.IdnaStatus.Mapped when single >= 0:
                    output.Add(single);
                    break;
                case UnicodeTables.IdnaStatus.Mapped:
                    for (int j = 0; j < mapping.Length; j++)
                    {
                        if (char.IsHighSurrogate(mapping[j]) && j + 1 < mapping.Length)
                        {
                            output.Add(char.ConvertToUtf32(mapping[j], mapping[j + 1]));
                            j++;
                        }
                        else
                        {
                            output.Add(mapping[j]);
                        }
                    }

                    break;
                default:
                    errors |= Uts46Errors.Disallowed;
                    output.Add(c);
                    break;
            }
        }

        return errors;
    }

    /// <summary>Step 4 (convert/validate) for one label. When the label is an <c>xn--</c> label that decodes,
    /// <paramref name="decoded"/> is set and <paramref name="label"/> holds the decoded code points.</summary>
    private static Uts46Errors ProcessLabel(ReadOnlySpan<int> raw, bool bidiDomain, ref CodePointBuffer label, out bool decoded)
    {
        decoded = false;
        if (!StartsWithAcePrefix(raw))
        {
            // Already mapped and normalised as part of the whole string: V1 holds.
            return Validate(raw, bidiDomain, checkStatus: false);
        }

        switch (DecodeAceLabel(raw, ref label))
        {
            case AceDecode.NonAscii:
            case AceDecode.Invalid:
                return Uts46Errors.Punycode;
        }

        decoded = true;
        Uts46Errors errors = Uts46Errors.None;
        if (label.Length == 0 || !label.Span.ContainsAnyExceptInRange(0, 0x7F))
        {
            errors |= Uts46Errors.Punycode;
        }

        if (!Nfc.IsNormalized(label.Span))
        {
            errors |= Uts46Errors.NotNormalized;
        }

        return errors | Validate(label.Span, bidiDomain, checkStatus: true);
    }

    /// <summary>The validity criteria of UTS-46 §4.1 (non-transitional, CheckHyphens off) except V1.</summary>
    private static Uts46Errors Validate(ReadOnlySpan<int> label, bool bidiDomain, bool checkStatus)
    {
        Uts46Errors errors = Uts46Errors.None;
        if (label.IsEmpty)
        {
            return errors;
        }

        if (StartsWithAcePrefix(label))
        {
            errors |= Uts46Errors.AcePrefix;
        }

        if (label.Contains('.'))
        {
            errors |= Uts46Errors.FullStop;
        }

        if (label[0] >= 0x300 && UnicodeTables.IsMark(label[0]))
        {
            errors |= Uts46Errors.LeadingMark;
        }

        bool hasJoiner = false;
        foreach (int c in label)
        {
            if (c < 0x80)
            {
                continue;
            }

            hasJoiner |= c is 0x200C or 0x200D;
            if (checkStatus || c is (>= 0xD800 and <= 0xDFFF))
            {
                UnicodeTables.IdnaStatus status = c is >= 0xD800 and <= 0xDFFF
                    ? UnicodeTables.IdnaStatus.Disallowed
                    : UnicodeTables.GetIdnaStatus(c, out _, out _);
                if (status is not (UnicodeTables.IdnaStatus.Valid or UnicodeTables.IdnaStatus.Deviation))
                {
                    errors |= Uts46Errors.InvalidCodePoint;
                }
            }
        }

        if (hasJoiner && !SatisfiesContextJ(label))
        {
            errors |= Uts46Errors.ContextJ;
        }

        if (bidiDomain && !SatisfiesBidiRule(label))
        {
            errors |= Uts46Errors.Bidi;
        }

        return errors;
    }

    /// <summary>RFC 5892 Appendix A.1 (ZWNJ) and A.2 (ZWJ).</summary>
    private static bool SatisfiesContextJ(ReadOnlySpan<int> label)
    {
        for (int i = 0; i < label.Length; i++)
        {
            int c = label[i];
            if (c is not (0x200C or 0x200D))
            {
                continue;
            }

            // Both rules: true when the code point before is a virama (Canonical_Combining_Class 9).
            if (i > 0 && UnicodeTables.GetCombiningClass(label[i - 1]) == 9)
            {
                continue;
            }

            if (c == 0x200D)
            {
                return false;
            }

            // A.1: (Joining_Type:{L,D})(Joining_Type:T)* ZWNJ (Joining_Type:T)*(Joining_Type:{R,D}).
            if (!HasJoiningContext(label, i, -1, JoiningType.L) || !HasJoiningContext(label, i, +1, JoiningType.R))
            {
                return false;
            }
        }

        return true;
    }

    private static bool HasJoiningContext(ReadOnlySpan<int> label, int index, int step, JoiningType side)
    {
        for (int j = index + step; j >= 0 && j < label.Length; j += step)
        {
            JoiningType type = UnicodeTables.GetJoiningType(label[j]);
            if (type == JoiningType.T)
            {
                continue;
            }

            return type == side || type == JoiningType.D;
        }

        return false;
    }

    /// <summary>A Bidi domain name contains at least one code point with Bidi_Class R, AL or AN (RFC 5893 §1.4),
    /// in any label, after <c>xn--</c> labels are decoded.</summary>
    private static bool IsBidiDomain(ReadOnlySpan<int> text, ref CodePointBuffer scratch)
    {
        int start = 0;
        while (true)
        {
            int dot = text[start..].IndexOf('.');
            ReadOnlySpan<int> raw = dot < 0 ? text[start..] : text[start..(start + dot)];
            if (StartsWithAcePrefix(raw))
            {
                if (DecodeAceLabel(raw, ref scratch) == AceDecode.Ok && HasRtl(scratch.Span))
                {
                    return true;
                }
            }
            else if (HasRtl(raw))
            {
                return true;
            }

            if (dot < 0)
            {
                return false;
            }

            start += dot + 1;
        }
    }

    private static bool HasRtl(ReadOnlySpan<int> label)
    {
        foreach (int c in label)
        {
            if (c >= 0x80 && GetBidi(c) is BidiClass.R or BidiClass.AL or BidiClass.AN)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>RFC 5893 §2, conditions 1–6.</summary>
    private static bool SatisfiesBidiRule(ReadOnlySpan<int> label)
    {
        BidiClass first = GetBidi(label[0]);
        if (first is BidiClass.R or BidiClass.AL)
        {
            bool hasEn = false;
            bool hasAn = false;
            foreach (int c in label)
            {
                switch (GetBidi(c))
                {
                    case BidiClass.R or BidiClass.AL or BidiClass.ES or BidiClass.CS or BidiClass.ET or BidiClass.ON
                        or BidiClass.BN or BidiClass.NSM:
                        break;
                    case BidiClass.EN:
                        hasEn = true;
                        break;
                    case BidiClass.AN:
                        hasAn = true;
                        break;
                    default:
                        return false;
                }
            }

            return !(hasEn && hasAn) && EndsWith(label, BidiClass.R, BidiClass.AL, BidiClass.EN, BidiClass.AN);
        }

        if (first != BidiClass.L)
        {
            return false;
        }

        foreach (int c in label)
        {
            if (GetBidi(c) is not (BidiClass.L or BidiClass.EN or BidiClass.ES or BidiClass.CS or BidiClass.ET
                or BidiClass.ON or BidiClass.BN or BidiClass.NSM))
            {
                return false;
            }
        }

        return EndsWith(label, BidiClass.L, BidiClass.EN, BidiClass.L, BidiClass.EN);
    }

    /// <summary>Whether the last code point that is not NSM has one of the given classes.</summary>
    private static bool EndsWith(ReadOnlySpan<int> label, BidiClass a, BidiClass b, BidiClass c, BidiClass d)
    {
        for (int i = label.Length - 1; i >= 0; i--)
        {
            BidiClass bc = GetBidi(label[i]);
            if (bc != BidiClass.NSM)
            {
                return bc == a || bc == b || bc == c || bc == d;
            }
        }

        return false;
    }

    private static BidiClass GetBidi(int c) => c switch
    {
        >= 'a' and <= 'z' => BidiClass.L,
        >= '0' and <= '9' => BidiClass.EN,
        '-' => BidiClass.ES,
        _ => UnicodeTables.GetBidiClass(c),
    };

    private enum AceDecode
    {
        Ok,
        NonAscii,
        Invalid,
    }

    /// <summary>Decodes an <c>xn--</c> label (given as code points) with Punycode.</summary>
    private static AceDecode DecodeAceLabel(ReadOnlySpan<int> raw, ref CodePointBuffer output)
    {
        if (raw.ContainsAnyExceptInRange(0, 0x7F))
        {
            return AceDecode.NonAscii;
        }

        char[]? rented = null;
        Span<char> ascii = raw.Length <= 256 ? stackalloc char[256] : (rented = System.Buffers.ArrayPool<char>.Shared.Rent(raw.Length));
        try
        {
            for (int i = AcePrefix.Length; i < raw.Length; i++)
            {
                ascii[i - AcePrefix.Length] = (char)raw[i];
            }

            return Punycode.TryDecode(ascii[..(raw.Length - AcePrefix.Length)], ref output) ? AceDecode.Ok : AceDecode.Invalid;
        }
        finally
        {
            if (rented is not null)
            {
                System.Buffers.ArrayPool<char>.Shared.Return(rented);
            }
        }
    }

    private static bool SameText(ReadOnlySpan<char> text, ReadOnlySpan<int> codePoints)
    {
        if (text.Length != codePoints.Length)
        {
            return false;
        }

        for (int i = 0; i < text.Length; i++)
        {
            if (text[i] != codePoints[i])
            {
                return false;
            }
        }

        return true;
    }

    private static bool StartsWithAcePrefix(ReadOnlySpan<int> label) =>
        label.Length >= 4 && label[0] == 'x' && label[1] == 'n' && label[2] == '-' && label[3] == '-';

    /// <summary>Step 5 of ToASCII: ASCII labels as they are, others as <c>xn--</c> + Punycode.</summary>
    private static bool WriteLabel(ReadOnlySpan<int> label, Span<char> destination, ref int written)
    {
        if (!label.ContainsAnyExceptInRange(0, 0x7F))
        {
            if (label.Length > destination.Length - written)
            {
                return false;
            }

            foreach (int c in label)
            {
                destination[written++] = (char)c;
            }

            return true;
        }

        if (destination.Length - written < AcePrefix.Length)
        {
            return false;
        }

        AcePrefix.CopyTo(destination[written..]);
        written += AcePrefix.Length;
        if (!Punycode.TryEncode(label, destination[written..], out int n))
        {
            return false;
        }

        written += n;
        return true;
    }
}
