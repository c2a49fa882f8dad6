using System.IO.Abstractions;
using System.Runtime.InteropServices;

namespace Kars.Policy.Internal;

/// <summary>Why a bounded file read failed.</summary>
internal enum FileReadError
{
    /// <summary>The read succeeded.</summary>
    None = 0,

    /// <summary>Nothing exists at the path.</summary>
    NotFound,

    /// <summary>The path names a directory, FIFO, socket or device: only regular files are read.</summary>
    NotRegularFile,

    /// <summary>The file holds more bytes than the cap (found while reading, so a growing file cannot slip past).</summary>
    TooLarge,

    /// <summary>The file could not be opened or read (permissions or an I/O error).</summary>
    Unreadable,
}

/// <summary>The outcome of <see cref="BoundedFile.Read"/>: the bytes, or a typed error with a one-line message.</summary>
internal readonly record struct FileReadResult(byte[]? Bytes, FileReadError Error, string? Message)
{
    public bool IsSuccess => Error == FileReadError.None;

    public static FileReadResult Fail(FileReadError error, string message) => new(null, error, message);
}

/// <summary>
/// The one reader for every file a policy loader reads (policy documents, kars files, blocklist feeds, learned-host
/// files): only regular files (symbolic links are followed; a FIFO, socket, device or directory is refused before it is
/// opened, so it can never block or stream forever), read through <see cref="IFileSystem"/> with a byte cap that is
/// checked while reading, never trusted from the file's reported length.
/// </summary>
internal static class BoundedFile
{
    /// <summary>The default cap for policy documents and kars files: 16 MiB.</summary>
    public const long DefaultDocumentCap = 16L * 1024 * 1024;

    /// <summary>The default cap for blocklist feeds: 256 MiB.</summary>
    public const long DefaultFeedCap = 256L * 1024 * 1024;

    private const int Chunk = 64 * 1024;

