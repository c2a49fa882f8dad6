using System.Globalization;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;

namespace Kars.Policy.Bundles;

/// <summary>What was proven by a successful verification.</summary>
internal sealed record VerifiedSignature(string ArtifactDigest, string Signer, DateTimeOffset? SignedAt);

/// <summary>
/// The signed content with the key or certificate that signed it, and its log entries, common to Sigstore bundles and
/// the legacy cosign formats; <see cref="Verify"/> runs every check of keyless and key-based verification.
/// </summary>
internal sealed class SignedMaterial
{
    public X509Certificate2? Certificate { get; init; }

    public SigningKey? BundleKey { get; init; }

    public required byte[] Signature { get; init; }

    /// <summary>Gets the message-signature digest claimed by the bundle (an unauthenticated hint), if any.</summary>
    public (HashAlgorithmName Algorithm, byte[] Digest)? MessageDigest { get; init; }

    /// <summary>Gets the DSSE envelope (payload type and decoded payload) when the content is DSSE.</summary>
    public (string PayloadType, byte[] Payload)? Dsse { get; init; }

    public IReadOnlyList<TlogEntry> TlogEntries { get; init; } = [];

    public IReadOnlyList<byte[]> Timestamps { get; init; } = [];

    /// <summary>Gets the bundle format version (1, 2, 3) or 0 for the legacy cosign formats.</summary>
    public int BundleVersion { get; init; }

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Maintainability", "CA1508:Avoid dead conditional code", Justification = "False positive: chain is assigned inside the inner loop over the certificate authorities.")]
    public VerifiedSignature Verify(SigstoreArtifact artifact, SignerPolicy policy, SigstoreTrustedRoot root, SigstoreVerifierOptions options)
    {
        // 1. The signer kind must be the one the policy names.
        SigningKey key;
        if (policy.Key is { } expectedKey)
        {
            if (Certificate is not null)
            {
                throw new BundleException(BundleFailureReason.IdentityMismatch, "the signature was made with a certificate, but a public key was required");
            }

            if (BundleKey is not null && !BundleKey.SameKey(expectedKey.Spki))
            {
                throw new BundleException(BundleFailureReason.SignatureInvalid, "the signature names another public key");
            }

            key = expectedKey;
        }
        else
        {
            if (Certificate is null)
            {
                throw new BundleException(BundleFailureReason.IdentityMismatch, "the signature was made with a key, but a certificate identity was required");
            }

            key = SigningKey.FromCertificate(Certificate, "the signing certificate");
        }

        // 2. The signature over the artifact (message) or over the DSSE PAE, and the binding to the artifact.
        byte[] signedDigestForLog;
        HashAlgorithmName logHash = HashAlgorithmName.SHA256;
        if (Dsse is { } dsse)
        {
            byte[] pae = Pae(dsse.PayloadType, dsse.Payload);
            if (!key.VerifyData(pae, Signature))
            {
                throw new BundleException(BundleFailureReason.SignatureInvalid, "the DSSE signature does not verify");
            }

            CheckStatement(dsse.PayloadType, dsse.Payload, artifact, options);
            signedDigestForLog = SHA256.HashData(pae);
        }
        else
        {
            var hash = key.DefaultHash;
            if (MessageDigest is { } claimed && claimed.Algorithm != hash && key.Kind is not KeyKind.Ed25519)
            {
                // The bundle says which hash was signed (P-384/P-521 clients sometimes sign SHA-256); only SHA-2 is accepted.
                hash = claimed.Algorithm;
            }

            bool ok = artifact.Bytes is { } bytes
                ? key.VerifyData(bytes.Span, Signature, hash)
                : key.VerifyDigest(artifact.Hash(hash), hash, Signature);
            if (!ok)
            {
                throw new BundleException(BundleFailureReason.SignatureInvalid, "the signature does not verify over the artifact");
            }

            if (MessageDigest is { } md && !md.Digest.AsSpan().SequenceEqual(artifact.Hash(md.Algorithm)))
            {
                throw new BundleException(BundleFailureReason.DigestMismatch, "the bundle's message digest is not the artifact's digest");
            }

            logHash = hash;
            signedDigestForLog = artifact.Hash(hash);
        }

        // 3. Transparency-log evidence: every entry present must verify and match this signature.
        var verifiedTimes = new List<DateTimeOffset>();
        var logsWithoutTime = new List<LogInstance>();
        bool rekorV2 = false;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var entry in TlogEntries)
        {
            if (!seen.Add(Convert.ToHexStringLower(entry.LogId) + "/" + entry.LogIndex.ToString(CultureInfo.InvariantCulture)))
            {
                throw new BundleException(BundleFailureReason.TransparencyLogInvalid, "the same log entry appears twice");
            }

            var (log, time) = Transparency.Verify(entry, root);
            rekorV2 |= log.Key.Kind == KeyKind.Ed25519;
            CheckBody(entry, key, signedDigestForLog, logHash);
            if (time is { } t)
            {
                verifiedTimes.Add(t); // inside the log key's window: checked with the signed entry timestamp
            }
            else
            {
                logsWithoutTime.Add(log);
            }
        }

