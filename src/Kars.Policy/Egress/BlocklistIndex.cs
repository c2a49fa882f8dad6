using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Kars.Policy.Egress;

/// <summary>
/// The blocklist feeds' names as 64-bit suffix fingerprints (8 bytes a name): a membership test that can only ever deny.
/// The compiled policy's binary fuse filter, shared with <see cref="NameIndex"/>, sits in front of it.
/// </summary>
/// <remarks>
/// <para>A feed entry is stored as the fingerprint <see cref="NameIndex"/> computes for the same characters in its
/// suffix walk (with bit 0 forced to 1, so 0 marks an empty slot), in an open-addressing table sized for the entries
/// (load about 0.8, position by multiply-shift of the high 32 bits). A lookup compares the 63 stored bits and nothing
/// else: the characters are not kept. A different name with the same fingerprint is therefore treated as blocklisted.
/// That error is one-sided by construction: this index is consulted only to deny, never to allow, to lift a deny or to
/// choose a rule, so a collision can turn an allow into a deny (fail closed) and never the reverse. Allow rules,
/// blocklist exceptions and approvals stay in <see cref="NameIndex"/>, verified against the name's characters.</para>
/// <para>The fingerprint is a fixed, seeded function of the name's characters (no per-process randomness), so the same
/// feed and the same name give the same answer on every machine, including the rare false deny.</para>
/// <para>Each slot is 16 bytes: the key and the slot's cached rule text (<c>blocklist &lt;feed&gt;: &lt;name&gt;</c>,
/// built from the matched suffix of the target the first time the slot is hit), so a blocklist hit reads one cache line
/// after the filter; the source of each slot (4 bytes) is read only to build the text. For 330,000 entries that is about
/// 8 MB (and about 370 KB of the shared filter), against about 19 MB for 32-byte slots with inline text, a tail blob and a
/// separate rule-text array before.</para>
/// <para>Immutable after <see cref="Builder.Build"/> apart from the rule-text cache (written with
/// <see cref="Volatile"/>; two threads building the same text is harmless); safe for concurrent readers.</para>
/// </remarks>
internal sealed class BlocklistIndex
{
    private readonly Entry[] _entries;
    private readonly int[] _sources;

    private BlocklistIndex(ulong[] keys, int[] sources, int count)
    {
        _entries = new Entry[keys.Length];
        for (int i = 0; i < keys.Length; i++)
        {
            _entries[i].Key = keys[i];
        }

        _sources = sources;
        Count = count;
    }

    /// <summary>Gets the number of distinct fingerprints (distinct names, barring a 63-bit collision among them).</summary>
    public int Count { get; }

    /// <summary>Gets the bytes the index holds (table, sources, rule-text references), for the memory figures.</summary>
    public long SizeInBytes => (long)_entries.Length * (Unsafe.SizeOf<Entry>() + sizeof(int));

    /// <summary>The stored form of a fingerprint: bit 0 set, so 0 marks an empty slot. Also the key of the compiled
    /// policy's filter, for this table and the name index alike.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Key(ulong fingerprint) => fingerprint | 1;

    /// <summary>Copies the stored keys (<see cref="Key"/> of each listed fingerprint) to the front of
    /// <paramref name="destination"/>, for the filter the compiled policy builds in front of this table.</summary>
    /// <returns>How many keys were copied (<see cref="Count"/>).</returns>
    public int CopyKeysTo(Span<ulong> destination)
    {
        int n = 0;
        foreach (ref readonly Entry entry in _entries.AsSpan())
        {
            if (entry.Key != 0)
            {
                destination[n++] = entry.Key;
            }
        }

        return n;
    }

    /// <summary>The slot of a listed fingerprint (after the compiled policy's filter said it may be listed), or -1.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Probe(ulong fingerprint)
    {
        ulong key = Key(fingerprint);
        Entry[] entries = _entries;
        int i = NameIndex.Home(key, entries.Length);
        ref Entry first = ref MemoryMarshal.GetArrayDataReference(entries);
        while (true)
        {
            ulong k = Unsafe.Add(ref first, i).Key;
            if (k == key)
            {
                return i;
            }

            if (k == 0)
            {
                return -1;
            }

            if (++i == entries.Length)
            {
                i = 0;
            }
        }
    }

