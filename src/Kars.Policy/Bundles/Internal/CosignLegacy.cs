using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Kars.Policy.Bundles;

/// <summary>
/// The legacy cosign formats: the simple-signing payload with its layer annotations (<c>.sig</c> tag), and
/// <c>cosign sign-blob</c>'s base64 signature with the old <c>--bundle</c> file (<c>rekorBundle</c> SET).
/// </summary>
internal static class CosignLegacy
{
    private static readonly System.Buffers.SearchValues<char> LowerHex = System.Buffers.SearchValues.Create("0123456789abcdef");

    public const string SimpleSigningMediaType = "application/vnd.dev.cosign.simplesigning.v1+json";
    public const string SignatureAnnotation = "dev.cosignproject.cosign/signature";
    public const string CertificateAnnotation = "dev.sigstore.cosign/certificate";
    public const string BundleAnnotation = "dev.sigstore.cosign/bundle";
    public const string TimestampAnnotation = "dev.sigstore.cosign/rfc3161timestamp";

    /// <summary>Verifies one simple-signing layer: its signature over the payload bytes, its log evidence, and that the payload names the manifest.</summary>
    public static VerifiedSignature VerifySimpleSigning(byte[] payload, IReadOnlyDictionary<string, string> annotations, byte[] manifestSha256, SignerPolicy policy, SigstoreTrustedRoot root, SigstoreVerifierOptions options)
    {
        if (!annotations.TryGetValue(SignatureAnnotation, out string? signatureText))
        {
            throw new BundleException(BundleFailureReason.Unsigned, $"the signature layer has no {SignatureAnnotation} annotation");
        }

        var material = new SignedMaterial
        {
            Signature = Json.Base64(signatureText, "the signature annotation"),
            Certificate = annotations.TryGetValue(CertificateAnnotation, out string? pem) ? Certificates.LoadPem(pem, "the certificate annotation") : null,
            TlogEntries = annotations.TryGetValue(BundleAnnotation, out string? bundle) ? [ReadRekorBundle(Encoding.UTF8.GetBytes(bundle))] : [],
            Timestamps = annotations.TryGetValue(TimestampAnnotation, out string? ts) ? [ReadTimestampAnnotation(ts)] : [],
        };

        var verified = material.Verify(SigstoreArtifact.FromBytes(payload), policy, root, options);
        CheckPayload(payload, manifestSha256);
        return verified with { ArtifactDigest = OciDigest.Format(manifestSha256) };
    }

    /// <summary>Verifies <c>cosign sign-blob</c> output: a base64 signature over the blob, with an optional legacy bundle file.</summary>
    public static VerifiedSignature VerifyBlob(SigstoreArtifact blob, string signatureText, ReadOnlyMemory<byte>? legacyBundle, SignerPolicy policy, SigstoreTrustedRoot root, SigstoreVerifierOptions options)
    {
        byte[] signature = Json.Base64(signatureText.Trim(), "the signature");
        var entries = new List<TlogEntry>();
        System.Security.Cryptography.X509Certificates.X509Certificate2? certificate = null;
        if (legacyBundle is { } bytes)
        {
            using var document = Json.Parse(bytes, "the cosign bundle");
            var top = document.RootElement;
            if (Json.OptionalString(top, "base64Signature", "cosign bundle") is { } inBundle
                && !Json.Base64(inBundle, "cosign bundle base64Signature").AsSpan().SequenceEqual(signature))
            {
                throw new BundleException(BundleFailureReason.SignatureInvalid, "the cosign bundle holds another signature than the signature file");
            }

            if (Json.OptionalString(top, "cert", "cosign bundle") is { } cert)
            {
                string pem = Encoding.UTF8.GetString(Json.Base64(cert, "cosign bundle cert"));
                if (pem.Contains("CERTIFICATE", StringComparison.Ordinal))
                {
                    certificate = Certificates.LoadPem(pem, "the cosign bundle certificate");
                }
            }

            var rekor = Json.Object(top, "rekorBundle", "cosign bundle");
            entries.Add(ReadRekorBundle(rekor));
        }

        var material = new SignedMaterial { Signature = signature, Certificate = certificate, TlogEntries = entries };
        return material.Verify(blob, policy, root, options);
    }

    /// <summary>A cosign Rekor bundle: <c>{"SignedEntryTimestamp": b64, "Payload": {"body", "integratedTime", "logIndex", "logID"}}</c>.</summary>
    public static TlogEntry ReadRekorBundle(ReadOnlyMemory<byte> json)
    {
        using var document = Json.Parse(json, "the Rekor bundle annotation");
        return ReadRekorBundle(document.RootElement);
    }

    private static TlogEntry ReadRekorBundle(JsonElement top)
    {
        const string What = "Rekor bundle";
        if (top.ValueKind != JsonValueKind.Object)
        {
            throw BundleException.Malformed("the Rekor bundle is not a JSON object");
        }

        byte[] set = Json.Bytes(top, "SignedEntryTimestamp", What);
        var payload = Json.Object(top, "Payload", What);
        byte[] body = Json.Bytes(payload, "body", What + " Payload");
        long integratedTime = Json.NonNegativeInt64(payload, "integratedTime", What + " Payload");
        long logIndex = Json.NonNegativeInt64(payload, "logIndex", What + " Payload");
        string logIdHex = Json.String(payload, "logID", What + " Payload");
        if (logIdHex.Length != 64 || logIdHex.AsSpan().IndexOfAnyExcept(LowerHex) >= 0)
        {
            throw BundleException.Malformed("the Rekor bundle's logID is not 64 lower-case hex digits");
        }

        using var bodyDocument = Json.Parse(body, "the Rekor entry body");
        string kind = Json.String(bodyDocument.RootElement, "kind", "Rekor entry body");
        string version = Json.String(bodyDocument.RootElement, "apiVersion", "Rekor entry body");
        return new TlogEntry(logIndex, Convert.FromHexString(logIdHex), kind, version, integratedTime, set, null, body);
    }

    private static byte[] ReadTimestampAnnotation(string json)
    {
        using var document = Json.Parse(Encoding.UTF8.GetBytes(json), "the RFC 3161 timestamp annotation");
        return Json.Bytes(document.RootElement, "SignedRFC3161Timestamp", "timestamp annotation");
    }

    /// <summary>The simple-signing payload must be of cosign's type and name the manifest digest exactly.</summary>
    private static void CheckPayload(byte[] payload, byte[] manifestSha256)
    {
        using var document = Json.Parse(payload, "the simple-signing payload");
        var critical = Json.Object(document.RootElement, "critical", "simple-signing payload");
        string type = Json.String(critical, "type", "simple-signing critical");
        if (!string.Equals(type, "cosign container image signature", StringComparison.Ordinal))
        {
            throw BundleException.Malformed($"the simple-signing payload type \"{type}\" is not a cosign container image signature");
        }

        string digest = Json.String(Json.Object(critical, "image", "simple-signing critical"), "docker-manifest-digest", "simple-signing image");
        string expected = OciDigest.Format(manifestSha256);
        if (!string.Equals(digest, expected, StringComparison.Ordinal))
        {
            throw new BundleException(BundleFailureReason.DigestMismatch, string.Create(CultureInfo.InvariantCulture, $"the signature is for manifest {digest}, not {expected}"));
        }
    }
}