        bool needLog = Certificate is not null || options.RequireTransparencyLog;
        if (needLog && TlogEntries.Count == 0)
        {
            throw new BundleException(BundleFailureReason.TransparencyLogInvalid, "there is no transparency-log entry, and one is required");
        }

        // 4. RFC 3161 timestamps over the signature: each present must verify; Rekor v2 needs one.
        var timestampTimes = new List<DateTimeOffset>(Timestamps.Count);
        foreach (byte[] timestamp in Timestamps)
        {
            timestampTimes.Add(Bundles.Timestamps.Verify(timestamp, Signature, root));
        }

        verifiedTimes.AddRange(timestampTimes);
        if (rekorV2 && Timestamps.Count == 0)
        {
            throw new BundleException(BundleFailureReason.TransparencyLogInvalid, "a Rekor v2 entry needs an RFC 3161 timestamp, and there is none");
        }

        // 4b. Log evidence without a signed entry timestamp (Rekor v2, or a Rekor v1 proof alone) is placed in time by
        //     the verified timestamps: each must fall inside that log key's validity window. With no time at all the
        //     evidence cannot be placed, so it is refused (fail closed).
        foreach (var log in logsWithoutTime)
        {
            if (timestampTimes.Count == 0)
            {
                throw new BundleException(BundleFailureReason.TransparencyLogInvalid, $"the entry of log {log.BaseUrl} has no verified signing time (no signed entry timestamp, no RFC 3161 timestamp), so it cannot be checked against the log key's validity window");
            }

            foreach (var t in timestampTimes)
            {
                if (!log.ValidFor.Contains(t))
                {
                    throw new BundleException(BundleFailureReason.TransparencyLogInvalid, $"the timestamp time {t:O} is outside the validity window of log {log.BaseUrl}'s key");
                }
            }
        }

        DateTimeOffset? signedAt = verifiedTimes.Count > 0 ? verifiedTimes.Min() : null;
        if (Certificate is null)
        {
            return new VerifiedSignature(artifact.Digest, key.Id, signedAt);
        }

        // 5. Keyless: the certificate at every verified time, its SCT, and the identity.
        if (verifiedTimes.Count == 0)
        {
            throw new BundleException(BundleFailureReason.TransparencyLogInvalid, "there is no verified signing time (no signed entry timestamp and no RFC 3161 timestamp)");
        }

        X509Certificate2[]? chain = null;
        foreach (var t in verifiedTimes)
        {
            chain = null;
            foreach (var authority in root.CertificateAuthorities)
            {
                if (authority.ValidFor.Contains(t) && Certificates.BuildChain(Certificate, authority.Chain, t, Certificates.CodeSigningEku) is { } built)
                {
                    chain = built;
                    break;
                }
            }

            if (chain is null)
            {
                throw new BundleException(BundleFailureReason.UntrustedRoot, $"the signing certificate does not chain to a certificate authority of the trusted root valid at {t:O}");
            }
        }

        if (!Certificates.HasDigitalSignatureUsage(Certificate))
        {
            throw new BundleException(BundleFailureReason.UntrustedRoot, "the signing certificate is not for digital signatures");
        }

        if (options.RequireSignedCertificateTimestamp && !Certificates.HasValidSct(Certificate, chain![1], root.CtLogs))
        {
            throw new BundleException(BundleFailureReason.UntrustedRoot, "the signing certificate has no SCT that verifies under a CT log of the trusted root");
        }

