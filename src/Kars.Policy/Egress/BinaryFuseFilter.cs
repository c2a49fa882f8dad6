using System.Numerics;
using System.Runtime.CompilerServices;

namespace Kars.Policy.Egress;

/// <summary>
/// An immutable binary fuse filter with 8-bit cells (Graf and Lemire, "Binary Fuse Filters: Fast and Smaller Than Xor
/// Filters", ACM JEA 2022) over 64-bit keys, each key carrying a 2-bit class: about 9 bits per key. A query returns the
/// key's class (1–3) or 0 when the key is certainly absent, never 0 for a key in the set.
/// </summary>
/// <remarks>
/// <para>The three cells of a key xor to an 8-bit fingerprint of the key xor its class, so one query both filters
/// and tells which of several tables may hold the key (the compiled policy keeps its name index and its blocklist behind
/// one filter: one query per suffix instead of two). An absent key comes back as some class with probability 3/256 and
/// as one given class with probability 1/256; the tables behind the filter decide, so a false positive costs a probe,
/// never a wrong answer.</para>
/// <para>A query reads three bytes, all within a window of a few segments, so for a few hundred thousand keys the whole
/// filter (about 370 KB for 330,000 keys) stays in the L2 cache and a negative answer costs no memory round trip.</para>
/// <para>The keys must already be well-mixed 64-bit hashes (the name index's fingerprints); the filter remixes them with a
/// seed that construction changes until the keys peel, which succeeds on the first or second seed with overwhelming
/// probability. Duplicate keys are allowed and stored once, with the union of their classes.</para>
/// <para>Written for this library from the paper's description; the parameters (segment length, size factor) follow the
/// paper's recommendations for arity 3.</para>
/// </remarks>
internal sealed class BinaryFuseFilter
{
    private const int MaxAttempts = 100;

    private readonly byte[] _fingerprints;
    private readonly uint _tagMask;
    private readonly ulong _seed;
    private readonly uint _segmentLength;
    private readonly uint _segmentLengthMask;
    private readonly uint _segmentCountLength;

    private BinaryFuseFilter(byte[] fingerprints, ulong seed, uint segmentLength, uint segmentCountLength, uint tagMask = 0xFF)
    {
        _fingerprints = fingerprints;
        _tagMask = tagMask;
        _seed = seed;
        _segmentLength = segmentLength;
        _segmentLengthMask = segmentLength - 1;
        _segmentCountLength = segmentCountLength;
    }

    /// <summary>Gets the size of the fingerprint array in bytes.</summary>
    public int SizeInBytes => _fingerprints.Length;

    /// <summary>Builds a filter over the first <paramref name="count"/> keys with their classes (see <see cref="Classes"/>).</summary>
    /// <param name="keyArray">The keys (well-mixed 64-bit hashes), preferably distinct. When a key is listed more than once
    /// the keys are sorted in place (with their classes) and each key is kept once with the union of its classes.</param>
    /// <param name="classArray">Each key's class, 1–3 (bit 0 and bit 1 name two tables).</param>
    /// <param name="count">How many keys to use.</param>
    /// <returns>The filter.</returns>
    public static BinaryFuseFilter Build(ulong[] keyArray, byte[] classArray, int count) => Build(keyArray, classArray, count, MaxAttempts);

