using System.IO.Abstractions;
using System.Text;
using Microsoft.Extensions.Primitives;

namespace Kars.Policy.Egress;

/// <summary>
/// A policy in a watched folder, such as a Kubernetes ConfigMap mount: a kars folder, or a native policy file (or
/// kars <c>allowlist.json</c>) inside the folder. The folder is checked every
/// <see cref="KarsEgressOptions.WatchInterval"/> and the change token fires when anything in it changed, including the
/// atomic <c>..data</c> symlink swap Kubernetes uses to update a ConfigMap (kars gap 10).
/// </summary>
/// <remarks>
/// <para>The check follows symbolic links: for every entry of the folder and of its subfolders one level down (which
/// covers <c>..data/</c>, the timestamped folder it points to, <c>approvals/</c> and a feed folder) it compares the
/// link target and the final target's length and last-write time. A swap changes the link target even when the new
/// files have the same size and time, which an <c>lstat</c>-based poll would miss. Polling (rather than inotify)
/// works the same on every file system, including network mounts and <c>IFileSystem</c> test doubles; the cost is a
/// few <c>stat</c> calls per interval. With the default interval (1 s) and <see cref="KarsEgressOptions.ReloadDelay"/>
/// (250 ms), a change is in force within 2 seconds.</para>
/// <para>Thread safety: safe for concurrent use. Polling starts with the first <see cref="GetChangeToken"/> call and
/// stops on <see cref="Dispose"/>. Loading is the same as <see cref="FileEgressPolicySource"/>.</para>
/// </remarks>
public sealed class DirectoryEgressPolicySource : IEgressPolicySource, IDisposable
{
    private const int MaxEntries = 10_000;

    private readonly PolicyLoader _loader;
    private readonly EgressCompileSettings _settings;
    private readonly IFileSystem _fileSystem;
    private readonly TimeProvider _timeProvider;
    private readonly TimeSpan _interval;
    private readonly string _fullPath;
    private readonly Lock _gate = new();
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2213:Disposable fields should be disposed", Justification = "A token source without a timer holds no unmanaged resource; disposing it would make a reader racing with Dispose throw ObjectDisposedException.")]
    private CancellationTokenSource _changed = new();
    private ITimer? _timer;
    private string? _fingerprint;
    private bool _disposed;

    /// <summary>Initializes a new source. Nothing is read until <see cref="Load"/> or the first poll.</summary>
    /// <param name="path">A folder (a kars folder), or a policy file inside the folder to watch.</param>
    /// <param name="options">Options (mode override, trusted private prefixes, feed limit, <see cref="KarsEgressOptions.WatchInterval"/>); <see langword="null"/> for the defaults. Copied.</param>
    /// <param name="fileSystem">The file system to read from; <see langword="null"/> for the real one.</param>
    /// <param name="timeProvider">The clock that schedules the checks; <see langword="null"/> for <see cref="TimeProvider.System"/>.</param>
    /// <exception cref="ArgumentNullException"><paramref name="path"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option is invalid, or <paramref name="path"/> is not a usable path.</exception>
    public DirectoryEgressPolicySource(string path, KarsEgressOptions? options = null, IFileSystem? fileSystem = null, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        options ??= new KarsEgressOptions();
        EgressCompileSettings.ValidateTiming(options);
        Name = path;
        _settings = EgressCompileSettings.From(options);
        _fileSystem = fileSystem ?? new FileSystem();
        _timeProvider = timeProvider ?? TimeProvider.System;
        _interval = options.WatchInterval;
        _loader = new PolicyLoader(_fileSystem, options);
        _fullPath = _fileSystem.Path.GetFullPath(path);
    }

    /// <summary>Gets the path the policy is read from.</summary>
    public string Name { get; }

    /// <inheritdoc />
    public EgressPolicySnapshot Load()
    {
        // The fingerprint is taken before the read: a change during the read makes the next poll fire again.
        string fingerprint = Fingerprint();
        lock (_gate)
        {
            _fingerprint = fingerprint;
        }

        return EgressPolicySnapshot.FromCompiled(_loader.Load(Name), _settings);
    }

    /// <inheritdoc />
    public IChangeToken GetChangeToken()
    {
        lock (_gate)
        {
            if (_timer is null && !_disposed)
            {
                _timer = _timeProvider.CreateTimer(static state => ((DirectoryEgressPolicySource)state!).Poll(), this, _interval, _interval);
            }

            return new CancellationChangeToken(_changed.Token);
        }
    }

    /// <summary>Stops watching. Loading still works.</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            _disposed = true;
            _timer?.Dispose();
            _timer = null;
        }
    }

    /// <summary>Takes the fingerprint a load starts from (a source that reads the folder itself, such as the signed
    /// bundle source, calls this before it reads, as <see cref="Load"/> does).</summary>
    internal void MarkLoaded()
    {
        string fingerprint = Fingerprint();
        lock (_gate)
        {
            _fingerprint = fingerprint;
        }
    }

    /// <summary>Checks the folder once and fires the change token when it changed (the timer calls this). Never throws:
    /// an exception escaping a timer callback would end the process.</summary>
    internal void Poll()
    {
        try
        {
            PollCore();
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // A failing listener or file-system double: the next poll tries again; loading reports real problems.
        }
    }

    private void PollCore()
    {
        string fingerprint = Fingerprint();
        CancellationTokenSource? fire = null;
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            if (_fingerprint is not null && !string.Equals(_fingerprint, fingerprint, StringComparison.Ordinal))
            {
                fire = _changed;
                _changed = new CancellationTokenSource();
            }

            _fingerprint = fingerprint;
        }

        fire?.Cancel();
    }

    /// <summary>A text that changes whenever an entry of the folder (or of a subfolder one level down) appears,
    /// disappears, points elsewhere, or changes length or last-write time, following symbolic links.</summary>
    internal string Fingerprint()
    {
        var text = new StringBuilder();
        int budget = MaxEntries;
        try
        {
            // A folder path is watched itself; a file path, its folder (where Kubernetes swaps ..data).
            string folder = _fileSystem.Directory.Exists(_fullPath) ? _fullPath : _fileSystem.Path.GetDirectoryName(_fullPath) ?? _fullPath;
            Append(folder, depth: 0, text, ref budget);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            // An unreadable folder is a state too: it fires once when it appears and once when it goes away.
            text.Append("!unreadable ").Append(ex.GetType().Name);
        }

        return text.ToString();
    }

    private void Append(string folder, int depth, StringBuilder text, ref int budget)
    {
        foreach (string entry in _fileSystem.Directory.EnumerateFileSystemEntries(folder).Order(StringComparer.Ordinal))
        {
            if (--budget < 0)
            {
                text.Append("!truncated");
                return;
            }

            var info = _fileSystem.FileInfo.New(entry);
            string? link = info.LinkTarget;
            text.Append(entry).Append('|').Append(link).Append('|');
            if (_fileSystem.Directory.Exists(entry))
            {
                text.Append("dir\n");
                if (depth < 1)
                {
                    Append(entry, depth + 1, text, ref budget);
                }

                continue;
            }

            var target = link is null ? info : info.ResolveLinkTarget(returnFinalTarget: true);
            if (target is null || !target.Exists)
            {
                text.Append("missing\n");
                continue;
            }

            target.Refresh();
            long length = target is IFileInfo file ? file.Length : -1;
            text.Append(length).Append('|').Append(target.LastWriteTimeUtc.Ticks).Append('|').Append(target.FullName).Append('\n');
        }
    }
}
