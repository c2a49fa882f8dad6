using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Kars.Policy.Bundles;

/// <summary>A Rekor inclusion proof (RFC 6962 audit path) with its signed checkpoint.</summary>
internal sealed record InclusionProof(long LogIndex, byte[] RootHash, long TreeSize, byte[][] Hashes, string? Checkpoint);

/// <summary>One transparency-log entry as a bundle or a legacy cosign bundle carries it.</summary>
internal sealed record TlogEntry(long LogIndex, byte[] LogId, string Kind, string Version, long? IntegratedTime, byte[]? SignedEntryTimestamp, InclusionProof? Proof, byte[] Body);

/// <summary>Rekor v1 and v2 checks: signed entry timestamp, inclusion proof, signed-note checkpoint.</summary>
internal static class Transparency
{
    private static readonly Encoding StrictUtf8 = new UTF8Encoding(false, true);

    /// <summary>
    /// Verifies the entry's log evidence under a log of the trusted root.
    /// </summary>
    /// <returns>The log, and the integrated time when a signed entry timestamp verified it.</returns>
    public static (LogInstance Log, DateTimeOffset? VerifiedTime) Verify(TlogEntry entry, SigstoreTrustedRoot root)
    {
        var log = root.Logs.FirstOrDefault(l => l.LogId.AsSpan().SequenceEqual(entry.LogId))
            ?? throw new BundleException(BundleFailureReason.TransparencyLogInvalid, $"the log entry comes from log {Convert.ToHexStringLower(entry.LogId)}, which the trusted root does not list");

        if (entry.SignedEntryTimestamp is null && entry.Proof is null)
        {
            throw new BundleException(BundleFailureReason.TransparencyLogInvalid, "the log entry has neither a signed entry timestamp nor an inclusion proof");
        }

        DateTimeOffset? verifiedTime = null;
        if (entry.SignedEntryTimestamp is { } set)
        {
            if (entry.IntegratedTime is not { } integrated || integrated == 0)
            {
                throw new BundleException(BundleFailureReason.TransparencyLogInvalid, "the signed entry timestamp has no integrated time");
            }

            if (log.Key.Kind == KeyKind.Ed25519)
            {
                throw new BundleException(BundleFailureReason.TransparencyLogInvalid, "a signed entry timestamp from an Ed25519 (Rekor v2) log is not valid");
            }

            if (!log.Key.VerifyData(SetPayload(entry.Body, integrated, entry.LogId, entry.LogIndex), set, HashAlgorithmName.SHA256))
            {
                throw new BundleException(BundleFailureReason.TransparencyLogInvalid, "the signed entry timestamp does not verify under the log key");
            }

            var time = Json.FromUnixSeconds(integrated, "integratedTime");
            if (!log.ValidFor.Contains(time))
            {
                throw new BundleException(BundleFailureReason.TransparencyLogInvalid, $"the integrated time {time:O} is outside the log key's validity window");
            }

            verifiedTime = time;
        }

        if (entry.Proof is { } proof)
        {
            VerifyInclusion(entry.Body, proof);
            if (proof.Checkpoint is null)
            {
                throw new BundleException(BundleFailureReason.TransparencyLogInvalid, "the inclusion proof has no signed checkpoint");
            }

            VerifyCheckpoint(proof.Checkpoint, proof, log);
        }

        return (log, verifiedTime);
    }

    /// <summary>The RFC 8785 canonical JSON that a Rekor v1 signed entry timestamp signs.</summary>
    public static byte[] SetPayload(byte[] body, long integratedTime, byte[] logId, long logIndex) =>
        Encoding.ASCII.GetBytes(string.Create(
            CultureInfo.InvariantCulture,
            $"{{\"body\":\"{Convert.ToBase64String(body)}\",\"integratedTime\":{integratedTime},\"logID\":\"{Convert.ToHexStringLower(logId)}\",\"logIndex\":{logIndex}}}"));

    public static byte[] LeafHash(ReadOnlySpan<byte> body)
    {
        var buffer = new byte[body.Length + 1];
        body.CopyTo(buffer.AsSpan(1));
        return SHA256.HashData(buffer);
    }

    public static byte[] NodeHash(ReadOnlySpan<byte> left, ReadOnlySpan<byte> right)
    {
        Span<byte> buffer = stackalloc byte[65];
        buffer[0] = 1;
        left.CopyTo(buffer[1..]);
        right.CopyTo(buffer[33..]);
        return SHA256.HashData(buffer);
    }

    /// <summary>RFC 6962 / 9162 inclusion proof: recomputes the root from the leaf and the audit path.</summary>
    public static byte[] RootFromInclusionProof(long index, long size, byte[] leaf, byte[][] hashes)
    {
        if (index < 0 || size <= 0 || index >= size)
        {
            throw new BundleException(BundleFailureReason.TransparencyLogInvalid, "the inclusion proof's index is not inside its tree");
        }

        ulong i = (ulong)index;
        int inner = 64 - System.Numerics.BitOperations.LeadingZeroCount(i ^ (ulong)(size - 1));
        int border = System.Numerics.BitOperations.PopCount(i >> inner);
        if (hashes.Length != inner + border || hashes.Any(h => h.Length != 32))
        {
            throw new BundleException(BundleFailureReason.TransparencyLogInvalid, "the inclusion proof has the wrong number of hashes for its tree");
        }

        byte[] r = leaf;
        for (int k = 0; k < inner; k++)
        {
            r = ((i >> k) & 1) == 0 ? NodeHash(r, hashes[k]) : NodeHash(hashes[k], r);
        }

        for (int k = inner; k < hashes.Length; k++)
        {
            r = NodeHash(hashes[k], r);
        }

        return r;
    }