    /// <summary>As <see cref="Build(ulong[], byte[], int)"/>, with the number of seeds to try (tests use fewer).</summary>
    internal static BinaryFuseFilter Build(ulong[] keyArray, byte[] classArray, int count, int maxAttempts)
    {
        Span<ulong> keys = keyArray.AsSpan(0, count);
        Span<byte> classes = classArray.AsSpan(0, count);

        // A class outside 1–3 would make its key read as absent (0) or as another class: refuse it.
        byte allClasses = 0;
        foreach (byte keyClass in classes)
        {
            ArgumentOutOfRangeException.ThrowIfZero(keyClass, nameof(classArray));
            ArgumentOutOfRangeException.ThrowIfGreaterThan(keyClass, (byte)3, nameof(classArray));
            allClasses |= keyClass;
        }

        int size = keys.Length;
        uint segmentLength = size == 0 ? 4 : (uint)Math.Min(1 << 18, 1 << (int)Math.Floor((Math.Log(size) / Math.Log(3.33)) + 2.25));
        double sizeFactor = size <= 1 ? 0 : Math.Max(1.125, 0.875 + (0.25 * Math.Log(1_000_000) / Math.Log(size)));
        uint capacity = size <= 1 ? 0 : (uint)Math.Round(size * sizeFactor);
        uint segments = (capacity + segmentLength - 1) / segmentLength;
        uint segmentCount = segments <= 2 ? 1 : segments - 2;
        uint arrayLength = (segmentCount + 2) * segmentLength;
        uint segmentCountLength = segmentCount * segmentLength;

        var fingerprints = new byte[arrayLength];
        if (size == 0)
        {
            return new BinaryFuseFilter(fingerprints, 0, segmentLength, segmentCountLength);
        }

        // Construction state, released when this method returns (9 bytes per slot plus 5 per key). A slot keeps the xor of
        // the indices of its keys, not of their hashes: when one key is left, the index names it, and its hash and class
        // are read again from the key arrays (half the memory of keeping 64-bit hashes and classes per slot).
        var count2 = new byte[arrayLength];
        var xorIndex = new int[arrayLength];
        var alone = new uint[arrayLength];
        var stack = new int[size];
        var stackSlot = new byte[size];
        ulong rng = 0x726B2B9D438B9D4DUL;
        for (int attempt = 0; attempt < maxAttempts; attempt++)
        {
            ulong seed = SplitMix(ref rng);
            var filter = new BinaryFuseFilter(fingerprints, seed, segmentLength, segmentCountLength);
            if (filter.TryPopulate(keys, classes, count2, xorIndex, alone, stack, stackSlot))
            {
                return filter;
            }

            if (attempt == 0)
            {
                // Most failures are a bad seed, but a repeated key never peels (its copies share all three cells): sort
                // once, keep each key once with the union of its classes, then keep trying seeds. Callers pass distinct
                // keys, so the usual load never pays for the sort.
                keys.Sort(classes);
                int unique = 0;
                for (int i = 0; i < keys.Length; i++)
                {
                    if (unique > 0 && keys[i] == keys[unique - 1])
                    {
                        classes[unique - 1] |= classes[i];
                        continue;
                    }

                    keys[unique] = keys[i];
                    classes[unique] = classes[i];
                    unique++;
                }

                keys = keys[..unique];
                classes = classes[..unique];
            }

            Array.Clear(count2);
            Array.Clear(xorIndex);
        }

        // No seed peeled the keys. With well-mixed keys this does not happen, but the seeds are fixed and public, so a
        // feed could be crafted (names whose keys collide under every seed) to get here. Never fail the load for it:
        // answer "may be present, in every class listed" for every key (cells of that value xor to it; the fingerprint
        // is masked off), so every suffix is probed in the tables, which decide as always. Slower, never wrong.
        Array.Fill(fingerprints, allClasses);
        return new BinaryFuseFilter(fingerprints, 0, segmentLength, segmentCountLength, tagMask: 0);
    }

    /// <summary>The class of <paramref name="key"/>: its class (1–3) when it is in the set, 0 when it certainly is not;
    /// an absent key gives a class with probability 3/256. Branch-free, so the queries of successive suffixes can overlap in the
    /// processor (each depends only on its own key).</summary>
    /// <param name="key">The key.</param>
    /// <returns>0–3.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public uint Classes(ulong key)
    {
        ulong hash = Hash(key, _seed);
        uint h0 = (uint)(((hash >> 32) * _segmentCountLength) >> 32);
        uint h1 = h0 + _segmentLength;
        uint h2 = h1 + _segmentLength;
        h1 ^= (uint)(hash >> 18) & _segmentLengthMask;
        h2 ^= (uint)hash & _segmentLengthMask;
        ref byte f = ref System.Runtime.InteropServices.MemoryMarshal.GetArrayDataReference(_fingerprints);
        uint x = (Tag(hash) & _tagMask) ^ Unsafe.Add(ref f, h0) ^ Unsafe.Add(ref f, h1) ^ Unsafe.Add(ref f, h2);

        // x is the class when the fingerprint bits cancel (x < 4), and anything from 4 to 255 otherwise.
        return x & (uint)((int)(x - 4) >> 31);
    }

    /// <summary>The 8-bit fingerprint of a hash. A key's cells xor to its fingerprint xor its class, so for a key in the
    /// set the query's xor leaves the class (1–3); for an absent key all eight bits are random (a fingerprint with its low
    /// two bits fixed left those bits to the classes alone, which are far from uniform, and doubled the rate at which an
    /// absent key matched one class).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint Tag(ulong hash) => (uint)(byte)(hash ^ (hash >> 32));

