using System.Diagnostics;

namespace Kars.Policy.Tests.Shared.Files;

/// <summary>
/// Puts a hostile file in place of a regular one, for the file-reading tests of the library
/// (<c>HostileFileSystemTests</c>) and of the CLI process (<c>HostileLayoutProcessTests</c>). Every path, and every
/// helper file it creates (link targets, FIFOs), must be under the system temp folder: anything else is refused.
/// <see cref="ReleaseFifos"/> releases a reader blocked on one of its FIFOs; <see cref="Dispose"/> makes the
/// unreadable files readable again so that the folder can be deleted.
/// </summary>
/// <remarks>
/// Kinds: <c>link-outside-same-bytes</c> (a link to a copy of the original bytes outside the layout),
/// <c>link-etc-passwd</c>, <c>fifo</c>, <c>link-to-fifo</c>, <c>directory</c> (holding the original bytes as
/// <c>inside</c>), <c>empty-directory</c>, <c>link-dev-zero</c>, <c>link-dev-urandom</c>, <c>sparse-10GiB</c> (the
/// original bytes, then a hole), <c>sparse-100MB</c> (a hole only), <c>missing</c>, <c>unreadable</c> (mode 000; a
/// no-op for root), <c>garbage</c> (five bytes of invalid UTF-8 and NUL), <c>deep-nesting</c> (JSON nested
/// 100,000 deep).
/// </remarks>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
internal sealed class HostileFiles : IDisposable
{
    private readonly string _scratch;
    private readonly List<string> _fifos = [];
    private readonly List<string> _unreadable = [];

    /// <summary>Creates the helper; <paramref name="scratch"/> (under the temp folder) receives link targets and FIFOs.</summary>
    public HostileFiles(string scratch)
    {
        _scratch = UnderTemp(scratch);
        Directory.CreateDirectory(_scratch);
    }

    /// <summary>Every kind <see cref="Replace"/> knows.</summary>
    public static IReadOnlyList<string> Kinds { get; } =
    [
        "link-outside-same-bytes", "link-etc-passwd", "fifo", "directory", "link-dev-zero", "link-dev-urandom",
        "sparse-10GiB", "missing", "unreadable", "link-to-fifo", "empty-directory", "sparse-100MB", "garbage", "deep-nesting",
    ];

    /// <summary>Replaces the file at <paramref name="path"/> (which may not exist) with a hostile one of kind <paramref name="kind"/>.</summary>
    public void Replace(string path, string kind)
    {
        path = UnderTemp(path);
        byte[] original = File.Exists(path) ? File.ReadAllBytes(path) : [];
        File.Delete(path);
        switch (kind)
        {
            case "link-outside-same-bytes":
                string outside = Path.Combine(_scratch, "outside-" + Guid.NewGuid().ToString("N"));
                File.WriteAllBytes(outside, original);
                File.CreateSymbolicLink(path, outside);
                break;
            case "link-etc-passwd":
                File.CreateSymbolicLink(path, "/etc/passwd");
                break;
            case "fifo":
                MakeFifo(path);
                break;
            case "link-to-fifo":
                string fifo = Path.Combine(_scratch, "fifo-" + Guid.NewGuid().ToString("N"));
                MakeFifo(fifo);
                File.CreateSymbolicLink(path, fifo);
                break;
            case "directory":
                Directory.CreateDirectory(path);
                File.WriteAllBytes(Path.Combine(path, "inside"), original);
                break;
            case "empty-directory":
                Directory.CreateDirectory(path);
                break;
            case "link-dev-zero":
                File.CreateSymbolicLink(path, "/dev/zero");
                break;
            case "link-dev-urandom":
                File.CreateSymbolicLink(path, "/dev/urandom");
                break;
            case "sparse-10GiB":
                using (var stream = File.Create(path))
                {
                    stream.Write(original);
                    stream.SetLength(10L * 1024 * 1024 * 1024);
                }

                break;
            case "sparse-100MB":
                using (var stream = File.Create(path))
                {
                    stream.SetLength(100L * 1024 * 1024);
                }

                break;
            case "missing":
                break;
            case "unreadable":
                File.WriteAllBytes(path, original);
                File.SetUnixFileMode(path, UnixFileMode.None);
                _unreadable.Add(path);
                break;
            case "garbage":
                File.WriteAllBytes(path, [0x7b, 0x22, 0xff, 0x00, 0x5b]);
                break;
            case "deep-nesting":
                File.WriteAllText(path, "{\"manifests\":" + new string('[', 100_000) + new string(']', 100_000) + "}");
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown hostile file kind");
        }
    }

    /// <summary>Creates a FIFO at <paramref name="path"/> (under the temp folder) that <see cref="ReleaseFifos"/> releases.</summary>
    public void MakeFifo(string path)
    {
        path = UnderTemp(path);
        using var mkfifo = Process.Start(new ProcessStartInfo("mkfifo", [path]) { UseShellExecute = false })!;
        mkfifo.WaitForExit();
        if (mkfifo.ExitCode != 0)
        {
            throw new InvalidOperationException($"mkfifo {path} exited {mkfifo.ExitCode}");
        }

        _fifos.Add(path);
    }

    /// <summary>Opens every FIFO made here for writing and closes it, which releases a reader blocked in open() (on a
    /// worker, so that a FIFO nobody reads never blocks the caller).</summary>
    public void ReleaseFifos()
    {
        foreach (string fifo in _fifos)
        {
            _ = Task.Run(() =>
            {
                try
                {
                    using var writer = new FileStream(fifo, FileMode.Open, FileAccess.Write);
                }
                catch (IOException)
                {
                }
            });
        }
    }

    /// <summary>Makes the unreadable files readable again (the caller deletes its folder).</summary>
    public void Dispose()
    {
        foreach (string file in _unreadable)
        {
            File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }
    }

    private static string UnderTemp(string path)
    {
        string full = Path.GetFullPath(path);
        string temp = Path.GetFullPath(Path.GetTempPath());
        if (!temp.EndsWith(Path.DirectorySeparatorChar))
        {
            temp += Path.DirectorySeparatorChar;
        }

        return full.StartsWith(temp, StringComparison.Ordinal) && full.Length > temp.Length
            ? full
            : throw new ArgumentException($"hostile files are made only under the temp folder ({temp}), not at {full}", nameof(path));
    }
}
