using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using System.Text;

namespace Kars.Policy.Egress;

/// <summary>
/// One open-addressing table from 64-bit suffix fingerprints to name records, behind the compiled policy's cache-resident
/// binary fuse filter: the names that can allow, lift a deny or choose a rule (allow rules, blocklist exceptions, approval
/// hosts) and the policy document's own <c>blocklist.domains</c>, every one verified against its characters. The feeds'
/// names, which can only deny, live in <see cref="BlocklistIndex"/>, so this table stays small (a few hundred kilobytes
/// for 10,000 rules) and an allow hit does not leave the cache.
/// </summary>
/// <remarks>
/// <para>A lookup walks the target's labels once, right to left; each label is hashed a machine word (four characters)
/// at a time and folded into a running suffix hash, so <c>com</c>, <c>example.com</c> and <c>www.example.com</c> each get
/// a fingerprint without rehashing. Each fingerprint is checked once against the filter the compiled policy keeps for
/// this table and <see cref="BlocklistIndex"/> together (<see cref="BinaryFuseFilter"/>, about 9 bits per name, stays
/// in L2; its answer says which of the two tables may hold the suffix), and only a suffix that may be present is probed
/// here.</para>
/// <para>The table has 32-byte slots (two to a cache line): a 32-bit tag, flags, blocklist source, rule reference and
/// a name of up to 20 characters (a longer one: its first 16, the rest in a tail blob). A tag hit is always verified
/// against the name's characters: a hash alone is never trusted. The table is sized exactly for the names it holds
/// (load factor about 0.8, any length, position by multiply-shift), not rounded up to a power of two.</para>
/// <para>Immutable after <see cref="Builder.Build"/>; safe for concurrent readers.</para>
/// </remarks>
internal sealed class NameIndex
{
    /// <summary>A name of at most this many characters is held in its slot whole.</summary>
    private const int InlineLength = 20;

    /// <summary>A longer name keeps this many characters in its slot; the last four inline bytes then hold the offset
    /// of the rest in the tail blob.</summary>
    private const int SplitLength = 16;
    private const byte FlagBlocked = 1;
    private const byte FlagException = 2;

    /// <summary>In a slot's rule reference: set when the reference is the name's single allow rule itself (scope in bits
    /// 28–29, rule number in bits 0–27) rather than an index into the rule-reference table.</summary>
    private const int InlineRule = 1 << 30;
    private const int InlineScopeShift = 28;
    private const int InlineRuleMask = (1 << InlineScopeShift) - 1;
    private const int InlineExact = 0;
    private const int InlineWildcard = 1;
    private const int InlineSubtree = 2;

    private const ulong Seed = 0x9E3779B97F4A7C15UL;
    private const ulong P2 = 0x165667B19E3779F9UL;
    private const ulong P3 = 0xD6E8FEB86659FD93UL;

    private readonly Slot[] _slots;
    private readonly byte[] _tails;
    private readonly RuleRef[] _ruleRefs;

    private NameIndex(Slot[] slots, byte[] tails, RuleRef[] ruleRefs, int count, bool hasSingleLabelName)
    {
        _slots = slots;
        _tails = tails;
        _ruleRefs = ruleRefs;
        Count = count;
        HasSingleLabelName = hasSingleLabelName;
    }

    /// <summary>Gets the number of names.</summary>
    public int Count { get; }

    /// <summary>Gets a value indicating whether a name without a dot (a top-level domain in <c>blocklist.domains</c>,
    /// for example) is listed. When none is, a lookup need not check the last label of a longer name on its own.</summary>
    public bool HasSingleLabelName { get; }

    /// <summary>Gets the exclusive upper bound of the handles <see cref="Probe"/> returns (for per-handle side tables).</summary>
    public int HandleCapacity => _slots.Length;

