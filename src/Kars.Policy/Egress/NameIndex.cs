using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Text;

namespace Kars.Policy.Egress;

/// <summary>
/// One open-addressing table from 64-bit suffix fingerprints to name records, with a cache-resident blocked Bloom
/// prefilter in front of it.
/// </summary>
/// <remarks>
/// <para>A lookup walks the target's labels once, right to left; each label is hashed a machine word (four characters)
/// at a time and folded into a running suffix hash, so <c>com</c>, <c>example.com</c> and <c>www.example.com</c> each get
/// a fingerprint without rehashing. Each fingerprint is checked against the Bloom filter (one cache line, ~12 bits per
/// name, fits in L2) and only then probed in the table (8-byte slots: 32-bit tag, record offset).</para>
/// <para>A tag hit is always verified against the name bytes stored in the record: a hash alone is never trusted.
/// Records keep the flags, the blocklist source, the rule reference and the name together, so a verified hit costs
/// one more cache line.</para>
/// <para>Immutable after <see cref="Builder.Build"/>; safe for concurrent readers.</para>
/// </remarks>
internal sealed class NameIndex
{
    private const int InlineLength = 16;
    private const byte FlagBlocked = 1;
    private const byte FlagException = 2;

    private const ulong Seed = 0x9E3779B97F4A7C15UL;
    private const ulong P1 = 0xC2B2AE3D27D4EB4FUL;
    private const ulong P2 = 0x165667B19E3779F9UL;
    private const ulong P3 = 0xD6E8FEB86659FD93UL;

    private readonly Slot[] _slots;
    private readonly int _mask;
    private readonly ulong[] _bloom;
    private readonly int _bloomBlockMask;
    private readonly byte[] _names;
    private readonly RuleRef[] _ruleRefs;

    private NameIndex(Slot[] slots, ulong[] bloom, byte[] names, RuleRef[] ruleRefs, int count)
    {
        _slots = slots;
        _mask = slots.Length - 1;
        _bloom = bloom;
        _bloomBlockMask = (bloom.Length / 8) - 1;
        _names = names;
        _ruleRefs = ruleRefs;
        Count = count;
    }

    /// <summary>Gets the number of names.</summary>
    public int Count { get; }

    /// <summary>Gets the exclusive upper bound of the handles <see cref="Find"/> returns (for per-handle side tables).</summary>
    public int HandleCapacity => _slots.Length;

    public static ulong StartHash => Seed;

    /// <summary>
    /// Hashes whole machine words (four characters) right to left, starting at the end of the name. The running value
    /// <paramref name="hash"/> covers the characters from <paramref name="pos"/> to the end; this consumes every whole
    /// word that lies at or after <paramref name="start"/>. A suffix's fingerprint therefore only depends on the suffix's
    /// own characters (the words are aligned to the common end), so one pass serves every suffix.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong ConsumeWords(ulong hash, ref char name, ref int pos, int start)
    {
        int p = pos;
        while (p - 4 >= start)
        {
            p -= 4;
            hash = (hash ^ Unsafe.ReadUnaligned<ulong>(ref Unsafe.As<char, byte>(ref Unsafe.Add(ref name, p)))) * P2;
        }

        pos = p;
        return hash;
    }

    /// <summary>Fingerprint of the suffix starting at <paramref name="start"/>, given the word hash up to <paramref name="pos"/>
    /// (0–3 characters between them are folded in here) and the suffix length.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong SuffixFingerprint(ulong hash, ref char name, int pos, int start, int length)
    {
        ref byte b = ref Unsafe.As<char, byte>(ref Unsafe.Add(ref name, start));
        ulong partial = (pos - start) switch
        {
            0 => 0UL,
            1 => Unsafe.ReadUnaligned<ushort>(ref b),
            2 => Unsafe.ReadUnaligned<uint>(ref b),
            _ => Unsafe.ReadUnaligned<uint>(ref b) | ((ulong)Unsafe.ReadUnaligned<ushort>(ref Unsafe.Add(ref b, 4)) << 32),
        };
        ulong x = ((hash ^ partial) * P3) ^ (ulong)(uint)length;
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdUL;
        x ^= x >> 33;
        return x;
    }

