using System.Buffers;

namespace Kars.Policy.AspNetCore;

/// <summary>A bounded byte buffer rented from <see cref="ArrayPool{T}.Shared"/> and grown by doubling.</summary>
internal static class PooledBytes
{
    /// <summary>
    /// Appends <paramref name="bytes"/> to <paramref name="buffer"/>[0..<paramref name="length"/>), renting a larger
    /// array (at least <paramref name="minimumCapacity"/>, at most <paramref name="maxBytes"/>) and returning the old
    /// one when it is too small.
    /// </summary>
    /// <returns><see langword="false"/>, and nothing changed, when the result would exceed <paramref name="maxBytes"/>.</returns>
    public static bool TryAppend(ref byte[]? buffer, ref int length, ReadOnlySpan<byte> bytes, int maxBytes, int minimumCapacity)
    {
        int needed = length + bytes.Length;
        if (needed > maxBytes || needed < 0)
        {
            return false;
        }

        if (buffer is null || buffer.Length < needed)
        {
            byte[] grown = ArrayPool<byte>.Shared.Rent(Math.Min(maxBytes, Math.Max(needed, Math.Max(minimumCapacity, (buffer?.Length ?? 0) * 2))));
            if (buffer is not null)
            {
                buffer.AsSpan(0, length).CopyTo(grown);
                ArrayPool<byte>.Shared.Return(buffer);
            }

            buffer = grown;
        }

        bytes.CopyTo(buffer.AsSpan(length));
        length = needed;
        return true;
    }
}