    private static void VerifyInclusion(byte[] body, InclusionProof proof)
    {
        if (proof.RootHash.Length != 32)
        {
            throw new BundleException(BundleFailureReason.TransparencyLogInvalid, "the inclusion proof's root hash is not 32 bytes");
        }

        byte[] computed = RootFromInclusionProof(proof.LogIndex, proof.TreeSize, LeafHash(body), proof.Hashes);
        if (!CryptographicOperations.FixedTimeEquals(computed, proof.RootHash))
        {
            throw new BundleException(BundleFailureReason.TransparencyLogInvalid, "the inclusion proof does not lead to its root hash");
        }
    }

    /// <summary>
    /// Whether a checkpoint origin names the log: the host (with port, if any) of the log's <c>baseUrl</c>. A Rekor v2
    /// (Ed25519) log's origin is exactly that host; a Rekor v1 log writes <c>&lt;host&gt; - &lt;tree id&gt;</c> (the tree
    /// id of the shard, decimal; it is not in the trusted root, so any tree id of that host is accepted), and a bare
    /// host is accepted for it too (the Rekor v2 form, used by logs whose keys are not Ed25519).
    /// </summary>
    internal static bool OriginMatches(string origin, LogInstance log)
    {
        if (log.Origin.Length == 0)
        {
            return false;
        }

        if (string.Equals(origin, log.Origin, StringComparison.Ordinal))
        {
            return true;
        }

        if (log.Key.Kind == KeyKind.Ed25519 || !origin.StartsWith(log.Origin + " - ", StringComparison.Ordinal))
        {
            return false;
        }

        var treeId = origin.AsSpan(log.Origin.Length + 3);
        return treeId.Length is > 0 and <= 19
            && (treeId[0] != '0' || treeId.Length == 1)
            && !treeId.ContainsAnyExceptInRange('0', '9')
            && long.TryParse(treeId, NumberStyles.None, CultureInfo.InvariantCulture, out _);
    }

    /// <summary>
    /// A C2SP signed note: origin, tree size, root hash, optional extension lines, a blank line, then signature lines
    /// <c>— name base64(keyHint ‖ signature)</c>. The origin must be the log's (<see cref="OriginMatches"/>), size and
    /// root must be the proof's, and one line must be the log's, by key hint, and verify.
    /// </summary>
    internal static void VerifyCheckpoint(string envelope, InclusionProof proof, LogInstance log)
    {
        int split = envelope.IndexOf("\n\n", StringComparison.Ordinal);
        if (split <= 0)
        {
            throw new BundleException(BundleFailureReason.TransparencyLogInvalid, "the checkpoint is not a signed note");
        }

        string text = envelope[..(split + 1)];
        string signatures = envelope[(split + 2)..];
        string[] lines = text[..^1].Split('\n');
        if (lines.Length < 3 || lines[0].Length == 0
            || !long.TryParse(lines[1], NumberStyles.None, CultureInfo.InvariantCulture, out long size) || lines[1].StartsWith('0') && lines[1].Length > 1)
        {
            throw new BundleException(BundleFailureReason.TransparencyLogInvalid, "the checkpoint has no origin, tree size or root hash");
        }

        byte[] root;
        try
        {
            root = Json.Base64(lines[2], "checkpoint root hash");
        }
        catch (BundleException)
        {
            throw new BundleException(BundleFailureReason.TransparencyLogInvalid, "the checkpoint's root hash is not base64");
        }

        if (size != proof.TreeSize || !root.AsSpan().SequenceEqual(proof.RootHash))
        {
            throw new BundleException(BundleFailureReason.TransparencyLogInvalid, "the checkpoint is for another tree than the inclusion proof");
        }

        if (!OriginMatches(lines[0], log))
        {
            throw new BundleException(BundleFailureReason.TransparencyLogInvalid, $"the checkpoint's origin \"{lines[0]}\" is not the origin of log {log.BaseUrl}");
        }

        if (signatures.Length == 0 || !signatures.EndsWith('\n'))
        {
            throw new BundleException(BundleFailureReason.TransparencyLogInvalid, "the checkpoint has no signature lines");
        }

        byte[] signedText = StrictUtf8.GetBytes(text);
        foreach (string line in signatures[..^1].Split('\n'))
        {
            if (!line.StartsWith("\u2014 ", StringComparison.Ordinal))
            {
                throw new BundleException(BundleFailureReason.TransparencyLogInvalid, "the checkpoint has a malformed signature line");
            }

            int space = line.LastIndexOf(' ');
            byte[] blob;
            try
            {
                blob = Json.Base64(line[(space + 1)..], "checkpoint signature");
            }
            catch (BundleException)
            {
                throw new BundleException(BundleFailureReason.TransparencyLogInvalid, "a checkpoint signature is not base64");
            }

            if (space <= 2 || blob.Length < 5 || !blob.AsSpan(0, 4).SequenceEqual(log.LogId.AsSpan(0, 4)))
            {
                continue; // a witness cosignature or another log: not counted
            }

            if (log.Key.VerifyData(signedText, blob.AsSpan(4), HashAlgorithmName.SHA256))
            {
                return;
            }
        }

        throw new BundleException(BundleFailureReason.TransparencyLogInvalid, "no signature of the log on the checkpoint verifies");
    }
}