    /// <summary>Gets the bytes the index holds (table, tails, rule references), for the memory figures.</summary>
    public long SizeInBytes => ((long)_slots.Length * Unsafe.SizeOf<Slot>()) + _tails.Length + ((long)_ruleRefs.Length * Unsafe.SizeOf<RuleRef>());

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
        ulong partial;
        int n = pos - start;
        System.Diagnostics.Debug.Assert(n is >= 0 and <= 3, "ConsumeWords leaves 0-3 characters");
        if (BitConverter.IsLittleEndian && start + length >= 4)
        {
            // Without a branch on n (0–3, different for every suffix, so a switch on it mispredicts): read the word of
            // four characters that ends at pos (or the name's first word when pos < 4), shift the n characters from
            // start down to the low bits and mask off the rest. The same value as reading them one by one, on a
            // little-endian machine only: the word is aligned to the whole name here but to the suffix alone when
            // FingerprintOf lists it, and only little-endian order puts the character at start in the same low bits
            // either way (big-endian takes the reads below, which start at start; the JIT drops the dead branch).
            int word = Math.Max(pos - 4, 0);
            ulong w = Unsafe.ReadUnaligned<ulong>(ref Unsafe.As<char, byte>(ref Unsafe.Add(ref name, word)));
            partial = (w >> ((start - word) * 16)) & ((1UL << (n * 16)) - 1);
        }
        else
        {
            ref byte b = ref Unsafe.As<char, byte>(ref Unsafe.Add(ref name, start));
            partial = n switch
            {
                0 => 0UL,
                1 => Unsafe.ReadUnaligned<ushort>(ref b),
                2 => Unsafe.ReadUnaligned<uint>(ref b),
                _ => Unsafe.ReadUnaligned<uint>(ref b) | ((ulong)Unsafe.ReadUnaligned<ushort>(ref Unsafe.Add(ref b, 4)) << 32),
            };
        }

