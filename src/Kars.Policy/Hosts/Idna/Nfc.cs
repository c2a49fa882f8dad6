namespace Kars.Policy.Hosts.Idna;

/// <summary>Unicode Normalization Form C (UAX #15): full canonical decomposition (Hangul included), canonical
/// ordering, then canonical composition with the composition exclusions, from the generated tables. Never calls
/// <see cref="string.Normalize()"/>, so the result is the same in every globalization mode.</summary>
internal static class Nfc
{
    /// <summary>Code points below this are all NFC_Quick_Check=Yes and never combine with what precedes them.</summary>
    private const int QuickCheckLimit = 0x300;

    /// <summary>Normalises <paramref name="text"/> in place (the result is never longer than the decomposition).</summary>
    /// <param name="text">The code points; replaced by their NFC form.</param>
    public static void Normalize(ref CodePointBuffer text)
    {
        Span<int> span = text.Span;
        if (!NeedsWork(span))
        {
            return;
        }

        Span<int> initial = stackalloc int[256];
        var decomposed = new CodePointBuffer(initial);
        try
        {
            foreach (int c in span)
            {
                UnicodeTables.AppendCanonicalDecomposition(c, ref decomposed);
            }

            Span<int> d = decomposed.Span;
            SortCanonically(d);
            int length = Compose(d);
            text.Clear();
            foreach (int c in d[..length])
            {
                text.Add(c);
            }
        }
        finally
        {
            decomposed.Dispose();
        }
    }

    /// <summary>Whether <paramref name="text"/> is in NFC.</summary>
    /// <param name="text">The code points.</param>
    /// <returns><see langword="true"/> when normalising would not change it.</returns>
    public static bool IsNormalized(ReadOnlySpan<int> text)
    {
        if (!NeedsWork(text))
        {
            return true;
        }

        Span<int> initial = stackalloc int[256];
        var copy = new CodePointBuffer(initial);
        try
        {
            foreach (int c in text)
            {
                copy.Add(c);
            }

            Normalize(ref copy);
            return copy.Span.SequenceEqual(text);
        }
        finally
        {
            copy.Dispose();
        }
    }

    /// <summary>Whether normalisation could change <paramref name="text"/>. Code points below U+0300, CJK Unified
    /// Ideographs (U+4E00–U+9FFF) and Hangul syllables (U+AC00–U+D7A3) have no canonical decomposition, combining
    /// class 0, and never combine with what precedes them; a text made only of them is already NFC (a syllable that
    /// could take a trailing jamo needs that jamo, which is not in these ranges). NormalizationTest.txt checks it.</summary>
    private static bool NeedsWork(ReadOnlySpan<int> text)
    {
        foreach (int c in text)
        {
            if (c >= QuickCheckLimit && c is not ((>= 0x4E00 and <= 0x9FFF) or (>= 0xAC00 and <= 0xD7A3)))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Canonical ordering: a stable sort of every run of non-starters by combining class.</summary>
    private static void SortCanonically(Span<int> text)
    {
        for (int i = 1; i < text.Length; i++)
        {
            int c = text[i];
            int cc = UnicodeTables.GetCombiningClass(c);
            if (cc == 0)
            {
                continue;
            }

            int j = i;
            while (j > 0)
            {
                int prev = UnicodeTables.GetCombiningClass(text[j - 1]);
                if (prev <= cc)
                {
                    break;
                }

                text[j] = text[j - 1];
                j--;
            }

            text[j] = c;
        }
    }

    /// <summary>Canonical composition (UAX #15 §1.3), in place. Returns the new length.</summary>
    private static int Compose(Span<int> text)
    {
        if (text.IsEmpty)
        {
            return 0;
        }

        int starterPos = 0;
        int starter = text[0];
        int lastClass = UnicodeTables.GetCombiningClass(starter);
        if (lastClass != 0)
        {
            // No starter yet: nothing can compose until one arrives.
            lastClass = 256;
        }

        int compPos = 1;
        for (int decompPos = 1; decompPos < text.Length; decompPos++)
        {
            int c = text[decompPos];
            int cc = UnicodeTables.GetCombiningClass(c);
            int composite = UnicodeTables.Compose(starter, c);
            if (composite >= 0 && (lastClass < cc || lastClass == 0))
            {
                text[starterPos] = composite;
                starter = composite;
                continue;
            }

            if (cc == 0)
            {
                starterPos = compPos;
                starter = c;
            }

            lastClass = cc;
            text[compPos++] = c;
        }

        return compPos;
    }
}
