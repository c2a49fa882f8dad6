using System.IO.Abstractions;
using System.Security.Cryptography;
using System.Text.Json;
using Kars.Policy.Internal;

namespace Kars.Policy.Bundles;

/// <summary>An OCI descriptor read from an index or manifest.</summary>
internal sealed record OciDescriptor(string MediaType, byte[] Sha256, long Size, IReadOnlyDictionary<string, string> Annotations, string? ArtifactType)
{
    public string Digest => OciDigest.Format(Sha256);

    public string? RefName => Annotations.TryGetValue("org.opencontainers.image.ref.name", out string? name) ? name : null;
}

/// <summary>
/// A read-only OCI image layout (<c>oci-layout</c>, <c>index.json</c>, <c>blobs/sha256/…</c>). Every blob read is a
/// regular file (no link), bounded in size, exactly the descriptor's size, and its SHA-256 is recomputed.
/// </summary>
/// <remarks>
/// One instance is one read of the layout: <c>oci-layout</c> and <c>index.json</c> are read once, by <see cref="Open"/>,
/// so everything one load looks at comes from one version of the index, never from two versions of a layout that changes
/// meanwhile. A blob whose digest checked out is kept and handed out again (the policy manifest is looked at three times
/// in a load), up to <see cref="CacheLimitFactor"/> times the size cap in total: a layout full of large unrelated
/// manifests cannot make one load hold more than that. A blob beyond it is read again when asked for, with its digest
/// checked again, so it can only ever give the same bytes. The bytes handed out are shared: callers only read them. Not
/// thread-safe: one load at a time.
/// </remarks>
internal sealed class OciLayout
{
    public const string BundleMediaType = SigstoreBundleReader.MediaTypeV03;
    private const int MaxIndexEntries = 4096;

    /// <summary>The blobs one load keeps, in total, as a multiple of the size cap it was opened with.</summary>
    internal const int CacheLimitFactor = 2;
    private readonly IFileSystem _fileSystem;
    private readonly string _root;
    private readonly int _maxBytes;
    private readonly int _indexLength;
    private readonly BlobCache _blobs;

    private OciLayout(IFileSystem fileSystem, string root, int maxBytes, IReadOnlyList<OciDescriptor> manifests, int indexLength, BlobCache blobs)
    {
        _fileSystem = fileSystem;
        _root = root;
        _maxBytes = maxBytes;
        Manifests = manifests;
        _indexLength = indexLength;
        _blobs = blobs;
    }

    /// <summary>Gets the descriptors of <c>index.json</c>.</summary>
    public IReadOnlyList<OciDescriptor> Manifests { get; }

    /// <summary>Gets the bytes of the blobs this read of the layout keeps (at most <see cref="CacheLimitFactor"/> times the
    /// size cap it was opened with).</summary>
    internal long CachedBytes => _blobs.Bytes;

    public static OciLayout Open(IFileSystem fileSystem, string root, int maxBytes)
    {
        if (!fileSystem.Directory.Exists(root))
        {
            throw new BundleException(BundleFailureReason.NotFound, $"{root} is not a directory");
        }

        byte[] marker = ReadRegularFile(fileSystem, fileSystem.Path.Combine(root, "oci-layout"), 4096, "oci-layout");
        using (var layoutDocument = Json.Parse(marker, "oci-layout"))
        {
            if (Json.String(layoutDocument.RootElement, "imageLayoutVersion", "oci-layout") != "1.0.0")
            {
                throw BundleException.Malformed("oci-layout: imageLayoutVersion must be 1.0.0");
            }
        }

        byte[] index = ReadRegularFile(fileSystem, fileSystem.Path.Combine(root, "index.json"), maxBytes, "index.json");
        return new OciLayout(fileSystem, root, maxBytes, ReadIndex(index, "index.json"), index.Length, new BlobCache(CacheLimitFactor * (long)maxBytes));
    }

    /// <summary>The same read of the layout (its index and the blobs read so far) under another size cap: as if it had
    /// been opened with <paramref name="maxBytes"/>, without reading anything again.</summary>
    /// <exception cref="BundleException"><c>index.json</c> is larger than <paramref name="maxBytes"/>, as <see cref="Open"/> would have refused it.</exception>
    public OciLayout WithMaxBytes(int maxBytes)
    {
        if (maxBytes == _maxBytes)
        {
            return this;
        }

        if (_indexLength > maxBytes)
        {
            throw BundleException.Malformed($"index.json is larger than {maxBytes} bytes");
        }

        return new OciLayout(_fileSystem, _root, maxBytes, Manifests, _indexLength, _blobs);
    }

    /// <summary>Reads a blob and checks its digest (and size, when the descriptor gives one).</summary>
    public byte[] ReadBlob(byte[] sha256, long? size, string what)
    {
        if (size is < 0 || size > _maxBytes)
        {
            throw BundleException.Malformed($"{what}: size {size} is out of bounds");
        }

        string hex = Convert.ToHexStringLower(sha256);
        if (_blobs.Entries.TryGetValue(hex, out byte[]? bytes))
        {
            // Read (and its digest checked) earlier in this load, perhaps under another cap.
            if (bytes.Length > _maxBytes)
            {
                throw BundleException.Malformed($"{what} is larger than {_maxBytes} bytes");
            }
        }
        else
        {
            bytes = ReadRegularFile(_fileSystem, _fileSystem.Path.Combine(_root, "blobs", "sha256", hex), _maxBytes, what);
            if (!SHA256.HashData(bytes).AsSpan().SequenceEqual(sha256))
            {
                throw new BundleException(BundleFailureReason.DigestMismatch, $"{what}: the blob's content does not hash to {OciDigest.Format(sha256)}");
            }

            if (_blobs.Bytes + bytes.Length <= _blobs.Limit)
            {
                _blobs.Entries[hex] = bytes;
                _blobs.Bytes += bytes.Length;
            }
        }

        if (size is { } expected && bytes.Length != expected)
        {
            throw new BundleException(BundleFailureReason.DigestMismatch, $"{what}: the blob is {bytes.Length} bytes, its descriptor says {expected}");
        }

        return bytes;
    }