    /// <summary>Reads the whole file at <paramref name="path"/> if it is a regular file of at most <paramref name="maxBytes"/> bytes.</summary>
    public static FileReadResult Read(IFileSystem fileSystem, string path, long maxBytes)
    {
        ArgumentNullException.ThrowIfNull(fileSystem);
        ArgumentNullException.ThrowIfNull(path);
        ArgumentOutOfRangeException.ThrowIfNegative(maxBytes);
        try
        {
            if (fileSystem.Directory.Exists(path))
            {
                return FileReadResult.Fail(FileReadError.NotRegularFile, "is a directory, not a regular file");
            }

            if (!fileSystem.File.Exists(path))
            {
                return FileReadResult.Fail(FileReadError.NotFound, "does not exist");
            }

            // Opening a FIFO for reading blocks until a writer appears, and a device such as /dev/zero never ends:
            // refuse anything that is not a regular file before opening it.
            string? kind = SpecialFileKind(fileSystem, path);
            if (kind is not null)
            {
                return FileReadResult.Fail(FileReadError.NotRegularFile, $"is a {kind}, not a regular file");
            }

            using var stream = fileSystem.FileStream.New(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
            return ReadCapped(stream, maxBytes);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException or System.Security.SecurityException)
        {
            return ex is FileNotFoundException or DirectoryNotFoundException
                ? FileReadResult.Fail(FileReadError.NotFound, "does not exist")
                : FileReadResult.Fail(FileReadError.Unreadable, $"cannot be read ({ex.Message})");
        }
    }

    /// <summary>Reads <paramref name="stream"/> to its end, failing as soon as more than <paramref name="maxBytes"/> bytes arrive.</summary>
    public static FileReadResult ReadCapped(Stream stream, long maxBytes)
    {
        ArgumentNullException.ThrowIfNull(stream);
        long hint = 0;
        if (stream.CanSeek)
        {
            hint = stream.Length - stream.Position;
            if (hint > maxBytes)
            {
                return TooLarge(maxBytes);
            }
        }

        // Size the buffer from the reported length (so a large regular file is read with one allocation), but never
        // trust it: keep reading until the stream ends, and stop the moment the cap is exceeded.
        byte[] buffer = new byte[(int)Math.Min(Math.Max(hint, Chunk), Math.Min(maxBytes + 1, Array.MaxLength))];
        long total = 0;
        while (true)
        {
            if (total == buffer.Length)
            {
                if (total > maxBytes)
                {
                    return TooLarge(maxBytes);
                }

                long grown = Math.Min(Math.Min((long)buffer.Length * 2, maxBytes + 1), Array.MaxLength);
                if (grown <= buffer.Length)
                {
                    return TooLarge(maxBytes);
                }

                Array.Resize(ref buffer, (int)grown);
            }

            int read = stream.Read(buffer, (int)total, (int)Math.Min(buffer.Length - total, int.MaxValue));
            if (read == 0)
            {
                break;
            }

            total += read;
            if (total > maxBytes)
            {
                return TooLarge(maxBytes);
            }
        }

        if (total != buffer.Length)
        {
            Array.Resize(ref buffer, (int)total);
        }

        return new FileReadResult(buffer, FileReadError.None, null);
    }

    private static FileReadResult TooLarge(long maxBytes) =>
        FileReadResult.Fail(FileReadError.TooLarge, $"is larger than the limit of {FormatBytes(maxBytes)}");

    private static string FormatBytes(long bytes) =>
        bytes >= 1024 * 1024 && bytes % (1024 * 1024) == 0
            ? $"{bytes / (1024 * 1024)} MiB"
            : $"{bytes} bytes";

    /// <summary>On Unix, for the real file system, names the kind of a non-regular file (following symbolic links),
    /// or returns <see langword="null"/> for a regular file (or when the kind cannot be told).</summary>
    private static string? SpecialFileKind(IFileSystem fileSystem, string path)
    {
        if (fileSystem is not FileSystem || OperatingSystem.IsWindows())
        {
            return null;
        }

        string full = fileSystem.Path.GetFullPath(path);
        int result;
        FileStatus status;
        try
        {
            result = NativeMethods.Stat(full, out status);
        }
        catch (Exception ex) when (ex is DllNotFoundException or EntryPointNotFoundException)
        {
            // The runtime's System.Native library is part of every .NET runtime on Unix; should a host ever lack it,
            // fall back to reading (the byte cap still bounds a device).
            return null;
        }

        if (result != 0)
        {
            return null; // the open below reports the real error
        }

        return (status.Mode & 0xF000) switch
        {
            0x8000 => null,
            0x1000 => "FIFO (named pipe)",
            0x2000 => "character device",
            0x6000 => "block device",
            0x4000 => "directory",
            0xC000 => "socket",
            _ => "special file",
        };
    }

    /// <summary>The runtime's <c>FileStatus</c> (System.Native <c>pal_io.h</c>); only <see cref="Mode"/> is read, and the
    /// tail is padded well past the native size so the native call can never write beyond it.</summary>
    [StructLayout(LayoutKind.Sequential, Size = 512)]
    private struct FileStatus
    {
        public int Flags;
        public int Mode;
    }

    private static class NativeMethods
    {
        // System.Native ships with every .NET runtime on Unix; SystemNative_Stat follows symbolic links and reports the
        // file type in the POSIX S_IFMT bits of Mode.
        [System.Diagnostics.CodeAnalysis.SuppressMessage("Globalization", "CA2101:Specify marshaling for P/Invoke string arguments", Justification = "The string is explicitly marshalled as UTF-8 (LPUTF8Str), which is what the native API expects.")]
        [System.Diagnostics.CodeAnalysis.SuppressMessage("Security", "CA5392:Use DefaultDllImportSearchPaths attribute for P/Invokes", Justification = "Unix-only call into libSystem.Native shipped with the runtime; the DLL-planting search order the rule guards is Windows behaviour.")]
        [DllImport("libSystem.Native", EntryPoint = "SystemNative_Stat", SetLastError = false)]
        public static extern int Stat([MarshalAs(UnmanagedType.LPUTF8Str)] string path, out FileStatus output);
    }
}
