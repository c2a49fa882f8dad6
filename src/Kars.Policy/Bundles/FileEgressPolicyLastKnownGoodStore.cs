using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.IO.Abstractions;
using System.Text.Json;
using Kars.Policy.Egress;
using Kars.Policy.Internal;

namespace Kars.Policy.Bundles;

/// <summary>
/// Persists the last-known-good signed policy of an <see cref="OciBundleEgressPolicySource"/> in a state directory
/// (DESIGN §3, kars gap 17), so that a restart with a missing or unverifiable bundle serves the last verified policy
/// instead of failing open or denying everything, and so that a rollback below its generation is refused after a
/// restart too.
/// </summary>
/// <remarks>
/// <para>What is stored: the state directory is itself a small OCI image layout holding the verified policy manifest,
/// its policy layer, and the signature manifests and layers the verifier may have used (the <c>.sig</c> tag, referrer
/// bundles), with the content digest, manifest digest, media type, generation, signer and verification time as
/// annotations of its <c>index.json</c>. Blobs are content-addressed and written first; <c>index.json</c> is written
/// last, to a temporary file that is flushed to disk and then renamed over the old one, so a crash leaves either the
/// old or the new last-known-good, never a mix.</para>
/// <para>What is checked on <see cref="Load"/>: the copy is verified again exactly as the source verifies a bundle
/// (every blob digest recomputed, the signature verified with the source's verifier and signer policy), and its digest,
/// generation and media type must equal the annotations. A corrupt, truncated or edited copy is refused with an
/// exception (which the monitor logs) and never trusted; the monitor then runs as if there were none.</para>
/// <para>Trust assumption: the state directory is <em>not</em> trusted for authenticity (anything it holds must carry
/// a valid signature under the current signer policy), but it is trusted for freshness and availability: a process that
/// can write it can delete the copy (losing the rollback floor across the next restart) or put back an older, validly
/// signed policy. Keep it writable only by the service's own account. A key rotation that drops the old signer makes
/// the stored copy unverifiable: it is then refused until the source loads a bundle signed by the new signer.</para>
/// <para>Thread safety: safe for concurrent use.</para>
/// </remarks>
public sealed class FileEgressPolicyLastKnownGoodStore : IEgressPolicyLastKnownGoodStore
{
    private const string Prefix = "dev.kars.policy.lkg.";
    private const long MaxIndexBytes = 1024 * 1024;

    private readonly OciBundleEgressPolicySource _source;
    private readonly IFileSystem _fileSystem;
    private readonly TimeProvider _timeProvider;
    private readonly Lock _gate = new();
    private string? _savedManifest;

    /// <summary>Initializes a new store. Nothing is read or written until <see cref="Load"/> or <see cref="Save"/>.</summary>
    /// <param name="directory">The state directory (created on the first save).</param>
    /// <param name="source">The bundle source whose snapshots are persisted, and whose verifier, signer policy and
    /// settings verify and compile the copy on <see cref="Load"/>.</param>
    /// <param name="fileSystem">The file system; <see langword="null"/> for the real one.</param>
    /// <param name="timeProvider">The clock for the recorded verification time; <see langword="null"/> for <see cref="TimeProvider.System"/>.</param>
    /// <exception cref="ArgumentNullException"><paramref name="directory"/> or <paramref name="source"/> is <see langword="null"/>.</exception>
    public FileEgressPolicyLastKnownGoodStore(string directory, OciBundleEgressPolicySource source, IFileSystem? fileSystem = null, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(directory);
        ArgumentNullException.ThrowIfNull(source);
        Directory = directory;
        _source = source;
        _fileSystem = fileSystem ?? new FileSystem();
        _timeProvider = timeProvider ?? TimeProvider.System;
    }

    /// <summary>Gets the state directory.</summary>
    public string Directory { get; }

    private string IndexPath => _fileSystem.Path.Combine(Directory, "index.json");

    private string BlobFolder => _fileSystem.Path.Combine(Directory, "blobs", "sha256");

