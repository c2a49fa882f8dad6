using System.Buffers;

namespace Kars.Policy.Hosts.Idna;

/// <summary>A growable list of code points that starts in caller-provided (stack) memory and moves to a pooled array
/// only when that is full. Dispose it to return the array.</summary>
internal ref struct CodePointBuffer
{
    private Span<int> span;
    private int[]? rented;

    /// <summary>Creates a buffer over <paramref name="initial"/>.</summary>
    /// <param name="initial">The first storage, usually <c>stackalloc</c>.</param>
    public CodePointBuffer(Span<int> initial)
    {
        span = initial;
        rented = null;
        Length = 0;
    }

    /// <summary>The number of code points.</summary>
    public int Length { get; private set; }

    /// <summary>The code points.</summary>
    public readonly Span<int> Span => span[..Length];

    /// <summary>Appends a code point.</summary>
    /// <param name="codePoint">The code point.</param>
    public void Add(int codePoint)
    {
        if (Length == span.Length)
        {
            Grow();
        }

        span[Length++] = codePoint;
    }

    /// <summary>Removes every code point (keeps the storage).</summary>
    public void Clear() => Length = 0;

    /// <summary>Shortens the buffer to <paramref name="length"/> code points.</summary>
    /// <param name="length">The new length, at most <see cref="Length"/>.</param>
    public void Truncate(int length) => Length = length;

    /// <summary>Returns the pooled array, if any.</summary>
    public void Dispose()
    {
        if (rented is not null)
        {
            ArrayPool<int>.Shared.Return(rented);
            rented = null;
        }
    }

    private void Grow()
    {
        int[] next = ArrayPool<int>.Shared.Rent(Math.Max(64, span.Length * 2));
        span[..Length].CopyTo(next);
        if (rented is not null)
        {
            ArrayPool<int>.Shared.Return(rented);
        }

        rented = next;
        span = next;
    }
}
