using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Kars.Policy.Egress;

/// <summary>Policy digests: <c>sha256:</c> + lower-case hex.</summary>
internal static class PolicyDigest
{
    /// <summary>The digest of a native document: SHA-256 of its exact bytes.</summary>
    public static string OfDocument(ReadOnlySpan<byte> bytes) => "sha256:" + Convert.ToHexStringLower(SHA256.HashData(bytes));

    /// <summary>The kars digest (reference §1.1): SHA-256 of <c>u64-BE(len(name)) ‖ name ‖ u64-BE(len(body)) ‖ body</c>.</summary>
    public static string OfKarsFile(string name, ReadOnlySpan<byte> body)
    {
        byte[] nameBytes = Encoding.UTF8.GetBytes(name);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> length = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64BigEndian(length, (ulong)nameBytes.Length);
        hash.AppendData(length);
        hash.AppendData(nameBytes);
        BinaryPrimitives.WriteUInt64BigEndian(length, (ulong)body.Length);
        hash.AppendData(length);
        hash.AppendData(body);
        return "sha256:" + Convert.ToHexStringLower(hash.GetHashAndReset());
    }
}