    /// <summary>Returns the persisted last-known-good after verifying it again, or <see langword="null"/> when none was saved.</summary>
    /// <returns>The snapshot, or <see langword="null"/>.</returns>
    /// <exception cref="InvalidDataException">The persisted copy is unreadable, corrupt, tampered with, or no longer
    /// verifies; the message says why. It is never used.</exception>
    public EgressPolicySnapshot? Load()
    {
        lock (_gate)
        {
            if (ReadRecord() is not { } recorded)
            {
                return null;
            }

            EgressPolicySnapshot snapshot;
            VerifiedPolicyBundle bundle;
            try
            {
                (snapshot, bundle) = _source.LoadVerified(Directory, recorded.Manifest);
            }
            catch (EgressPolicyLoadException ex)
            {
                throw Refused(ex.Problems.Count > 0 ? ex.Problems[0].Message : ex.Message);
            }

            if (!string.Equals(snapshot.Digest, recorded.Digest, StringComparison.Ordinal)
                || snapshot.Generation != recorded.Generation
                || !string.Equals(bundle.MediaType, recorded.MediaType, StringComparison.Ordinal))
            {
                throw Refused($"{BundleFailureReason.DigestMismatch}: the copy is {bundle.MediaType} {snapshot.Digest} generation {snapshot.Generation}, its record says {recorded.MediaType} {recorded.Digest} generation {recorded.Generation}");
            }

            _savedManifest = recorded.Manifest;
            return snapshot;
        }
    }

    /// <summary>Reads the generation and digest recorded in the state directory's index, without verifying the copy
    /// (the record is trusted for freshness only, like the rest of the directory: see the remarks).</summary>
    /// <param name="generation">The recorded generation.</param>
    /// <param name="digest">The recorded policy digest.</param>
    /// <returns><see langword="true"/> when a record was read; <see langword="false"/> when none was saved.</returns>
    /// <exception cref="InvalidDataException">The record exists but cannot be read or parsed.</exception>
    public bool TryGetRecordedGeneration(out long generation, [NotNullWhen(true)] out string? digest)
    {
        lock (_gate)
        {
            if (ReadRecord() is not { } recorded)
            {
                generation = 0;
                digest = null;
                return false;
            }

            generation = recorded.Generation;
            digest = recorded.Digest;
            return true;
        }
    }

    /// <summary>Persists the verified bundle <paramref name="snapshot"/> was compiled from.</summary>
    /// <param name="snapshot">A snapshot loaded by this store's source (the snapshot in force).</param>
    /// <exception cref="ArgumentNullException"><paramref name="snapshot"/> is <see langword="null"/>.</exception>
    /// <exception cref="InvalidOperationException">The snapshot was not loaded by this store's source (nothing is written).</exception>
    /// <exception cref="IOException">The state directory could not be written (the previous copy stays).</exception>
    public void Save(EgressPolicySnapshot snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        if (!_source.TryGetVerified(snapshot, out var bundle))
        {
            throw new InvalidOperationException("the snapshot was not loaded and verified by this store's bundle source; nothing was persisted");
        }

        lock (_gate)
        {
            if (string.Equals(_savedManifest, bundle.ManifestDigest, StringComparison.Ordinal) && _fileSystem.File.Exists(IndexPath))
            {
                return;
            }

            _fileSystem.Directory.CreateDirectory(BlobFolder);
            string marker = _fileSystem.Path.Combine(Directory, "oci-layout");
            if (!_fileSystem.File.Exists(marker))
            {
                WriteAtomically(marker, "{\"imageLayoutVersion\":\"1.0.0\"}"u8.ToArray());
            }

            // Content-addressed blobs first; a blob already present with the right content is kept.
            foreach (var (hex, bytes) in bundle.Blobs)
            {
                string path = _fileSystem.Path.Combine(BlobFolder, hex);
                var existing = BoundedFile.Read(_fileSystem, path, bytes.Length);
                if (existing.IsSuccess && existing.Bytes!.AsSpan().SequenceEqual(bytes))
                {
                    continue;
                }

                WriteAtomically(path, bytes);
            }

            // The index last: the rename is the commit point.
            WriteAtomically(IndexPath, BuildIndex(bundle, snapshot));
            _savedManifest = bundle.ManifestDigest;
            RemoveUnreferenced(bundle);
        }
    }

    private InvalidDataException Refused(string why) =>
        new($"the persisted last-known-good policy in {Directory} is refused and not used: {why}");

    /// <summary>Reads and parses the record (<c>index.json</c>); <see langword="null"/> when none was saved. Caller holds <see cref="_gate"/>.</summary>
    /// <exception cref="InvalidDataException">The record cannot be read or parsed.</exception>
    private (string Manifest, string Digest, string MediaType, long Generation)? ReadRecord()
    {
        var read = BoundedFile.Read(_fileSystem, IndexPath, MaxIndexBytes);
        if (read.Error == FileReadError.NotFound)
        {
            return null;
        }

        return read.IsSuccess ? ReadAnnotations(read.Bytes!) : throw Refused($"{IndexPath} {read.Message}");
    }