    /// <summary>Whether a name is listed: the fingerprint lookup alone, as the suffix walk does it.</summary>
    public bool Contains(ReadOnlySpan<char> name)
    {
        return Probe(NameIndex.FingerprintOf(name)) >= 0;
    }

    /// <summary>The index of the source (in the compiled policy's source names) that listed a slot first.</summary>
    public int SourceOf(int slot) => _sources[slot];

    /// <summary>The rule text of a hit, <c>"{source}: {matched}"</c>, built on the first hit of the slot and cached.</summary>
    /// <param name="slot">The slot <see cref="Probe"/> returned.</param>
    /// <param name="matched">The suffix of the target whose fingerprint matched (the listed name).</param>
    /// <param name="sourceNames">The source names, indexed by <see cref="SourceOf"/>.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public string Text(int slot, ReadOnlySpan<char> matched, string[] sourceNames) =>
        Volatile.Read(ref _entries[slot].Text) ?? BuildText(slot, matched, sourceNames);

    [MethodImpl(MethodImplOptions.NoInlining)]
    private string BuildText(int slot, ReadOnlySpan<char> matched, string[] sourceNames)
    {
        string text = string.Concat(sourceNames[_sources[slot]], ": ", matched);
        Volatile.Write(ref _entries[slot].Text, text);
        return text;
    }

    /// <summary>A table slot: the stored fingerprint and, beside it, the cached rule text, so a hit reads one cache line
    /// after the filter.</summary>
    private struct Entry
    {
        public ulong Key;
        public string? Text;
    }

    /// <summary>Adds fingerprints into the final table (sized from the expected number of names; grows past it).</summary>
    internal sealed class Builder
    {
        private ulong[] _keys;
        private int[] _sources;
        private int _count;
        private bool _built;

        /// <param name="expectedNames">An upper bound of the names (the table grows past it, at a cost).</param>
        public Builder(int expectedNames)
        {
            int length = NameIndex.SlotsFor(expectedNames);
            _keys = new ulong[length];
            _sources = new int[length];
        }

        public int Count => _count;

        /// <summary>Lists a name by its fingerprint (<see cref="NameIndex.FingerprintOf"/>); the first source to list it
        /// is kept. Returns whether the fingerprint was new.</summary>
        public bool Add(ulong fingerprint, int source)
        {
            ObjectDisposedException.ThrowIf(_built, this);
            if (_count + 1 > (long)_keys.Length * NameIndex.Builder.LoadFactor)
            {
                Grow();
            }

            ulong key = Key(fingerprint);
            int i = NameIndex.Home(key, _keys.Length);
            while (_keys[i] != 0)
            {
                if (_keys[i] == key)
                {
                    return false;
                }

                if (++i == _keys.Length)
                {
                    i = 0;
                }
            }

            _keys[i] = key;
            _sources[i] = source;
            _count++;
            return true;
        }

        public bool Add(ReadOnlySpan<char> name, int source) => Add(NameIndex.FingerprintOf(name), source);

        public BlocklistIndex Build()
        {
            ObjectDisposedException.ThrowIf(_built, this);
            _built = true;
            return new BlocklistIndex(_keys, _sources, _count);
        }

        private void Grow()
        {
            ulong[] oldKeys = _keys;
            int[] oldSources = _sources;
            _keys = new ulong[NameIndex.SlotsFor(oldKeys.Length * 2)];
            _sources = new int[_keys.Length];
            for (int s = 0; s < oldKeys.Length; s++)
            {
                ulong key = oldKeys[s];
                if (key == 0)
                {
                    continue;
                }

                int i = NameIndex.Home(key, _keys.Length);
                while (_keys[i] != 0)
                {
                    if (++i == _keys.Length)
                    {
                        i = 0;
                    }
                }

                _keys[i] = key;
                _sources[i] = oldSources[s];
            }
        }
    }
}
