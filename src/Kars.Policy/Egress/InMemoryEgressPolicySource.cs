using Microsoft.Extensions.Primitives;

namespace Kars.Policy.Egress;

/// <summary>
/// A policy document (and feed contents) held in memory, replaced with <see cref="Update"/>: for hosts that fetch
/// their policy themselves, and for tests. Each update fires the change token, so a monitor reloads it.
/// </summary>
/// <remarks>Thread safety: safe for concurrent use. The bytes are copied on construction and on every update, so the
/// caller may reuse its buffers.</remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001:Types that own disposable fields should be disposable", Justification = "Its only disposable is a token source without a timer (no unmanaged resource); IDisposable would be a public API change for nothing to release.")]
public sealed class InMemoryEgressPolicySource : IEgressPolicySource
{
    private readonly EgressCompileSettings _settings;
    private Content _content;
    private CancellationTokenSource _changed = new();

    /// <summary>Initializes a new source with its first document.</summary>
    /// <param name="document">A native policy document or a kars <c>allowlist.json</c> (UTF-8 JSON).</param>
    /// <param name="feeds">The contents of the feed files the document names, keyed by the text the document uses; <see langword="null"/> for none.</param>
    /// <param name="options">Options (mode override, trusted private prefixes, feed limit); <see langword="null"/> for the defaults. Copied.</param>
    /// <exception cref="ArgumentException">An option is invalid.</exception>
    public InMemoryEgressPolicySource(ReadOnlyMemory<byte> document, IReadOnlyDictionary<string, ReadOnlyMemory<byte>>? feeds = null, KarsEgressOptions? options = null)
    {
        _settings = EgressCompileSettings.From(options);
        _content = Content.Copy(document, feeds);
    }

    /// <summary>Gets <c>in-memory</c>.</summary>
    public string Name => "in-memory";

    /// <summary>Replaces the document and feeds and fires the change token. The new document is not validated here:
    /// the next <see cref="Load"/> reports its problems (and a monitor keeps the last good snapshot).</summary>
    /// <param name="document">The new document.</param>
    /// <param name="feeds">The new feed contents; <see langword="null"/> for none.</param>
    public void Update(ReadOnlyMemory<byte> document, IReadOnlyDictionary<string, ReadOnlyMemory<byte>>? feeds = null)
    {
        Volatile.Write(ref _content, Content.Copy(document, feeds));
        var previous = Interlocked.Exchange(ref _changed, new CancellationTokenSource());
        previous.Cancel();
    }

    /// <inheritdoc />
    public EgressPolicySnapshot Load()
    {
        var content = Volatile.Read(ref _content);
        return EgressPolicySnapshot.Compile(content.Document, content.Feeds, Name, _settings);
    }

    /// <inheritdoc />
    public IChangeToken GetChangeToken() => new CancellationChangeToken(Volatile.Read(ref _changed).Token);

    private sealed record Content(byte[] Document, Dictionary<string, ReadOnlyMemory<byte>> Feeds)
    {
        public static Content Copy(ReadOnlyMemory<byte> document, IReadOnlyDictionary<string, ReadOnlyMemory<byte>>? feeds) =>
            new(document.ToArray(), feeds?.ToDictionary(kv => kv.Key, kv => (ReadOnlyMemory<byte>)kv.Value.ToArray(), StringComparer.Ordinal) ?? new(StringComparer.Ordinal));
    }
}
