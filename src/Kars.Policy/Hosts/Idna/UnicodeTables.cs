namespace Kars.Policy.Hosts.Idna;

/// <summary>Look-ups in the generated Unicode tables (<c>UnicodeTables.*.g.cs</c>, made by <c>eng/UnicodeTables</c>
/// from the Unicode data files of <see cref="UnicodeVersion"/>). Every table is static data (a
/// <see cref="ReadOnlySpan{T}"/> over the assembly image): nothing is allocated or built at start-up. A per-code-point
/// property is a three-stage table look-up (three dependent loads from small tables, identical blocks stored once);
/// only the composition pairs (<see cref="Compose"/>, after a table says the second code point composes at all) and the
/// mark set (<see cref="IsMark"/>, once per label) are binary searches.</summary>
internal static partial class UnicodeTables
{
    /// <summary>The status of a code point in the UTS-46 IDNA mapping table.</summary>
    internal enum IdnaStatus
    {
        /// <summary>Kept as is.</summary>
        Valid = 0,

        /// <summary>Deleted by UTS-46 (this library rejects it instead).</summary>
        Ignored = 1,

        /// <summary>Kept as is by non-transitional processing (ß, ς, ZWNJ, ZWJ).</summary>
        Deviation = 2,

        /// <summary>Never allowed.</summary>
        Disallowed = 3,

        /// <summary>Replaced by the mapping.</summary>
        Mapped = 4,
    }

    private const int SBase = 0xAC00;
    private const int LBase = 0x1100;
    private const int VBase = 0x1161;
    private const int TBase = 0x11A7;
    private const int LCount = 19;
    private const int VCount = 21;
    private const int TCount = 28;
    private const int NCount = VCount * TCount;
    private const int SCount = LCount * NCount;

    /// <summary>Looks up the IDNA status of <paramref name="codePoint"/>. For <see cref="IdnaStatus.Mapped"/> the
    /// mapping is either one code point (<paramref name="single"/> ≥ 0) or UTF-16 text (<paramref name="mapping"/>).</summary>
    /// <param name="codePoint">A scalar value or lone surrogate, 0..10FFFF.</param>
    /// <param name="single">The one mapped code point, or -1.</param>
    /// <param name="mapping">The mapped UTF-16 text when the mapping has more than one code point.</param>
    /// <returns>The status.</returns>
    public static IdnaStatus GetIdnaStatus(int codePoint, out int single, out ReadOnlySpan<char> mapping)
    {
        single = -1;
        mapping = default;
        int value = IdnaAt(codePoint);
        int status = value & 7;
        switch (status)
        {
            case 4:
                mapping = IdnaMappingChars.Slice(value >> 8, (value >> 3) & 31);
                return IdnaStatus.Mapped;
            case 5:
                single = codePoint + (value >> 3);
                return IdnaStatus.Mapped;
            default:
                return (IdnaStatus)status;
        }
    }

    /// <summary>The Canonical_Combining_Class of <paramref name="codePoint"/>.</summary>
    /// <param name="codePoint">The code point.</param>
    /// <returns>The class, 0 for starters.</returns>
    public static int GetCombiningClass(int codePoint) =>
        codePoint < 0x300 ? 0 : CccAt(codePoint);

    /// <summary>The Bidi_Class of <paramref name="codePoint"/>.</summary>
    /// <param name="codePoint">The code point.</param>
    /// <returns>The class.</returns>
    public static BidiClass GetBidiClass(int codePoint) => (BidiClass)BidiAt(codePoint);

    /// <summary>The Joining_Type of <paramref name="codePoint"/>.</summary>
    /// <param name="codePoint">The code point.</param>
    /// <returns>The joining type (<see cref="JoiningType.U"/> when none is listed).</returns>
    public static JoiningType GetJoiningType(int codePoint) => (JoiningType)JoiningAt(codePoint);

    /// <summary>Whether <paramref name="codePoint"/> has General_Category Mark (Mn, Mc or Me).</summary>
    /// <param name="codePoint">The code point.</param>
    /// <returns><see langword="true"/> for a combining mark.</returns>
    public static bool IsMark(int codePoint)
    {
        int i = MarkBoundaries.BinarySearch(codePoint);
        return i >= 0 ? (i & 1) == 0 : (~i & 1) == 1;
    }

    /// <summary>Appends the full canonical decomposition of <paramref name="codePoint"/> (Hangul included).</summary>
    /// <param name="codePoint">The code point.</param>
    /// <param name="buffer">Where to append.</param>
    public static void AppendCanonicalDecomposition(int codePoint, ref CodePointBuffer buffer)
    {
        int s = codePoint - SBase;
        if ((uint)s < SCount)
        {
            buffer.Add(LBase + (s / NCount));
            buffer.Add(VBase + (s % NCount / TCount));
            int t = s % TCount;
            if (t != 0)
            {
                buffer.Add(TBase + t);
            }

            return;
        }

        int slot = codePoint < 0xC0 ? 0 : DecompositionAt(codePoint);
        if (slot == 0)
        {
            buffer.Add(codePoint);
            return;
        }

        int index = DecompositionIndex[slot - 1];
        foreach (int c in DecompositionData.Slice(index >> 4, index & 15))
        {
            buffer.Add(c);
        }
    }

    /// <summary>The primary composite of <paramref name="first"/> and <paramref name="second"/>, or -1.</summary>
    /// <param name="first">The starter.</param>
    /// <param name="second">The following code point.</param>
    /// <returns>The composite, or -1 when the pair does not compose.</returns>
    public static int Compose(int first, int second)
    {
        int l = first - LBase;
        if ((uint)l < LCount)
        {
            int v = second - VBase;
            return (uint)v < VCount ? SBase + (((l * VCount) + v) * TCount) : -1;
        }

        int s = first - SBase;
        if ((uint)s < SCount && s % TCount == 0)
        {
            int t = second - TBase;
            return t > 0 && t < TCount ? first + t : -1;
        }

        if (CompositionSecondAt(second) == 0)
        {
            return -1;
        }

        int i = CompositionKeys.BinarySearch(((long)first << 21) | (uint)second);
        return i >= 0 ? CompositionValues[i] : -1;
    }
}