        var names = Certificates.SubjectAlternativeNames(Certificate);
        string? issuer = Certificates.OidcIssuer(Certificate);
        if (!string.Equals(issuer, policy.Issuer, StringComparison.Ordinal))
        {
            throw new BundleException(BundleFailureReason.IdentityMismatch, $"the certificate's OIDC issuer is \"{issuer}\", not \"{policy.Issuer}\"");
        }

        if (!policy.MatchesIdentity(names))
        {
            throw new BundleException(BundleFailureReason.IdentityMismatch, $"the certificate's identity ({string.Join(", ", names)}) does not match {policy.Description}");
        }

        return new VerifiedSignature(artifact.Digest, names.First(n => policy.MatchesIdentity([n])), signedAt);
    }

    /// <summary>DSSE pre-authentication encoding: <c>"DSSEv1" SP len(type) SP type SP len(payload) SP payload</c>.</summary>
    public static byte[] Pae(string payloadType, byte[] payload)
    {
        byte[] type = Encoding.UTF8.GetBytes(payloadType);
        byte[] head = Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture, $"DSSEv1 {type.Length} "));
        byte[] middle = Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture, $" {payload.Length} "));
        return [.. head, .. type, .. middle, .. payload];
    }

    private static void CheckStatement(string payloadType, byte[] payload, SigstoreArtifact artifact, SigstoreVerifierOptions options)
    {
        if (payloadType != "application/vnd.in-toto+json")
        {
            throw BundleException.Malformed($"the DSSE payload type \"{payloadType}\" is not an in-toto statement");
        }

        using var statement = Json.Parse(payload, "the in-toto statement");
        var top = statement.RootElement;
        string type = Json.String(top, "_type", "in-toto statement");
        if (type is not ("https://in-toto.io/Statement/v0.1" or "https://in-toto.io/Statement/v1"))
        {
            throw BundleException.Malformed($"the statement type \"{type}\" is not supported");
        }

        string predicateType = Json.String(top, "predicateType", "in-toto statement");
        if (options.AllowedPredicateTypes is { } allowed && !allowed.Contains(predicateType, StringComparer.Ordinal))
        {
            throw new BundleException(BundleFailureReason.IdentityMismatch, $"the statement's predicate type \"{predicateType}\" is not allowed");
        }

        string expected = Convert.ToHexStringLower(artifact.Sha256);
        foreach (var subject in Json.Array(top, "subject", "in-toto statement").EnumerateArray())
        {
            var digests = Json.Object(subject, "digest", "in-toto subject");
            if (Json.OptionalString(digests, "sha256", "in-toto subject digest") is { } hex && string.Equals(hex, expected, StringComparison.Ordinal))
            {
                return;
            }
        }

        throw new BundleException(BundleFailureReason.DigestMismatch, $"no subject of the statement has the artifact digest {artifact.Digest}");
    }

    /// <summary>The log entry's body must describe exactly this signature, this key or certificate, and this artifact.</summary>
    private void CheckBody(TlogEntry entry, SigningKey key, byte[] signedDigest, HashAlgorithmName hash)
    {
        using var document = Json.Parse(entry.Body, "the log entry body");
        var body = document.RootElement;
        string kind = Json.String(body, "kind", "log entry body");
        string version = Json.String(body, "apiVersion", "log entry body");
        if (kind != entry.Kind || version != entry.Version)
        {
            throw new BundleException(BundleFailureReason.TransparencyLogInvalid, $"the log entry says {entry.Kind}/{entry.Version} but its body is {kind}/{version}");
        }

        var spec = Json.Object(body, "spec", "log entry body");
        switch ((kind, version, Dsse is not null))
        {
            case ("hashedrekord", "0.0.1", false):
                {
                    var hashed = Json.Object(Json.Object(spec, "data", "hashedrekord"), "hash", "hashedrekord data");
                    string algorithm = Json.String(hashed, "algorithm", "hashedrekord hash");
                    string value = Json.String(hashed, "value", "hashedrekord hash");
                    string expectedAlgorithm = hash == HashAlgorithmName.SHA384 ? "sha384" : hash == HashAlgorithmName.SHA512 ? "sha512" : "sha256";
                    if (algorithm != expectedAlgorithm || value != Convert.ToHexStringLower(signedDigest))
                    {
                        throw Mismatch("the artifact digest");
                    }

                    var signature = Json.Object(spec, "signature", "hashedrekord");
                    CheckSignatureBytes(Json.String(signature, "content", "hashedrekord signature"));
                    CheckPemVerifier(Json.String(Json.Object(signature, "publicKey", "hashedrekord signature"), "content", "hashedrekord public key"), key);
                    break;
                }

            case ("dsse", "0.0.1", true):
                {
                    var payloadHash = Json.Object(spec, "payloadHash", "dsse");
                    if (Json.String(payloadHash, "algorithm", "dsse payloadHash") != "sha256"
                        || Json.String(payloadHash, "value", "dsse payloadHash") != Convert.ToHexStringLower(SHA256.HashData(Dsse!.Value.Payload)))
                    {
                        throw Mismatch("the DSSE payload");
                    }

                    var signatures = Json.Array(spec, "signatures", "dsse");
                    if (signatures.GetArrayLength() != 1)
                    {
                        throw Mismatch("the DSSE signature");
                    }

                    var only = signatures[0];
                    CheckSignatureBytes(Json.String(only, "signature", "dsse signature"));
                    CheckPemVerifier(Json.String(only, "verifier", "dsse signature"), key);
                    break;
                }

            case ("hashedrekord", "0.0.2", _):
                {
                    var v2 = Json.Object(spec, "hashedRekordV002", "hashedrekord");
                    var data = Json.Object(v2, "data", "hashedrekord 0.0.2");
                    string expectedAlgorithm = hash == HashAlgorithmName.SHA384 ? "SHA2_384" : hash == HashAlgorithmName.SHA512 ? "SHA2_512" : "SHA2_256";
                    if (Json.String(data, "algorithm", "hashedrekord 0.0.2 data") != expectedAlgorithm
                        || !Json.Bytes(data, "digest", "hashedrekord 0.0.2 data").AsSpan().SequenceEqual(signedDigest))
                    {
                        throw Mismatch(Dsse is null ? "the artifact digest" : "the DSSE envelope");
                    }

                    var signature = Json.Object(v2, "signature", "hashedrekord 0.0.2");
                    CheckSignatureBytes(Json.String(signature, "content", "hashedrekord 0.0.2 signature"));
                    var verifier = Json.Object(signature, "verifier", "hashedrekord 0.0.2 signature");
                    if (Json.OptionalObject(verifier, "x509Certificate", "verifier") is { } x509)
                    {
                        byte[] der = Json.Bytes(x509, "rawBytes", "verifier certificate");
                        if (Certificate is null || !der.AsSpan().SequenceEqual(Certificate.RawData))
                        {
                            throw Mismatch("the signing certificate");
                        }
                    }
                    else if (Json.OptionalObject(verifier, "publicKey", "verifier") is { } publicKey)
                    {
                        if (!key.SameKey(Json.Bytes(publicKey, "rawBytes", "verifier public key")) || Certificate is not null)
                        {
                            throw Mismatch("the public key");
                        }
                    }
                    else
                    {
                        throw Mismatch("the verifier");
                    }

                    break;
                }

            default:
                throw new BundleException(BundleFailureReason.TransparencyLogInvalid, $"log entries of kind {kind}/{version} are not supported for this content");
        }
    }

    private void CheckSignatureBytes(string base64)
    {
        if (!Json.Base64(base64, "log entry signature").AsSpan().SequenceEqual(Signature))
        {
            throw Mismatch("the signature");
        }
    }

    private void CheckPemVerifier(string base64Pem, SigningKey key)
    {
        string pem = Encoding.UTF8.GetString(Json.Base64(base64Pem, "log entry verifier"));
        if (!PemEncoding.TryFind(pem, out var fields))
        {
            throw Mismatch("the verifier");
        }

        byte[] der = Json.Base64(pem[fields.Base64Data].ReplaceLineEndings(string.Empty), "log entry verifier PEM");
        bool same = pem[fields.Label] switch
        {
            "CERTIFICATE" => Certificate is not null && der.AsSpan().SequenceEqual(Certificate.RawData),
            "PUBLIC KEY" => key.SameKey(der),
            _ => false,
        };
        if (!same)
        {
            throw Mismatch(Certificate is null ? "the public key" : "the signing certificate");
        }
    }

    private static BundleException Mismatch(string what) =>
        new(BundleFailureReason.TransparencyLogInvalid, $"the log entry does not match {what}");
}