    /// <summary>Bit i set when <c>name[i] == '.'</c>; names of at most 64 characters.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong DotMask(ReadOnlySpan<char> name)
    {
        ulong mask = 0;
        int i = 0;
        ref ushort r = ref Unsafe.As<char, ushort>(ref MemoryMarshal.GetReference(name));
        if (Vector128.IsHardwareAccelerated)
        {
            var dots = Vector128.Create((ushort)'.');
            for (; i + 8 <= name.Length; i += 8)
            {
                mask |= (ulong)Vector128.Equals(Vector128.LoadUnsafe(ref r, (nuint)i), dots).ExtractMostSignificantBits() << i;
            }
        }

        for (; i < name.Length; i++)
        {
            mask |= (name[i] == '.' ? 1UL : 0UL) << i;
        }

        return mask;
    }

    /// <summary>Fingerprint of a whole name, computed exactly as a lookup does for the suffix that starts at 0.</summary>
    public static ulong FingerprintOf(ReadOnlySpan<char> name)
    {
        ref char first = ref MemoryMarshal.GetReference(name);
        int pos = name.Length;
        ulong hash = ConsumeWords(Seed, ref first, ref pos, 0);
        return SuffixFingerprint(hash, ref first, pos, 0, name.Length);
    }

    /// <summary>Finds the record for exactly <paramref name="name"/>, given its fingerprint; -1 when absent.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Find(ulong fingerprint, ReadOnlySpan<char> name)
    {
        // Bloom: one 64-byte block, three bits.
        ref ulong block = ref _bloom[((int)(fingerprint >> 40) & _bloomBlockMask) << 3];
        uint b1 = (uint)fingerprint & 511, b2 = (uint)(fingerprint >> 9) & 511, b3 = (uint)(fingerprint >> 18) & 511;
        if ((Unsafe.Add(ref block, (int)(b1 >> 6)) & (1UL << (int)b1)) == 0
            || (Unsafe.Add(ref block, (int)(b2 >> 6)) & (1UL << (int)b2)) == 0
            || (Unsafe.Add(ref block, (int)(b3 >> 6)) & (1UL << (int)b3)) == 0)
        {
            return -1;
        }

        return Probe(fingerprint, name);
    }

    /// <summary>The Bloom filter's answer alone, without a branch per bit (so several suffixes' checks overlap in the
    /// pipeline): 1 when the name may be present, 0 when it is certainly absent.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint MayContain(ulong fingerprint)
    {
        ref ulong block = ref _bloom[((int)(fingerprint >> 40) & _bloomBlockMask) << 3];
        uint b1 = (uint)fingerprint & 511, b2 = (uint)(fingerprint >> 9) & 511, b3 = (uint)(fingerprint >> 18) & 511;
        ulong all = (Unsafe.Add(ref block, (int)(b1 >> 6)) >> (int)(b1 & 63))
            & (Unsafe.Add(ref block, (int)(b2 >> 6)) >> (int)(b2 & 63))
            & (Unsafe.Add(ref block, (int)(b3 >> 6)) >> (int)(b3 & 63));
        return (uint)all & 1;
    }

    /// <summary>Looks the name up in the table (after a positive <see cref="MayContain"/>); -1 when absent.</summary>
    public int Probe(ulong fingerprint, ReadOnlySpan<char> name)
    {
        Slot[] slots = _slots;
        uint tag = (uint)fingerprint | 1;
        int i = (int)(fingerprint >> 32) & _mask;
        while (true)
        {
            ref readonly Slot slot = ref slots[i];
            if (slot.Tag == 0)
            {
                return -1;
            }

            if (slot.Tag == tag && slot.Length == name.Length && NameEquals(slot, name))
            {
                return i;
            }

            i = (i + 1) & _mask;
        }
    }

