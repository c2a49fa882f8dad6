using System.Security.Cryptography;
using System.Text.Json;

namespace Kars.Policy.Bundles;

/// <summary>Reads a Sigstore bundle v0.1–v0.3 (<c>dev.sigstore.bundle.v1.Bundle</c>, proto3 JSON) and enforces its structural rules.</summary>
internal static class SigstoreBundleReader
{
    public const string MediaTypeV03 = "application/vnd.dev.sigstore.bundle.v0.3+json";
    private const int MaxTlogEntries = 8;
    private const int MaxTimestamps = 8;
    private const int MaxProofHashes = 64;

    public static int VersionOf(string mediaType) => mediaType switch
    {
        "application/vnd.dev.sigstore.bundle+json;version=0.1" => 1,
        "application/vnd.dev.sigstore.bundle+json;version=0.2" => 2,
        "application/vnd.dev.sigstore.bundle+json;version=0.3" => 3,
        MediaTypeV03 => 3,
        _ => 0,
    };

    public static SignedMaterial Read(ReadOnlyMemory<byte> utf8)
    {
        using var document = Json.Parse(utf8, "the bundle");
        var top = document.RootElement;
        if (top.ValueKind != JsonValueKind.Object)
        {
            throw BundleException.Malformed("the bundle is not a JSON object");
        }

        string mediaType = Json.String(top, "mediaType", "bundle");
        int version = VersionOf(mediaType);
        if (version == 0)
        {
            throw BundleException.Malformed($"the bundle media type \"{mediaType}\" is not a supported Sigstore bundle version");
        }

        var material = Json.Object(top, "verificationMaterial", "bundle");
        var publicKey = Json.OptionalObject(material, "publicKey", "verificationMaterial");
        var chain = Json.OptionalObject(material, "x509CertificateChain", "verificationMaterial");
        var certificate = Json.OptionalObject(material, "certificate", "verificationMaterial");
        if ((publicKey is null ? 0 : 1) + (chain is null ? 0 : 1) + (certificate is null ? 0 : 1) != 1)
        {
            throw BundleException.Malformed("the bundle must carry exactly one of publicKey, x509CertificateChain and certificate");
        }

        System.Security.Cryptography.X509Certificates.X509Certificate2? leaf = null;
        if (chain is { } c)
        {
            var certificates = Json.Array(c, "certificates", "x509CertificateChain");
            if (certificates.GetArrayLength() == 0)
            {
                throw BundleException.Malformed("the bundle's certificate chain is empty");
            }

            // Only the leaf is used; the rest of the chain is an untrusted hint and never a trust anchor.
            leaf = Certificates.Load(Json.Bytes(certificates[0], "rawBytes", "x509CertificateChain.certificates[0]"), "the signing certificate");
        }
        else if (certificate is { } single)
        {
            leaf = Certificates.Load(Json.Bytes(single, "rawBytes", "certificate"), "the signing certificate");
        }

        var entries = new List<TlogEntry>();
        if (material.TryGetProperty("tlogEntries", out var tlogs) && tlogs.ValueKind != JsonValueKind.Null)
        {
            if (tlogs.ValueKind != JsonValueKind.Array || tlogs.GetArrayLength() > MaxTlogEntries)
            {
                throw BundleException.Malformed("tlogEntries must be an array of at most 8 entries");
            }

            foreach (var item in tlogs.EnumerateArray())
            {
                entries.Add(ReadEntry(item, version));
            }
        }

        var timestamps = new List<byte[]>();
        if (Json.OptionalObject(material, "timestampVerificationData", "verificationMaterial") is { } tvd
            && tvd.TryGetProperty("rfc3161Timestamps", out var list) && list.ValueKind != JsonValueKind.Null)
        {
            if (list.ValueKind != JsonValueKind.Array || list.GetArrayLength() > MaxTimestamps)
            {
                throw BundleException.Malformed("rfc3161Timestamps must be an array of at most 8 timestamps");
            }

            foreach (var item in list.EnumerateArray())
            {
                timestamps.Add(Json.Bytes(item, "signedTimestamp", "rfc3161Timestamps[]"));
            }
        }

        var message = Json.OptionalObject(top, "messageSignature", "bundle");
        var dsse = Json.OptionalObject(top, "dsseEnvelope", "bundle");
        if ((message is null) == (dsse is null))
        {
            throw BundleException.Malformed("the bundle must carry exactly one of messageSignature and dsseEnvelope");
        }

        if (message is { } m)
        {
            byte[] signature = Json.Bytes(m, "signature", "messageSignature");
            (HashAlgorithmName, byte[])? digest = null;
            if (Json.OptionalObject(m, "messageDigest", "messageSignature") is { } md)
            {
                string algorithm = Json.String(md, "algorithm", "messageDigest");
                var name = algorithm switch
                {
                    "SHA2_256" => HashAlgorithmName.SHA256,
                    "SHA2_384" => HashAlgorithmName.SHA384,
                    "SHA2_512" => HashAlgorithmName.SHA512,
                    _ => throw BundleException.Malformed($"the message digest algorithm \"{algorithm}\" is not supported"),
                };
                digest = (name, Json.Bytes(md, "digest", "messageDigest"));
            }

            return new SignedMaterial
            {
                Certificate = leaf, Signature = signature, MessageDigest = digest,
                TlogEntries = entries, Timestamps = timestamps, BundleVersion = version,
            };
        }

        var envelope = dsse!.Value;
        string payloadType = Json.String(envelope, "payloadType", "dsseEnvelope");
        byte[] payload = Json.Bytes(envelope, "payload", "dsseEnvelope");
        var signatures = Json.Array(envelope, "signatures", "dsseEnvelope");
        if (signatures.GetArrayLength() != 1)
        {
            throw BundleException.Malformed("a DSSE envelope must carry exactly one signature");
        }

        return new SignedMaterial
        {
            Certificate = leaf, Signature = Json.Bytes(signatures[0], "sig", "dsseEnvelope.signatures[0]"),
            Dsse = (payloadType, payload), TlogEntries = entries, Timestamps = timestamps, BundleVersion = version,
        };
    }