        ulong x = ((hash ^ partial) * P3) ^ (ulong)(uint)length;
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdUL;
        x ^= x >> 33;
        return x;
    }

    /// <summary>One step of a right-to-left walk over the labels of a name of at most 64 characters: where the last label
    /// still in <paramref name="dots"/> (its dot mask, as <see cref="CanonicalDnsName.ScanShortName"/> finds it) starts, with the dot
    /// before that label removed from the mask, so the next step finds the label before it (0: the whole name).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int NextLabelStart(ref ulong dots)
    {
        int start = CanonicalDnsName.LastLabelStart(dots);
        dots &= dots == 0 ? 0 : ~(1UL << (start - 1));
        return start;
    }

    /// <summary>Fingerprint of a whole name, computed exactly as a lookup does for the suffix that starts at 0.</summary>
    public static ulong FingerprintOf(ReadOnlySpan<char> name)
    {
        ref char first = ref MemoryMarshal.GetReference(name);
        int pos = name.Length;
        ulong hash = ConsumeWords(Seed, ref first, ref pos, 0);
        return SuffixFingerprint(hash, ref first, pos, 0, name.Length);
    }

    /// <summary>The record for exactly <paramref name="name"/>, given its fingerprint (a lookup calls it after the compiled
    /// policy's filter said the name may be present); -1 when absent.</summary>
    public int Probe(ulong fingerprint, ReadOnlySpan<char> name)
    {
        Slot[] slots = _slots;
        uint tag = (uint)fingerprint | 1;
        int i = Home(fingerprint, slots.Length);
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

            if (++i == slots.Length)
            {
                i = 0;
            }
        }
    }

    /// <summary>The home slot of a fingerprint: its high 32 bits scaled to the table length (multiply-shift). Shared
    /// with <see cref="BlocklistIndex"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static int Home(ulong fingerprint, int length) => (int)(((fingerprint >> 32) * (ulong)(uint)length) >> 32);

    /// <summary>The slots for <paramref name="names"/> entries at <see cref="Builder.LoadFactor"/> (at least 16), for both
    /// open-addressing tables (this one and <see cref="BlocklistIndex"/>).</summary>
    internal static int SlotsFor(int names) => Math.Max(16, (int)Math.Min(Array.MaxLength, (long)Math.Ceiling(Math.Max(1, names) / Builder.LoadFactor) + 1));

    /// <summary>Verifies the candidate: a name of up to <see cref="InlineLength"/> characters against the slot alone; a
    /// longer one, its first <see cref="SplitLength"/> characters against the slot and the rest against the tail blob.
    /// Never trusts the fingerprint alone.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private bool NameEquals(in Slot slot, ReadOnlySpan<char> name)
    {
        ReadOnlySpan<byte> inline = slot.Inline;
        if (name.Length <= InlineLength)
        {
            return Ascii.Equals(inline[..name.Length], name);
        }

        return Ascii.Equals(inline[..SplitLength], name[..SplitLength])
            && Ascii.Equals(_tails.AsSpan(TailOf(inline), name.Length - SplitLength), name[SplitLength..]);
    }

    /// <summary>The tail offset of a name longer than <see cref="InlineLength"/>, kept in the slot's last inline bytes.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int TailOf(ReadOnlySpan<byte> inline) => System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(inline[SplitLength..]);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool IsBlocked(int handle) => (_slots[handle].Flags & FlagBlocked) != 0;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public bool IsException(int handle) => (_slots[handle].Flags & FlagException) != 0;

    public int BlockSource(int handle) => _slots[handle].BlockSource;

    /// <summary>The allow rules and approvals of a name; <see cref="RuleRef.None"/> when it has none. A name with one allow
    /// rule and no approval (most names) keeps the rule in its slot, so deciding it does not read the rule-reference
    /// table (one dependent memory access fewer on a cold allow).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public RuleRef Rules(int handle)
    {
        int r = _slots[handle].RuleRef;
        if (r < 0)
        {
            return RuleRef.None;
        }

        if ((r & InlineRule) == 0)
        {
            return _ruleRefs[r];
        }

        RuleRef rules = RuleRef.None;
        int rule = r & InlineRuleMask;
        switch ((r >> InlineScopeShift) & 3)
        {
            case InlineExact: rules.AllowExact = rule; break;
            case InlineWildcard: rules.AllowWildcard = rule; break;
            case InlineSubtree: rules.AllowSubtree = rule; break;
            default: throw new InvalidOperationException("A slot's inline rule has no scope 3 (TryInline never writes it).");
        }

        return rules;
    }

    /// <summary>The slot form of a name's rules when it has exactly one allow rule and no approval: the rule number and
    /// its scope in the slot's rule reference (<see cref="InlineRule"/> set); otherwise false.</summary>
    private static bool TryInline(in RuleRef rules, out int encoded)
    {
        encoded = 0;
        if (rules.ApprovalHead >= 0)
        {
            return false;
        }

        int count = (rules.AllowExact >= 0 ? 1 : 0) + (rules.AllowWildcard >= 0 ? 1 : 0) + (rules.AllowSubtree >= 0 ? 1 : 0);
        if (count != 1)
        {
            return false;
        }

        (int rule, int scope) = rules.AllowExact >= 0 ? (rules.AllowExact, InlineExact)
            : rules.AllowWildcard >= 0 ? (rules.AllowWildcard, InlineWildcard)
            : (rules.AllowSubtree, InlineSubtree);
        if (rule > InlineRuleMask)
        {
            return false;
        }

        encoded = InlineRule | (scope << InlineScopeShift) | rule;
        return true;
    }

    public string NameOf(int handle) => NameOf(_slots[handle], _tails);

    private static string NameOf(in Slot slot, byte[] tails)
    {
        int length = slot.Length;
        ReadOnlySpan<byte> inline = slot.Inline;
        return length <= InlineLength
            ? Encoding.ASCII.GetString(inline[..length])
            : string.Concat(Encoding.ASCII.GetString(inline[..SplitLength]), Encoding.ASCII.GetString(tails, TailOf(inline), length - SplitLength));
    }

    /// <summary>The allow rules and approvals that name one DNS name.</summary>
    internal struct RuleRef
    {
        public static RuleRef None => new() { AllowExact = -1, AllowWildcard = -1, AllowSubtree = -1, ApprovalHead = -1 };

        /// <summary>Allow rule for exactly this name, or -1.</summary>
        public int AllowExact;

        /// <summary>Allow rule <c>*.name</c> (strict subdomains), or -1.</summary>
        public int AllowWildcard;

        /// <summary>Allow rule for this name and its subdomains (kars documents), or -1.</summary>
        public int AllowSubtree;

        /// <summary>First approval host naming this name, or -1.</summary>
        public int ApprovalHead;
    }

    /// <summary>A table slot (32 bytes, two to a cache line): tag, flags, rule reference and a name of up to 20
    /// characters whole (a longer one: its first 16 characters and its tail offset), so verifying and deciding a name of
    /// up to 20 characters touches one cache line.</summary>
    private struct Slot
    {
        public uint Tag;
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

    /// <summary>Accumulates names directly into the final table (sized from the expected number of names); the compiled
    /// policy then builds its filter from their fingerprints. Peak memory while building: the table, the names' tails and 8 bytes per slot of
    /// fingerprints, all released after <see cref="Build"/> but the table (the fingerprints go to the compiled policy's
    /// filter through <see cref="Build"/>).</summary>
    internal sealed class Builder
    {
        internal const double LoadFactor = 0.8;

        private readonly char[] _chars = new char[256];
        private readonly List<RuleRef> _ruleRefs = [];
        private Slot[] _slots;
        private ulong[] _fingerprints;
        private byte[] _tails;
        private int _tailsLength;
        private int _count;
        private bool _hasSingleLabelName;
        private bool _built;

        /// <param name="expectedNames">An upper bound of the names (the table grows past it, at a cost).</param>
        /// <param name="expectedTailBytes">An estimate of the characters beyond the 16th over all names longer than 20.</param>
        public Builder(int expectedNames, int expectedTailBytes = 0)
        {
            int length = SlotsFor(expectedNames);
            _slots = new Slot[length];
            _fingerprints = new ulong[length];
            _tails = new byte[Math.Max(16, expectedTailBytes)];
        }

        public int Count => _count;

        /// <summary>Returns the handle of <paramref name="name"/> (canonical ASCII, at most 255 characters), adding it when new.</summary>
        public int GetOrAdd(ReadOnlySpan<byte> name)
        {
            ObjectDisposedException.ThrowIf(_built, this);
            if (_count + 1 > (long)_slots.Length * LoadFactor)
            {
                Grow();
            }

            int length = Encoding.ASCII.GetChars(name, _chars);
            ulong fingerprint = FingerprintOf(_chars.AsSpan(0, length));
            _hasSingleLabelName |= !name.Contains((byte)'.');
            uint tag = (uint)fingerprint | 1;
            Slot[] slots = _slots;
            int i = Home(fingerprint, slots.Length);
            while (slots[i].Tag != 0)
            {
                if (slots[i].Tag == tag && slots[i].Length == name.Length && NameEquals(slots[i], name))
                {
                    return i;
                }

                if (++i == slots.Length)
                {
                    i = 0;
                }
            }

            ref Slot slot = ref slots[i];
            slot.Tag = tag;
            slot.Length = (byte)name.Length;
            slot.RuleRef = -1;
            if (name.Length <= InlineLength)
            {
                name.CopyTo(slot.Inline);
            }
            else
            {
                name[..SplitLength].CopyTo(slot.Inline);
                ReadOnlySpan<byte> tail = name[SplitLength..];
                if (_tailsLength + tail.Length > _tails.Length)
                {
                    Array.Resize(ref _tails, Math.Max(_tails.Length * 2, _tailsLength + tail.Length));
                }

                tail.CopyTo(_tails.AsSpan(_tailsLength));
                System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(((Span<byte>)slot.Inline)[SplitLength..], _tailsLength);
                _tailsLength += tail.Length;
            }

            _fingerprints[i] = fingerprint;
            _count++;
            return i;
        }

        public int GetOrAdd(string name) => GetOrAdd(Encoding.ASCII.GetBytes(name));

        /// <summary>Marks a name blocklisted by <paramref name="source"/>; the first source to list it is kept.</summary>
        public void MarkBlocked(int handle, int source)
        {
            ObjectDisposedException.ThrowIf(_built, this);
            ref Slot slot = ref _slots[handle];
            if ((slot.Flags & FlagBlocked) == 0)
            {
                slot.Flags |= FlagBlocked;
                slot.BlockSource = (ushort)source;
            }
        }

        /// <summary>Marks a name as a blocklist exception.</summary>
        public void MarkException(int handle)
        {
            ObjectDisposedException.ThrowIf(_built, this);
            _slots[handle].Flags |= FlagException;
        }

        /// <summary>The allow rules and approvals of a name, created on first use.</summary>
        public ref RuleRef Rules(int handle)
        {
            ObjectDisposedException.ThrowIf(_built, this);
            ref Slot slot = ref _slots[handle];
            if (slot.RuleRef < 0)
            {
                slot.RuleRef = _ruleRefs.Count;
                _ruleRefs.Add(RuleRef.None);
            }

            return ref CollectionsMarshal.AsSpan(_ruleRefs)[slot.RuleRef];
        }

        /// <param name="fingerprints">The fingerprints of the names, for the filter the compiled policy builds in front of
        /// this table and the blocklist (the index does not keep them).</param>
        public NameIndex Build(out ulong[] fingerprints)
        {
            ObjectDisposedException.ThrowIf(_built, this);
            _built = true;

            // The filter takes the fingerprints of the names: compact them to the front of their array.
            fingerprints = _fingerprints;
            int n = 0;
            for (int i = 0; i < fingerprints.Length; i++)
            {
                if (_slots[i].Tag != 0)
                {
                    fingerprints[n++] = fingerprints[i];
                }
            }

            Array.Resize(ref fingerprints, n);
            _fingerprints = [];
            Array.Resize(ref _tails, _tailsLength);

            // A name with a single allow rule keeps it in its slot; the table keeps the others.
            var kept = new List<RuleRef>();
            foreach (ref Slot slot in _slots.AsSpan())
            {
                if (slot.Tag == 0 || slot.RuleRef < 0)
                {
                    continue;
                }

                RuleRef rules = _ruleRefs[slot.RuleRef];
                if (TryInline(rules, out int encoded))
                {
                    slot.RuleRef = encoded;
                }
                else
                {
                    slot.RuleRef = kept.Count;
                    kept.Add(rules);
                }
            }

            return new NameIndex(_slots, _tails, [.. kept], _count, _hasSingleLabelName);
        }

        private bool NameEquals(in Slot slot, ReadOnlySpan<byte> name)
        {
            ReadOnlySpan<byte> inline = slot.Inline;
            return name.Length <= InlineLength
                ? inline[..name.Length].SequenceEqual(name)
                : inline[..SplitLength].SequenceEqual(name[..SplitLength]) && _tails.AsSpan(TailOf(inline), name.Length - SplitLength).SequenceEqual(name[SplitLength..]);
        }

        private void Grow()
        {
            Slot[] old = _slots;
            ulong[] oldFingerprints = _fingerprints;
            _slots = new Slot[SlotsFor(old.Length * 2)];
            _fingerprints = new ulong[_slots.Length];
            for (int s = 0; s < old.Length; s++)
            {
                if (old[s].Tag == 0)
                {
                    continue;
                }

                int i = Home(oldFingerprints[s], _slots.Length);
                while (_slots[i].Tag != 0)
                {
                    if (++i == _slots.Length)
                    {
                        i = 0;
                    }
                }

                _slots[i] = old[s];
                _fingerprints[i] = oldFingerprints[s];
            }
        }
    }
}
