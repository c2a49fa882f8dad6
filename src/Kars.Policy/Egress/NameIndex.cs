using System.Numerics;
using System.Runtime.CompilerServices;
using System.Text;

namespace Kars.Policy.Egress;

/// <summary>
/// One open-addressing table from 64-bit suffix fingerprints to name entries. A lookup hashes the target's characters
/// once, right to left, and probes the table at every label boundary (<c>com</c>, <c>example.com</c>,
/// <c>www.example.com</c>). A fingerprint hit is always verified against the stored name: a hash alone is never trusted.
/// Immutable after <see cref="Builder.Build"/>; safe for concurrent readers.
/// </summary>
internal sealed class NameIndex
{
    private const ulong FnvOffset = 14695981039346656037UL;
    private const ulong FnvPrime = 1099511628211UL;

    private readonly Slot[] _slots;
    private readonly int _mask;
    private readonly byte[] _names;
    private readonly Entry[] _entries;

    private NameIndex(Slot[] slots, byte[] names, Entry[] entries)
    {
        _slots = slots;
        _mask = slots.Length - 1;
        _names = names;
        _entries = entries;
    }

    public int Count => _entries.Length;

    public ReadOnlySpan<Entry> Entries => _entries;

    public string NameOf(int entry) => Encoding.ASCII.GetString(_names, _entries[entry].NameStart, _entries[entry].NameLength);

    /// <summary>Advances the running right-to-left hash by one character.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Step(ulong hash, uint c) => (hash ^ c) * FnvPrime;

    public static ulong Start => FnvOffset;

    /// <summary>Turns a running hash into a fingerprint (never 0, which marks an empty slot).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ulong Finish(ulong hash)
    {
        hash ^= hash >> 33;
        hash *= 0xff51afd7ed558ccdUL;
        hash ^= hash >> 33;
        return hash | 1UL;
    }

    /// <summary>Finds the entry for exactly <paramref name="name"/>, given its fingerprint; -1 when absent.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public int Find(ulong fingerprint, ReadOnlySpan<char> name)
    {
        Slot[] slots = _slots;
        int i = (int)(fingerprint >> 32) & _mask;
        while (true)
        {
            ref Slot slot = ref slots[i];
            if (slot.Fingerprint == 0)
            {
                return -1;
            }

            if (slot.Fingerprint == fingerprint)
            {
                ref Entry entry = ref _entries[slot.Entry];
                if (entry.NameLength == name.Length && Ascii.Equals(_names.AsSpan(entry.NameStart, entry.NameLength), name))
                {
                    return slot.Entry;
                }
            }

            i = (i + 1) & _mask;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public ref readonly Entry Get(int entry) => ref _entries[entry];

    /// <summary>Fingerprint of a whole name (the same value a lookup computes at the name's left end).</summary>
    public static ulong FingerprintOf(ReadOnlySpan<byte> name)
    {
        ulong hash = FnvOffset;
        for (int i = name.Length - 1; i >= 0; i--)
        {
            hash = Step(hash, name[i]);
        }

        return Finish(hash);
    }

    /// <summary>A table slot: fingerprint and entry index (16 bytes, four to a cache line).</summary>
    internal struct Slot
    {
        public ulong Fingerprint;
        public int Entry;
    }

    /// <summary>Everything the policy knows about one name.</summary>
    internal struct Entry
    {
        public int NameStart;
        public int NameLength;

        /// <summary>Index of the blocklist source that lists this name (blocks it and its subdomains), or -1.</summary>
        public int BlockSource;

        /// <summary>Allow rule for exactly this name, or -1.</summary>
        public int AllowExact;

        /// <summary>Allow rule <c>*.name</c> (strict subdomains), or -1.</summary>
        public int AllowWildcard;

        /// <summary>Allow rule for this name and its subdomains (kars documents), or -1.</summary>
        public int AllowSubtree;

        /// <summary>First approval host naming this name, or -1.</summary>
        public int ApprovalHead;

        /// <summary>Whether this exact name is in <c>blocklistExceptions</c>.</summary>
        public bool BlockException;
    }

    /// <summary>Accumulates names, then builds the immutable index.</summary>
    internal sealed class Builder
    {
        private Slot[] _slots;
        private int _mask;
        private byte[] _names = new byte[1024];
        private int _namesLength;
        private readonly List<Entry> _entries;

        public Builder(int expectedNames)
        {
            int capacity = (int)BitOperations.RoundUpToPowerOf2((uint)Math.Max(16, expectedNames * 2));
            _slots = new Slot[capacity];
            _mask = capacity - 1;
            _entries = new List<Entry>(Math.Max(16, expectedNames));
        }

        /// <summary>Returns the index of the entry for <paramref name="name"/> (canonical ASCII), adding it when new.</summary>
        public int GetOrAdd(ReadOnlySpan<byte> name)
        {
            if (_entries.Count * 2 >= _slots.Length)
            {
                Grow();
            }

            ulong fingerprint = FingerprintOf(name);
            int i = (int)(fingerprint >> 32) & _mask;
            while (true)
            {
                ref Slot slot = ref _slots[i];
                if (slot.Fingerprint == 0)
                {
                    break;
                }

                if (slot.Fingerprint == fingerprint)
                {
                    Entry existing = _entries[slot.Entry];
                    if (_names.AsSpan(existing.NameStart, existing.NameLength).SequenceEqual(name))
                    {
                        return slot.Entry;
                    }
                }

                i = (i + 1) & _mask;
            }

            if (_namesLength + name.Length > _names.Length)
            {
                Array.Resize(ref _names, Math.Max(_names.Length * 2, _namesLength + name.Length));
            }

            name.CopyTo(_names.AsSpan(_namesLength));
            _entries.Add(new Entry
            {
                NameStart = _namesLength,
                NameLength = name.Length,
                BlockSource = -1,
                AllowExact = -1,
                AllowWildcard = -1,
                AllowSubtree = -1,
                ApprovalHead = -1,
            });
            _namesLength += name.Length;
            _slots[i] = new Slot { Fingerprint = fingerprint, Entry = _entries.Count - 1 };
            return _entries.Count - 1;
        }

        public int GetOrAdd(string name) => GetOrAdd(Encoding.ASCII.GetBytes(name));

        public Entry Read(int entry) => _entries[entry];

        public void Write(int entry, Entry value) => _entries[entry] = value;

        public NameIndex Build()
        {
            Array.Resize(ref _names, _namesLength);
            return new NameIndex(_slots, _names, [.. _entries]);
        }

        private void Grow()
        {
            var old = _slots;
            _slots = new Slot[old.Length * 2];
            _mask = _slots.Length - 1;
            foreach (var slot in old)
            {
                if (slot.Fingerprint == 0)
                {
                    continue;
                }

                int i = (int)(slot.Fingerprint >> 32) & _mask;
                while (_slots[i].Fingerprint != 0)
                {
                    i = (i + 1) & _mask;
                }

                _slots[i] = slot;
            }
        }
    }
}
