using System.IO.Abstractions;
using Microsoft.Extensions.Primitives;

namespace Kars.Policy.Egress;

/// <summary>
/// A policy read from the file system on every <see cref="Load"/>: a native policy file, a kars <c>allowlist.json</c>,
/// or a kars folder (<c>allowlist.json</c> plus <c>approval-*.json</c>, also in an <c>approvals/</c> subfolder).
/// It is not watched: its change token never fires, so a monitor reloads it only when asked
/// (<see cref="EgressPolicyMonitor.Reload"/>). Use <see cref="DirectoryEgressPolicySource"/> to reload on change.
/// </summary>
/// <remarks>Thread safety: safe for concurrent use (loads are serialised). Blocklist feeds keep their last good
/// contents across loads of the same source: a feed that fails to read on a reload stays in force, with a warning.</remarks>
public sealed class FileEgressPolicySource : IEgressPolicySource
{
    private static readonly CancellationChangeToken Never = new(CancellationToken.None);

    private readonly PolicyLoader _loader;
    private readonly EgressCompileSettings _settings;

    /// <summary>Initializes a new source. Nothing is read until <see cref="Load"/>.</summary>
    /// <param name="path">A native policy file, a kars <c>allowlist.json</c>, or a kars folder.</param>
    /// <param name="options">Options (mode override, trusted private prefixes, feed limit); <see langword="null"/> for the defaults. Copied.</param>
    /// <param name="fileSystem">The file system to read from; <see langword="null"/> for the real one.</param>
    /// <exception cref="ArgumentNullException"><paramref name="path"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option is invalid.</exception>
    public FileEgressPolicySource(string path, KarsEgressOptions? options = null, IFileSystem? fileSystem = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        Name = path;
        _settings = EgressCompileSettings.From(options);
        _loader = new PolicyLoader(fileSystem ?? new FileSystem(), options ?? new KarsEgressOptions());
    }

    /// <summary>Gets the path the policy is read from.</summary>
    public string Name { get; }

    /// <inheritdoc />
    public EgressPolicySnapshot Load() => EgressPolicySnapshot.FromCompiled(_loader.Load(Name), _settings);

    /// <summary>Returns a token that never fires: this source is not watched.</summary>
    /// <returns>A token that never fires.</returns>
    public IChangeToken GetChangeToken() => Never;
}
