using System.Buffers;

namespace Kars.Policy.AspNetCore;

/// <summary>
/// An incremental server-sent-events parser (WHATWG HTML "event stream interpretation"): bytes in any split, events
/// out, the same events for every split. Lines end in CRLF, LF or CR (a CR at the end of one chunk and an LF at the
/// start of the next are one line end); one leading UTF-8 BOM is skipped; <c>data</c> lines are joined with LF; an
/// empty line dispatches; comments and other fields are ignored; an unterminated last event is discarded.
/// Bounded: a line or an event longer than the cap stops parsing (<see cref="Overflowed"/>). Buffers come from the
/// shared array pool; a line that ends inside one chunk is not copied. Bytes only: no decoding, no culture.
/// </summary>
internal sealed class SseEventReader : IDisposable
{
    private static ReadOnlySpan<byte> Bom => [0xEF, 0xBB, 0xBF];

    private readonly int _maxBytes;
    private readonly Action<ReadOnlySpan<byte>> _onEvent;
    private byte[]? _line;
    private int _lineLength;
    private byte[]? _data;
    private int _dataLength;
    private bool _hasData;
    private bool _pendingCr;
    private int _bomMatched;

    /// <summary>Initializes a reader.</summary>
    /// <param name="maxBytes">The longest line and the longest event data, in bytes.</param>
    /// <param name="onEvent">Called with the data of each dispatched event (valid only during the call).</param>
    public SseEventReader(int maxBytes, Action<ReadOnlySpan<byte>> onEvent)
    {
        _maxBytes = maxBytes;
        _onEvent = onEvent;
    }

    /// <summary>Gets a value indicating whether a line or event was longer than the cap (parsing stopped).</summary>
    public bool Overflowed { get; private set; }

    /// <summary>Parses the next bytes of the stream.</summary>
    /// <param name="chunk">The bytes.</param>
    public void Feed(ReadOnlySpan<byte> chunk)
    {
        while (_bomMatched is >= 0 and < 3 && !chunk.IsEmpty)
        {
            if (chunk[0] == Bom[_bomMatched])
            {
                chunk = chunk[1..];
                _bomMatched++;
                continue;
            }

            // Not a BOM after all: the bytes matched so far are content.
            int matched = _bomMatched;
            _bomMatched = -1;
            AppendLine(Bom[..matched]);
        }

        if (_bomMatched == 3)
        {
            _bomMatched = -1;
        }

        if (chunk.IsEmpty || Overflowed)
        {
            return;
        }

        if (_pendingCr)
        {
            _pendingCr = false;
            if (chunk[0] == (byte)'\n')
            {
                chunk = chunk[1..];
            }
        }

        while (!chunk.IsEmpty && !Overflowed)
        {
            int end = chunk.IndexOfAny((byte)'\r', (byte)'\n');
            if (end < 0)
            {
                AppendLine(chunk);
                return;
            }

            if (_lineLength == 0)
            {
                ProcessLine(chunk[..end]);
            }
            else
            {
                AppendLine(chunk[..end]);
                if (Overflowed)
                {
                    return;
                }

                ProcessLine(_line.AsSpan(0, _lineLength));
                _lineLength = 0;
            }

            if (chunk[end] == (byte)'\r')
            {
                if (end + 1 == chunk.Length)
                {
                    _pendingCr = true;
                    return;
                }

                chunk = chunk[(end + (chunk[end + 1] == (byte)'\n' ? 2 : 1))..];
            }
            else
            {
                chunk = chunk[(end + 1)..];
            }
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        Return(ref _line);
        Return(ref _data);
    }

    private static void Return(ref byte[]? buffer)
    {
        if (buffer is not null)
        {
            ArrayPool<byte>.Shared.Return(buffer);
            buffer = null;
        }
    }

    private void AppendLine(ReadOnlySpan<byte> bytes)
    {
        if (bytes.IsEmpty || Overflowed)
        {
            return;
        }

        if (!Append(ref _line, ref _lineLength, bytes))
        {
            Overflowed = true;
        }
    }

    private bool Append(ref byte[]? buffer, ref int length, ReadOnlySpan<byte> bytes)
        => PooledBytes.TryAppend(ref buffer, ref length, bytes, _maxBytes, minimumCapacity: 256);

    private void ProcessLine(ReadOnlySpan<byte> line)
    {
        if (line.IsEmpty)
        {
            if (_hasData)
            {
                _hasData = false;
                int length = _dataLength;
                _dataLength = 0;
                _onEvent(_data.AsSpan(0, length));
            }

            return;
        }

        if (line[0] == (byte)':')
        {
            return;
        }

        int colon = line.IndexOf((byte)':');
        ReadOnlySpan<byte> field = colon < 0 ? line : line[..colon];
        if (!field.SequenceEqual("data"u8))
        {
            // event, id, retry and unknown fields do not change what the gate reads.
            return;
        }

        ReadOnlySpan<byte> value = colon < 0 ? default : line[(colon + 1)..];
        if (!value.IsEmpty && value[0] == (byte)' ')
        {
            value = value[1..];
        }

        if ((_hasData && !Append(ref _data, ref _dataLength, "\n"u8)) || !Append(ref _data, ref _dataLength, value))
        {
            Overflowed = true;
            return;
        }

        _hasData = true;
    }
}