    /// <summary>The three positions of a hash (0: the segment, 1 and 2: the next two segments, each scrambled).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private uint Position(int which, ulong hash)
    {
        uint h = (uint)(((hash >> 32) * _segmentCountLength) >> 32) + ((uint)which * _segmentLength);
        return which switch
        {
            0 => h,
            1 => h ^ ((uint)(hash >> 18) & _segmentLengthMask),
            _ => h ^ ((uint)hash & _segmentLengthMask),
        };
    }

    /// <summary>Peels the 3-hypergraph of the keys; on success writes the fingerprints.</summary>
    private bool TryPopulate(ReadOnlySpan<ulong> keys, ReadOnlySpan<byte> classes, byte[] count2, int[] xorIndex, uint[] alone, int[] stack, byte[] stackSlot)
    {
        // count2[i]: (number of keys at slot i) << 2 | (xor of which-position indices 0..2), so a slot with one key
        // knows which of the key's three positions it is; xorIndex[i]: the xor of the indices of the keys at slot i, so a
        // slot with one key knows which key it is.
        for (int k = 0; k < keys.Length; k++)
        {
            ulong hash = Hash(keys[k], _seed);
            uint h0 = Position(0, hash), h1 = Position(1, hash), h2 = Position(2, hash);
            count2[h0] += 4;
            xorIndex[h0] ^= k;
            count2[h1] += 4;
            count2[h1] ^= 1;
            xorIndex[h1] ^= k;
            count2[h2] += 4;
            count2[h2] ^= 2;
            xorIndex[h2] ^= k;

            // A byte counter overflows past 63 keys in one slot: retry with another seed.
            if (count2[h0] < 4 || count2[h1] < 4 || count2[h2] < 4)
            {
                return false;
            }
        }

        int queue = 0;
        for (uint i = 0; i < count2.Length; i++)
        {
            alone[queue] = i;
            queue += (count2[i] >> 2) == 1 ? 1 : 0;
        }

        int stackSize = 0;
        Span<uint> positions = stackalloc uint[5];
        while (queue > 0)
        {
            uint index = alone[--queue];
            if ((count2[index] >> 2) != 1)
            {
                continue;
            }

            int key = xorIndex[index];
            ulong hash = Hash(keys[key], _seed);
            int found = count2[index] & 3;
            positions[0] = Position(0, hash);
            positions[1] = Position(1, hash);
            positions[2] = Position(2, hash);
            positions[3] = positions[0];
            positions[4] = positions[1];
            stackSlot[stackSize] = (byte)found;
            stack[stackSize] = key;
            stackSize++;
            for (int other = 1; other <= 2; other++)
            {
                uint o = positions[found + other];
                alone[queue] = o;
                queue += (count2[o] >> 2) == 2 ? 1 : 0;
                count2[o] -= 4;
                count2[o] ^= (byte)((found + other) % 3);
                xorIndex[o] ^= key;
            }
        }

        if (stackSize != keys.Length)
        {
            return false;
        }

        Array.Clear(_fingerprints);
        for (int i = stackSize - 1; i >= 0; i--)
        {
            int key = stack[i];
            ulong hash = Hash(keys[key], _seed);
            int found = stackSlot[i];
            uint target = Tag(hash) ^ classes[key];
            positions[0] = Position(0, hash);
            positions[1] = Position(1, hash);
            positions[2] = Position(2, hash);
            positions[3] = positions[0];
            positions[4] = positions[1];
            _fingerprints[positions[found]] = (byte)(target ^ _fingerprints[positions[found + 1]] ^ _fingerprints[positions[found + 2]]);
        }

        return true;
    }

    /// <summary>
    /// The seeded hash of a key: the seed xor-ed in, one multiplication by an odd constant, and one xor-shift that brings
    /// high bits down into the low bits the third position and the fingerprint read. Both steps are bijections, so
    /// distinct keys never share a hash (two keys with one hash would share all three cells and never peel). The keys
    /// are already well-mixed 64-bit fingerprints, so one multiplication is enough to re-randomise them per seed; a full
    /// finaliser (two more multiplications in a dependent chain) cost a measurable share of every suffix's query.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static ulong Hash(ulong key, ulong seed)
    {
        ulong h = (key ^ seed) * 0x9E3779B97F4A7C15UL;
        return h ^ (h >> 29);
    }

    private static ulong SplitMix(ref ulong state)
    {
        ulong z = state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }
}