    /// <summary>Verifies the candidate: the first <see cref="InlineLength"/> characters against the slot, the rest
    /// against the name blob. Never trusts the fingerprint alone.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool NameEquals(in Slot slot, ReadOnlySpan<char> name)
    {
        ReadOnlySpan<byte> inline = slot.Inline;
        if (name.Length <= InlineLength)
        {
            return Ascii.Equals(inline[..name.Length], name);
        }

        return Ascii.Equals(inline, name[..InlineLength])
            && Ascii.Equals(_names.AsSpan(slot.NameStart + InlineLength, name.Length - InlineLength), name[InlineLength..]);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool IsBlocked(int handle) => (_slots[handle].Flags & FlagBlocked) != 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool IsException(int handle) => (_slots[handle].Flags & FlagException) != 0;

    public int BlockSource(int handle) => _slots[handle].BlockSource;

    /// <summary>A stable index for per-name side tables, below <see cref="HandleCapacity"/>.</summary>
    public int Ordinal(int handle) => handle;

    /// <summary>The rule reference of a name; <see cref="RuleRef.None"/> when it has no allow rule or approval.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref readonly RuleRef Rules(int handle)
    {
        int r = _slots[handle].RuleRef;
        return ref r < 0 ? ref RuleRef.None : ref _ruleRefs[r];
    }

    public string NameOf(int handle) => Encoding.ASCII.GetString(_names, _slots[handle].NameStart, _slots[handle].Length);

    /// <summary>The allow rules and approvals that name one DNS name.</summary>
    internal struct RuleRef
    {
        public static readonly RuleRef None = new() { AllowExact = -1, AllowWildcard = -1, AllowSubtree = -1, ApprovalHead = -1 };

        /// <summary>Allow rule for exactly this name, or -1.</summary>
        public int AllowExact;

        /// <summary>Allow rule <c>*.name</c> (strict subdomains), or -1.</summary>
        public int AllowWildcard;

        /// <summary>Allow rule for this name and its subdomains (kars documents), or -1.</summary>
        public int AllowSubtree;

        /// <summary>First approval host naming this name, or -1.</summary>
        public int ApprovalHead;
    }

    /// <summary>A table slot (32 bytes, two to a cache line): tag, flags, rule reference and the first 16 characters of
    /// the name, so verifying and deciding a short name touches one cache line.</summary>
    private struct Slot
    {
        public uint Tag;
        public int NameStart;
        public byte Flags;
        public byte Length;
        public ushort BlockSource;
        public int RuleRef;
        public InlineName Inline;
    }

    /// <summary>The first characters of a name, ASCII.</summary>
    [InlineArray(InlineLength)]
    private struct InlineName
    {
        private byte _first;
    }

    /// <summary>Accumulates names, then builds the immutable index.</summary>
    internal sealed class Builder
    {
        private readonly List<BuildEntry> _entries;
        private readonly char[] _chars = new char[256];
        private ulong[] _fingerprints;
        private int[] _slotEntries;
        private byte[] _names = new byte[1024];
        private int _namesLength;

        public Builder(int expectedNames)
        {
            int capacity = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(16, expectedNames * 2));
            _fingerprints = new ulong[capacity];
            _slotEntries = new int[capacity];
            _entries = new List<BuildEntry>(Math.Max(16, expectedNames));
        }

        public int Count => _entries.Count;

        /// <summary>Returns the index of the entry for <paramref name="name"/> (canonical ASCII), adding it when new.</summary>
        public int GetOrAdd(ReadOnlySpan<byte> name)
        {
            if (_entries.Count * 2 >= _fingerprints.Length)
            {
                Grow();
            }

            int length = Encoding.ASCII.GetChars(name, _chars);
            ulong rawFingerprint = FingerprintOf(_chars.AsSpan(0, length));
            ulong fingerprint = rawFingerprint | 1;
            int mask = _fingerprints.Length - 1;
            int i = (int)(fingerprint >> 32) & mask;
            while (_fingerprints[i] != 0)
            {
                if (_fingerprints[i] == fingerprint)
                {
                    var existing = _entries[_slotEntries[i]];
                    if (_names.AsSpan(existing.NameStart, existing.NameLength).SequenceEqual(name))
                    {
                        return _slotEntries[i];
                    }
                }

                i = (i + 1) & mask;
            }

            if (_namesLength + name.Length > _names.Length)
            {
                Array.Resize(ref _names, Math.Max(_names.Length * 2, _namesLength + name.Length));
            }

            name.CopyTo(_names.AsSpan(_namesLength));
            int index = _entries.Count;
            _entries.Add(new BuildEntry
            {
                Fingerprint = rawFingerprint,
                NameStart = _namesLength,
                NameLength = name.Length,
                BlockSource = -1,
                Rules = RuleRef.None,
            });
            _fingerprints[i] = fingerprint;
            _slotEntries[i] = index;
            _namesLength += name.Length;
            return index;
        }

        private void Grow()
        {
            var oldFingerprints = _fingerprints;
            var oldEntries = _slotEntries;
            _fingerprints = new ulong[oldFingerprints.Length * 2];
            _slotEntries = new int[oldFingerprints.Length * 2];
            int mask = _fingerprints.Length - 1;
            for (int s = 0; s < oldFingerprints.Length; s++)
            {
                if (oldFingerprints[s] == 0)
                {
                    continue;
                }

                int i = (int)(oldFingerprints[s] >> 32) & mask;
                while (_fingerprints[i] != 0)
                {
                    i = (i + 1) & mask;
                }

                _fingerprints[i] = oldFingerprints[s];
                _slotEntries[i] = oldEntries[s];
            }
        }

        public int GetOrAdd(string name) => GetOrAdd(Encoding.ASCII.GetBytes(name));

        public ref BuildEntry this[int entry] => ref CollectionsMarshal.AsSpan(_entries)[entry];

        public NameIndex Build()
        {
            int count = _entries.Count;
            var slots = new Slot[(int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(16, count + (count / 2)))];
            int mask = slots.Length - 1;
            int bloomBlocks = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(1, (count * 12 + 511) / 512));
            var bloom = new ulong[bloomBlocks * 8];
            var ruleRefs = new List<RuleRef>();
            for (int e = 0; e < count; e++)
            {
                var entry = _entries[e];
                bool hasRules = entry.Rules.AllowExact >= 0 || entry.Rules.AllowWildcard >= 0 || entry.Rules.AllowSubtree >= 0 || entry.Rules.ApprovalHead >= 0;
                ulong fp = entry.Fingerprint;
                int i = (int)(fp >> 32) & mask;
                while (slots[i].Tag != 0)
                {
                    i = (i + 1) & mask;
                }

                ref Slot slot = ref slots[i];
                slot.Tag = (uint)fp | 1;
                slot.NameStart = entry.NameStart;
                slot.Length = (byte)entry.NameLength;
                slot.Flags = (byte)((entry.BlockSource >= 0 ? FlagBlocked : 0) | (entry.BlockException ? FlagException : 0));
                slot.BlockSource = (ushort)Math.Max(0, entry.BlockSource);
                slot.RuleRef = hasRules ? ruleRefs.Count : -1;
                _names.AsSpan(entry.NameStart, Math.Min(entry.NameLength, InlineLength)).CopyTo(slot.Inline);
                if (hasRules)
                {
                    ruleRefs.Add(entry.Rules);
                }

                int block = ((int)(fp >> 40) & (bloomBlocks - 1)) << 3;
                foreach (uint bit in (ReadOnlySpan<uint>)[(uint)fp & 511, (uint)(fp >> 9) & 511, (uint)(fp >> 18) & 511])
                {
                    bloom[block + (int)(bit >> 6)] |= 1UL << (int)bit;
                }
            }

            Array.Resize(ref _names, _namesLength);
            return new NameIndex(slots, bloom, _names, [.. ruleRefs], count);
        }
    }

    /// <summary>Everything the builder knows about one name.</summary>
    internal struct BuildEntry
    {
        public ulong Fingerprint;
        public int NameStart;
        public int NameLength;
        public int BlockSource;
        public bool BlockException;
        public RuleRef Rules;
    }
}
