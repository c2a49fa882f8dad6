using System.Buffers;
using Microsoft.AspNetCore.Http;

namespace Kars.Policy.AspNetCore;

/// <summary>
/// The response body as the gate sees it: every byte goes to the client first, then to the usage reader. Server-sent
/// events (<c>text/event-stream</c>) are parsed as they pass; any other body is copied into a bounded pooled buffer
/// and read once complete. A compressed body (<c>Content-Encoding</c> other than <c>identity</c>) is not read.
/// </summary>
internal sealed class UsageCaptureStream : Stream
{
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2213:Disposable fields should be disposed", Justification = "The server's response stream: the server owns and disposes it.")]
    private readonly Stream _inner;
    private readonly HttpResponse _response;
    private readonly InferenceApi _api;
    private readonly int _maxEventBytes;
    private readonly int _maxBodyBytes;
    private Mode _mode;
    private SseEventReader? _sse;
    private StreamedUsage? _streamed;
    private byte[]? _body;
    private int _bodyLength;
    private bool _bodyOverflowed;

    public UsageCaptureStream(Stream inner, HttpResponse response, InferenceApi api, int maxEventBytes, int maxBodyBytes)
    {
        _inner = inner;
        _response = response;
        _api = api;
        _maxEventBytes = maxEventBytes;
        _maxBodyBytes = maxBodyBytes;
    }

    private enum Mode
    {
        Undecided = 0,
        Events,
        Json,
        Unreadable,
    }

    /// <summary>Gets why no usage can be read so far (for logs), or <see langword="null"/>.</summary>
    public string? Problem => _mode switch
    {
        Mode.Unreadable => "encoded",
        Mode.Events when _sse!.Overflowed => "event_too_long",
        Mode.Json when _bodyOverflowed => "body_too_long",
        _ => null,
    };

    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    /// <summary>Reads the usage of the response once: the body is parsed at most once, whatever the end.</summary>
    /// <param name="cleanEnd">Whether the response ended cleanly (the upstream finished and the client did not abort):
    /// only then can the usage be <see cref="UsageReading.Clean"/>.</param>
    /// <returns>The clean usage under strict evidence (a clean end, a complete stream or body, no error, a usage
    /// object), or else the usage the upstream reported so far (<see cref="UsageReading.Observed"/>: for a response that
    /// ended without that evidence, so that the charge is never below what the upstream already reported).</returns>
    public UsageReading ReadUsage(bool cleanEnd)
    {
        switch (_mode)
        {
            case Mode.Events:
                if (cleanEnd && !_sse!.Overflowed && _streamed!.CleanUsage is { } clean)
                {
                    return new UsageReading(clean, null);
                }

                return new UsageReading(null, _streamed!.ObservedUsage);
            case Mode.Json:
                if (_bodyOverflowed || !UsageJson.TryRead(_body.AsSpan(0, _bodyLength), out UsageFacts facts) || !facts.Usage.Any)
                {
                    return default;
                }

                return cleanEnd && !facts.HasError ? new UsageReading(facts.Usage.Charge, null) : new UsageReading(null, facts.Usage.Charge);
            default:
                return default;
        }
    }

    public override void Flush() => _inner.Flush();

    public override Task FlushAsync(CancellationToken cancellationToken) => _inner.FlushAsync(cancellationToken);

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        _inner.Write(buffer);
        Observe(buffer);
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        => WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        await _inner.WriteAsync(buffer, cancellationToken).ConfigureAwait(false);
        Observe(buffer.Span);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _sse?.Dispose();
            _sse = null;
            if (_body is not null)
            {
                ArrayPool<byte>.Shared.Return(_body);
                _body = null;
            }
        }

        // The inner stream is the server's: not ours to dispose.
        base.Dispose(disposing);
    }

    private void Observe(ReadOnlySpan<byte> bytes)
    {
        if (bytes.IsEmpty)
        {
            return;
        }

        if (_mode == Mode.Undecided)
        {
            Decide();
        }

        switch (_mode)
        {
            case Mode.Events:
                _sse!.Feed(bytes);
                break;
            case Mode.Json:
                AppendBody(bytes);
                break;
            default:
                break;
        }
    }

    private void Decide()
    {
        string? encoding = _response.Headers.ContentEncoding;
        if (!string.IsNullOrEmpty(encoding) && !string.Equals(encoding, "identity", StringComparison.OrdinalIgnoreCase))
        {
            _mode = Mode.Unreadable;
            return;
        }

        string? contentType = _response.ContentType;
        if (contentType is not null && contentType.StartsWith("text/event-stream", StringComparison.OrdinalIgnoreCase))
        {
            var streamed = new StreamedUsage(_api);
            _streamed = streamed;
            _sse = new SseEventReader(_maxEventBytes, streamed.OnEvent);
            _mode = Mode.Events;
        }
        else
        {
            _mode = Mode.Json;
        }
    }

    private void AppendBody(ReadOnlySpan<byte> bytes)
    {
        if (_bodyOverflowed)
        {
            return;
        }

        if (!PooledBytes.TryAppend(ref _body, ref _bodyLength, bytes, _maxBodyBytes, minimumCapacity: 4096))
        {
            _bodyOverflowed = true;
            if (_body is not null)
            {
                ArrayPool<byte>.Shared.Return(_body);
                _body = null;
                _bodyLength = 0;
            }
        }
    }
}

/// <summary>The usage of one response, read once.</summary>
/// <param name="Clean">The tokens to charge under strict evidence, or <see langword="null"/>.</param>
/// <param name="Observed">When <paramref name="Clean"/> is <see langword="null"/>: the tokens the upstream reported so
/// far, or <see langword="null"/> when none were seen.</param>
internal readonly record struct UsageReading(long? Clean, long? Observed);