    /// <summary>Whether the blob is in the layout: read already in this load, or present as a file.</summary>
    public bool HasBlob(byte[] sha256)
    {
        string hex = Convert.ToHexStringLower(sha256);
        return _blobs.Entries.ContainsKey(hex) || _fileSystem.File.Exists(_fileSystem.Path.Combine(_root, "blobs", "sha256", hex));
    }

    /// <summary>Reads an image manifest: its layers and optional subject.</summary>
    public (IReadOnlyList<OciDescriptor> Layers, OciDescriptor? Subject, string? ArtifactType) ReadManifest(OciDescriptor descriptor)
    {
        byte[] bytes = ReadBlob(descriptor.Sha256, descriptor.Size, $"manifest {descriptor.Digest}");
        using var document = Json.Parse(bytes, $"manifest {descriptor.Digest}");
        var top = document.RootElement;
        var layers = new List<OciDescriptor>();
        if (top.TryGetProperty("layers", out var array))
        {
            if (array.ValueKind != JsonValueKind.Array || array.GetArrayLength() > MaxIndexEntries)
            {
                throw BundleException.Malformed($"manifest {descriptor.Digest}: layers must be an array");
            }

            foreach (var layer in array.EnumerateArray())
            {
                layers.Add(ReadDescriptor(layer, $"manifest {descriptor.Digest} layer"));
            }
        }

        var subject = Json.OptionalObject(top, "subject", "manifest") is { } s ? ReadDescriptor(s, "manifest subject") : null;
        return (layers, subject, Json.OptionalString(top, "artifactType", "manifest"));
    }

    /// <summary>Reads an image index blob (a referrers-tag index).</summary>
    public IReadOnlyList<OciDescriptor> ReadIndexBlob(OciDescriptor descriptor) =>
        ReadIndex(ReadBlob(descriptor.Sha256, descriptor.Size, $"index {descriptor.Digest}"), $"index {descriptor.Digest}");

    private static IReadOnlyList<OciDescriptor> ReadIndex(byte[] bytes, string what)
    {
        using var document = Json.Parse(bytes, what);
        var manifests = Json.Array(document.RootElement, "manifests", what);
        if (manifests.GetArrayLength() > MaxIndexEntries)
        {
            throw BundleException.Malformed($"{what} lists too many manifests");
        }

        return [.. manifests.EnumerateArray().Select(m => ReadDescriptor(m, what + " manifest"))];
    }

    private static OciDescriptor ReadDescriptor(JsonElement element, string what)
    {
        string digest = Json.String(element, "digest", what);
        if (!OciDigest.TryParse(digest, out byte[]? sha256))
        {
            throw new BundleException(BundleFailureReason.InvalidReference, $"{what}: \"{digest}\" is not a sha256 digest");
        }

        var annotations = new Dictionary<string, string>(StringComparer.Ordinal);
        if (Json.OptionalObject(element, "annotations", what) is { } a)
        {
            foreach (var property in a.EnumerateObject())
            {
                annotations[property.Name] = property.Value.ValueKind == JsonValueKind.String
                    ? property.Value.GetString()!
                    : throw BundleException.Malformed($"{what}: annotation {property.Name} is not a string");
            }
        }

        return new OciDescriptor(
            Json.String(element, "mediaType", what),
            sha256,
            Json.NonNegativeInt64(element, "size", what),
            annotations,
            Json.OptionalString(element, "artifactType", what));
    }

    private static byte[] ReadRegularFile(IFileSystem fileSystem, string path, int maxBytes, string what)
    {
        var info = fileSystem.FileInfo.New(path);
        if (!info.Exists)
        {
            throw new BundleException(BundleFailureReason.NotFound, $"{what} is missing from the layout");
        }

        if (info.LinkTarget is not null || (info.Attributes & (FileAttributes.ReparsePoint | FileAttributes.Directory | FileAttributes.Device)) != 0)
        {
            throw BundleException.Malformed($"{what} is not a regular file");
        }

        if (info.Length > maxBytes)
        {
            throw BundleException.Malformed($"{what} is larger than {maxBytes} bytes");
        }

        // A FIFO, socket or device is refused before it is opened (opening a FIFO for reading blocks until a writer
        // appears; a device may never end), and the cap is checked while reading, not trusted from the length.
        var read = BoundedFile.Read(fileSystem, path, maxBytes);
        return read.Error switch
        {
            FileReadError.None => read.Bytes!,
            FileReadError.NotFound => throw new BundleException(BundleFailureReason.NotFound, $"{what} is missing from the layout"),
            FileReadError.NotRegularFile => throw BundleException.Malformed($"{what} is not a regular file ({read.Message})"),
            FileReadError.TooLarge => throw BundleException.Malformed($"{what} is larger than {maxBytes} bytes"),
            _ => throw new BundleException(BundleFailureReason.NotFound, $"{what} {read.Message}"),
        };
    }

    /// <summary>The digest-checked blobs of one read of the layout, shared by its <see cref="WithMaxBytes"/> views.</summary>
    private sealed class BlobCache(long limit)
    {
        public Dictionary<string, byte[]> Entries { get; } = new(StringComparer.Ordinal);

        public long Limit { get; } = limit;

        public long Bytes { get; set; }
    }
}
