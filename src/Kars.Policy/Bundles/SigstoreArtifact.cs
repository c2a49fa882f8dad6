using System.Security.Cryptography;

namespace Kars.Policy.Bundles;

/// <summary>What was signed: the artifact's bytes, or only its SHA-256 digest.</summary>
/// <remarks>
/// With the bytes, a message signature is verified over them with the key's own hash (SHA-384 for P-384 and so on).
/// With only a SHA-256 digest, a signature made over another hash cannot be tied to the artifact and is rejected.
/// </remarks>
public sealed class SigstoreArtifact
{
    private SigstoreArtifact(ReadOnlyMemory<byte>? bytes, byte[] sha256)
    {
        Bytes = bytes;
        Sha256 = sha256;
    }

    /// <summary>Gets the artifact digest as <c>sha256:&lt;hex&gt;</c>.</summary>
    public string Digest => "sha256:" + Convert.ToHexStringLower(Sha256);

    internal ReadOnlyMemory<byte>? Bytes { get; }

    internal byte[] Sha256 { get; }

    /// <summary>An artifact given by its bytes.</summary>
    /// <param name="bytes">The artifact.</param>
    /// <returns>The artifact.</returns>
    public static SigstoreArtifact FromBytes(ReadOnlyMemory<byte> bytes) => new(bytes, SHA256.HashData(bytes.Span));

    /// <summary>An artifact given only by its digest, <c>sha256:</c> and 64 lower-case hex digits.</summary>
    /// <param name="digest">The digest text.</param>
    /// <param name="artifact">The artifact, when the text is well formed.</param>
    /// <returns><see langword="true"/> when <paramref name="digest"/> is well formed.</returns>
    public static bool TryFromDigest(string? digest, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out SigstoreArtifact? artifact)
    {
        artifact = OciDigest.TryParse(digest, out byte[]? raw) ? new SigstoreArtifact(null, raw) : null;
        return artifact is not null;
    }

    internal byte[] Hash(HashAlgorithmName algorithm) =>
        algorithm == HashAlgorithmName.SHA256 ? Sha256
        : Bytes is { } b ? (algorithm == HashAlgorithmName.SHA384 ? SHA384.HashData(b.Span) : algorithm == HashAlgorithmName.SHA512 ? SHA512.HashData(b.Span) : throw BundleException.Malformed("unsupported digest algorithm"))
        : throw new BundleException(BundleFailureReason.DigestMismatch, $"only a SHA-256 digest of the artifact was given, but it was signed over {algorithm.Name}");
}

/// <summary>The one reader of <c>sha256:&lt;hex&gt;</c> digest text.</summary>
internal static class OciDigest
{
    private static readonly System.Buffers.SearchValues<char> LowerHex = System.Buffers.SearchValues.Create("0123456789abcdef");

    public static bool TryParse(string? digest, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out byte[]? raw)
    {
        raw = null;
        if (digest is null || digest.Length != 71 || !digest.StartsWith("sha256:", StringComparison.Ordinal))
        {
            return false;
        }

        var hex = digest.AsSpan(7);
        if (hex.IndexOfAnyExcept(LowerHex) >= 0)
        {
            return false;
        }

        raw = Convert.FromHexString(hex);
        return true;
    }

    public static string Format(ReadOnlySpan<byte> sha256) => "sha256:" + Convert.ToHexStringLower(sha256);
}
