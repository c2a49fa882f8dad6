using System.Collections.Concurrent;
using System.IO.Abstractions;
using Microsoft.Win32.SafeHandles;

namespace Kars.Policy.Tests.Bundles;

/// <summary>A file system that passes everything to <paramref name="inner"/> and counts the files opened, by path.</summary>
internal sealed class CountingFileSystem(IFileSystem inner) : IFileSystem
{
    private readonly CountingFileStreamFactory _streams = new(inner);

    /// <summary>Gets how often each path was opened (every <c>FileStream.New</c> by path).</summary>
    public ConcurrentDictionary<string, int> Opens => _streams.Opens;

    public IDirectory Directory => inner.Directory;

    public IDirectoryInfoFactory DirectoryInfo => inner.DirectoryInfo;

    public IDriveInfoFactory DriveInfo => inner.DriveInfo;

    public IFile File => inner.File;

    public IFileInfoFactory FileInfo => inner.FileInfo;

    public IFileStreamFactory FileStream => _streams;

    public IFileSystemWatcherFactory FileSystemWatcher => inner.FileSystemWatcher;

    public IFileVersionInfoFactory FileVersionInfo => inner.FileVersionInfo;

    public IPath Path => inner.Path;

    public IRandomAccess RandomAccess => inner.RandomAccess;

    private sealed class CountingFileStreamFactory(IFileSystem inner) : IFileStreamFactory
    {
        public ConcurrentDictionary<string, int> Opens { get; } = new(StringComparer.Ordinal);

        public IFileSystem FileSystem => inner;

        public FileSystemStream New(SafeFileHandle handle, FileAccess access) => inner.FileStream.New(handle, access);

        public FileSystemStream New(SafeFileHandle handle, FileAccess access, int bufferSize) => inner.FileStream.New(handle, access, bufferSize);

        public FileSystemStream New(SafeFileHandle handle, FileAccess access, int bufferSize, bool isAsync) => inner.FileStream.New(handle, access, bufferSize, isAsync);

        public FileSystemStream New(string path, FileMode mode) => Count(path, () => inner.FileStream.New(path, mode));

        public FileSystemStream New(string path, FileMode mode, FileAccess access) => Count(path, () => inner.FileStream.New(path, mode, access));

        public FileSystemStream New(string path, FileMode mode, FileAccess access, FileShare share) => Count(path, () => inner.FileStream.New(path, mode, access, share));

        public FileSystemStream New(string path, FileMode mode, FileAccess access, FileShare share, int bufferSize) => Count(path, () => inner.FileStream.New(path, mode, access, share, bufferSize));

        public FileSystemStream New(string path, FileMode mode, FileAccess access, FileShare share, int bufferSize, bool useAsync) => Count(path, () => inner.FileStream.New(path, mode, access, share, bufferSize, useAsync));

        public FileSystemStream New(string path, FileMode mode, FileAccess access, FileShare share, int bufferSize, FileOptions options) => Count(path, () => inner.FileStream.New(path, mode, access, share, bufferSize, options));

        public FileSystemStream New(string path, FileStreamOptions options) => Count(path, () => inner.FileStream.New(path, options));

        public FileSystemStream Wrap(FileStream fileStream) => inner.FileStream.Wrap(fileStream);

        private FileSystemStream Count(string path, Func<FileSystemStream> open)
        {
            Opens.AddOrUpdate(inner.Path.GetFullPath(path), 1, (_, n) => n + 1);
            return open();
        }
    }
}