    private (string Manifest, string Digest, string MediaType, long Generation) ReadAnnotations(byte[] bytes)
    {
        try
        {
            using var document = JsonDocument.Parse(bytes);
            var annotations = document.RootElement.GetProperty("annotations");
            string Get(string name) => annotations.GetProperty(Prefix + name).GetString() ?? throw new FormatException($"{Prefix}{name} is null");
            string manifest = Get("manifest");
            string digest = Get("digest");
            string mediaType = Get("mediaType");
            long generation = long.Parse(Get("generation"), NumberStyles.None, CultureInfo.InvariantCulture);
            if (!OciDigest.TryParse(manifest, out _) || !OciDigest.TryParse(digest, out _))
            {
                throw new FormatException("a recorded digest is not sha256:<64 lower-case hex digits>");
            }

            return (manifest, digest, mediaType, generation);
        }
        catch (Exception ex) when (ex is JsonException or KeyNotFoundException or InvalidOperationException or FormatException or OverflowException)
        {
            throw Refused($"{BundleFailureReason.CanonicalFormViolation}: {IndexPath} is not a last-known-good record ({ex.GetType().Name}: {ex.Message})");
        }
    }

    private byte[] BuildIndex(VerifiedPolicyBundle bundle, EgressPolicySnapshot snapshot)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteNumber("schemaVersion", 2);
            writer.WriteString("mediaType", "application/vnd.oci.image.index.v1+json");
            writer.WriteStartArray("manifests");
            foreach (var entry in bundle.IndexEntries)
            {
                writer.WriteStartObject();
                writer.WriteString("mediaType", entry.MediaType);
                writer.WriteString("digest", entry.Digest);
                writer.WriteNumber("size", entry.Size);
                if (entry.ArtifactType is not null)
                {
                    writer.WriteString("artifactType", entry.ArtifactType);
                }

                if (entry.Annotations.Count > 0)
                {
                    writer.WriteStartObject("annotations");
                    foreach (var (key, value) in entry.Annotations.OrderBy(a => a.Key, StringComparer.Ordinal))
                    {
                        writer.WriteString(key, value);
                    }

                    writer.WriteEndObject();
                }

                writer.WriteEndObject();
            }

            writer.WriteEndArray();
            writer.WriteStartObject("annotations");
            writer.WriteString(Prefix + "manifest", bundle.ManifestDigest);
            writer.WriteString(Prefix + "digest", snapshot.Digest);
            writer.WriteString(Prefix + "mediaType", bundle.MediaType);
            writer.WriteString(Prefix + "generation", snapshot.Generation.ToString(CultureInfo.InvariantCulture));
            writer.WriteString(Prefix + "signer", bundle.Signer);
            if (bundle.SignedAt is { } signedAt)
            {
                writer.WriteString(Prefix + "signedAt", signedAt.ToString("O", CultureInfo.InvariantCulture));
            }

            writer.WriteString(Prefix + "verifiedAt", _timeProvider.GetUtcNow().ToString("O", CultureInfo.InvariantCulture));
            writer.WriteEndObject();
            writer.WriteEndObject();
        }

        return buffer.ToArray();
    }

    /// <summary>Writes to a temporary file, flushes it to disk, and renames it over <paramref name="path"/>.</summary>
    private void WriteAtomically(string path, byte[] bytes)
    {
        string temp = path + ".tmp";

        // Whatever is at the temporary name (a crash's leftover, or a FIFO that would block the open, or a link that
        // would redirect the write) is removed, and the file is created exclusively, so a link is never followed.
        _fileSystem.File.Delete(temp);
        using (FileSystemStream stream = _fileSystem.FileStream.New(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
        {
            stream.Write(bytes);
            stream.Flush(flushToDisk: true);
        }

        _fileSystem.File.Move(temp, path, overwrite: true);
    }

    /// <summary>Deletes blobs of earlier saves (best effort: a leftover blob is harmless, it is never read unless referenced).</summary>
    private void RemoveUnreferenced(VerifiedPolicyBundle bundle)
    {
        try
        {
            foreach (string path in _fileSystem.Directory.EnumerateFiles(BlobFolder))
            {
                if (!bundle.Blobs.ContainsKey(_fileSystem.Path.GetFileName(path)))
                {
                    _fileSystem.File.Delete(path);
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            // The new last-known-good is already committed; the next save tries again.
        }
    }
}