    private static TlogEntry ReadEntry(JsonElement item, int version)
    {
        const string What = "tlogEntries[]";
        long logIndex = Json.NonNegativeInt64(item, "logIndex", What);
        byte[] logId = Json.Bytes(Json.Object(item, "logId", What), "keyId", What + ".logId");
        var kindVersion = Json.Object(item, "kindVersion", What);
        string kind = Json.String(kindVersion, "kind", What + ".kindVersion");
        string kv = Json.String(kindVersion, "version", What + ".kindVersion");
        long? integratedTime = Json.OptionalNonNegativeInt64(item, "integratedTime", What);
        byte[] body = Json.Bytes(item, "canonicalizedBody", What);
        byte[]? set = Json.OptionalObject(item, "inclusionPromise", What) is { } promise
            ? Json.Bytes(promise, "signedEntryTimestamp", What + ".inclusionPromise")
            : null;

        InclusionProof? proof = null;
        if (Json.OptionalObject(item, "inclusionProof", What) is { } p)
        {
            var hashes = Json.Array(p, "hashes", What + ".inclusionProof");
            if (hashes.GetArrayLength() > MaxProofHashes)
            {
                throw BundleException.Malformed("the inclusion proof has too many hashes");
            }

            string? checkpoint = Json.OptionalObject(p, "checkpoint", What + ".inclusionProof") is { } cp
                ? Json.OptionalString(cp, "envelope", What + ".inclusionProof.checkpoint")
                : null;
            proof = new InclusionProof(
                Json.NonNegativeInt64(p, "logIndex", What + ".inclusionProof"),
                Json.Bytes(p, "rootHash", What + ".inclusionProof"),
                Json.NonNegativeInt64(p, "treeSize", What + ".inclusionProof"),
                [.. hashes.EnumerateArray().Select(h => h.ValueKind == JsonValueKind.String ? Json.Base64(h.GetString()!, "inclusion proof hash") : throw BundleException.Malformed("an inclusion proof hash is not a string"))],
                string.IsNullOrEmpty(checkpoint) ? null : checkpoint);
        }

        if (version == 1 && set is null)
        {
            throw new BundleException(BundleFailureReason.TransparencyLogInvalid, "a v0.1 bundle's log entry needs an inclusion promise (signed entry timestamp)");
        }

        if (version >= 2 && (proof is null || proof.Checkpoint is null))
        {
            throw new BundleException(BundleFailureReason.TransparencyLogInvalid, "a v0.2+ bundle's log entry needs an inclusion proof with a checkpoint");
        }

        return new TlogEntry(logIndex, logId, kind, kv, integratedTime, set, proof, body);
    }
}
