using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Kars.Policy.Bundles;

namespace Kars.Policy.Tests.Bundles;

/// <summary>
/// A complete test Sigstore instance built in code: a Fulcio-like CA, a Rekor v1 log key, a CT log key, a trusted
/// root JSON over them, and a builder of keyless bundles (certificate with SCT, hashedrekord entry, SET, inclusion
/// proof in a five-leaf tree, signed checkpoint). Nothing comes from outside the repository.
/// </summary>
internal sealed class TestSigstore
{
    public static readonly DateTimeOffset CaStart = new(2029, 1, 1, 0, 0, 0, TimeSpan.Zero);
    public static readonly DateTimeOffset LeafStart = new(2030, 6, 1, 12, 0, 0, TimeSpan.Zero);
    public const string Identity = "https://github.com/example/policies/.github/workflows/sign.yml@refs/heads/main";
    public const string Issuer = "https://token.actions.githubusercontent.com";
    public const string SctOid = "1.3.6.1.4.1.11129.2.4.2";

    public TestSigstore()
    {
        CaKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=test-fulcio, O=kars-test", CaKey, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        Ca = request.CreateSelfSigned(CaStart, CaStart.AddYears(10));
        RekorKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        CtKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        RekorLogId = SHA256.HashData(RekorKey.ExportSubjectPublicKeyInfo());
        CtLogId = SHA256.HashData(CtKey.ExportSubjectPublicKeyInfo());
    }

    public ECDsa CaKey { get; }

    public X509Certificate2 Ca { get; }

    public ECDsa RekorKey { get; }

    public ECDsa CtKey { get; }

    public byte[] RekorLogId { get; }

    public byte[] CtLogId { get; }

    /// <summary>The trusted root JSON; <paramref name="extraTlogs"/> and <paramref name="timestampAuthorities"/> are raw JSON array items.</summary>
    public string TrustedRootJson(string? tlogValidFor = null, string? extraTlogs = null, string? timestampAuthorities = null)
    {
        string validFor = tlogValidFor ?? "{\"start\":\"2029-01-01T00:00:00Z\"}";
        string moreLogs = extraTlogs is null ? string.Empty : "," + extraTlogs;
        string tsas = timestampAuthorities ?? string.Empty;
        return $$$"""
        {"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1",
         "tlogs":[{"baseUrl":"https://rekor.test","hashAlgorithm":"SHA2_256","publicKey":{"rawBytes":"{{{B64(RekorKey.ExportSubjectPublicKeyInfo())}}}","keyDetails":"PKIX_ECDSA_P256_SHA_256","validFor":{{{validFor}}}},"logId":{"keyId":"{{{B64(RekorLogId)}}}"}}{{{moreLogs}}}],
         "certificateAuthorities":[{"subject":{"organization":"kars-test","commonName":"test-fulcio"},"uri":"https://fulcio.test","certChain":{"certificates":[{"rawBytes":"{{{B64(Ca.RawData)}}}"}]},"validFor":{"start":"2029-01-01T00:00:00Z"}}],
         "ctlogs":[{"baseUrl":"https://ct.test","hashAlgorithm":"SHA2_256","publicKey":{"rawBytes":"{{{B64(CtKey.ExportSubjectPublicKeyInfo())}}}","keyDetails":"PKIX_ECDSA_P256_SHA_256","validFor":{"start":"2029-01-01T00:00:00Z"}},"logId":{"keyId":"{{{B64(CtLogId)}}}"}}],
         "timestampAuthorities":[{{{tsas}}}]}
        """;
    }

    public SigstoreTrustedRoot TrustedRoot(string? tlogValidFor = null, string? extraTlogs = null, string? timestampAuthorities = null)
    {
        // No assertion library here: the benchmarks compile this file too.
        return SigstoreTrustedRoot.TryParse(Encoding.UTF8.GetBytes(TrustedRootJson(tlogValidFor, extraTlogs, timestampAuthorities)), out var root, out string? error)
            ? root
            : throw new InvalidOperationException(error);
    }

    public static string B64(ReadOnlySpan<byte> bytes) => Convert.ToBase64String(bytes);

    /// <summary>Issues a leaf certificate like Fulcio's: SAN, OIDC issuer extension, code-signing EKU, an embedded SCT.</summary>
    public (X509Certificate2 Leaf, ECDsa Key) IssueLeaf(
        string identity = Identity,
        string issuer = Issuer,
        X509Certificate2? issuingCa = null,
        ECDsa? ctKey = null,
        bool withSct = true,
        DateTimeOffset? notBefore = null,
        bool withCodeSigningEku = true)
    {
        issuingCa ??= Ca;
        var from = notBefore ?? LeafStart;
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=sigstore-leaf", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        if (withCodeSigningEku)
        {
            request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.3")], false));
        }

        var san = new SubjectAlternativeNameBuilder();
        if (identity.Contains('@', StringComparison.Ordinal) && !identity.Contains("://", StringComparison.Ordinal))
        {
            san.AddEmailAddress(identity);
        }
        else
        {
            san.AddUri(new Uri(identity));
        }

        request.CertificateExtensions.Add(san.Build(true));
        var writer = new AsnWriter(AsnEncodingRules.DER);
        writer.WriteCharacterString(UniversalTagNumber.UTF8String, issuer);
        request.CertificateExtensions.Add(new X509Extension("1.3.6.1.4.1.57264.1.8", writer.Encode(), false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(issuingCa, true, false));
        byte[] serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7f;
        var precert = request.Create(issuingCa, from, from.AddMinutes(10), serial);
        if (!withSct)
        {
            return (precert.CopyWithPrivateKey(key), key);
        }

        // The SCT signs the precertificate TBS (this certificate without the SCT extension), as RFC 6962 §3.2.
        byte[] tbs = new AsnReader(precert.RawData, AsnEncodingRules.DER).ReadSequence().ReadEncodedValue().ToArray();
        ulong timestamp = (ulong)from.ToUnixTimeMilliseconds();
        var signed = new List<byte> { 0, 0 };
        signed.AddRange(BigEndian(timestamp, 8));
        signed.AddRange([0, 1]);
        signed.AddRange(SHA256.HashData(issuingCa.PublicKey.ExportSubjectPublicKeyInfo()));
        signed.AddRange(BigEndian((ulong)tbs.Length, 3));
        signed.AddRange(tbs);
        signed.AddRange([0, 0]);
        var ct = ctKey ?? CtKey;
        byte[] signature = ct.SignData(signed.ToArray(), HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
        var sct = new List<byte> { 0 };
        sct.AddRange(SHA256.HashData(ct.ExportSubjectPublicKeyInfo()));
        sct.AddRange(BigEndian(timestamp, 8));
        sct.AddRange([0, 0, 4, 3]);
        sct.AddRange(BigEndian((ulong)signature.Length, 2));
        sct.AddRange(signature);
        var list = new List<byte>();
        list.AddRange(BigEndian((ulong)(sct.Count + 2), 2));
        list.AddRange(BigEndian((ulong)sct.Count, 2));
        list.AddRange(sct);
        var octets = new AsnWriter(AsnEncodingRules.DER);
        octets.WriteOctetString(list.ToArray());
        request.CertificateExtensions.Add(new X509Extension(SctOid, octets.Encode(), false));
        var leaf = request.Create(issuingCa, from, from.AddMinutes(10), serial);
        return (leaf.CopyWithPrivateKey(key), key);
    }

    public static byte[] BigEndian(ulong value, int bytes)
    {
        var result = new byte[bytes];
        for (int i = bytes - 1; i >= 0; i--)
        {
            result[i] = (byte)value;
            value >>= 8;
        }

        return result;
    }

    // RFC 6962 §2.1, written recursively (independent of the verifier's iterative audit-path walk).
    public static byte[] Mth(IReadOnlyList<byte[]> leaves)
    {
        if (leaves.Count == 1)
        {
            return SHA256.HashData([0, .. leaves[0]]);
        }

        int k = LargestPowerOfTwoBelow(leaves.Count);
        return SHA256.HashData([1, .. Mth(leaves.Take(k).ToList()), .. Mth(leaves.Skip(k).ToList())]);
    }

    public static List<byte[]> Path(int m, IReadOnlyList<byte[]> leaves)
    {
        if (leaves.Count == 1)
        {
            return [];
        }

        int k = LargestPowerOfTwoBelow(leaves.Count);
        if (m < k)
        {
            var path = Path(m, leaves.Take(k).ToList());
            path.Add(Mth(leaves.Skip(k).ToList()));
            return path;
        }
        else
        {
            var path = Path(m - k, leaves.Skip(k).ToList());
            path.Add(Mth(leaves.Take(k).ToList()));
            return path;
        }
    }

    private static int LargestPowerOfTwoBelow(int n)
    {
        int k = 1;
        while (k * 2 < n)
        {
            k *= 2;
        }

        return k;
    }
}

/// <summary>Builds one keyless (or key-signed) bundle v0.3; tests change a field to forge one part.</summary>
internal sealed class BundleBuilder(TestSigstore sigstore)
{
    public byte[] Artifact { get; set; } = Encoding.UTF8.GetBytes("egress allowlist v1\n");

    public X509Certificate2? Leaf { get; set; }

    public ECDsa? SigningKey { get; set; }

    public string? PublicKeyPem { get; set; }

    public long? IntegratedTime { get; set; }

    public long LogIndex { get; set; } = 12345;

    /// <summary>Gets or sets a change to the integrated time after the SET is signed (a forged time).</summary>
    public long IntegratedTimeTamper { get; set; }

    public bool IncludeSet { get; set; } = true;

    public bool IncludeProof { get; set; } = true;

    /// <summary>Gets or sets a value indicating whether the bundle has a transparency-log entry at all.</summary>
    public bool IncludeEntry { get; set; } = true;

    /// <summary>Gets or sets the artifact the log entry describes (another one forges the entry).</summary>
    public byte[]? LoggedArtifact { get; set; }

    /// <summary>Gets or sets a value indicating whether the proof and checkpoint describe a different tree than the one holding the entry.</summary>
    public bool ProofForAnotherTree { get; set; }

    public string MediaType { get; set; } = "application/vnd.dev.sigstore.bundle.v0.3+json";

    /// <summary>Gets or sets the RFC 3161 timestamp source: given the signature, a TimeStampResp (none when null).</summary>
    public Func<byte[], byte[]>? Timestamp { get; set; }

    /// <summary>Gets or sets a Rekor v2 log: the entry becomes hashedrekord 0.0.2 in that log, with an Ed25519 checkpoint and no SET.</summary>
    public TestRekorV2Log? RekorV2 { get; set; }

    /// <summary>Gets or sets the checkpoint's origin line (default: the log's own origin); the log still signs it.</summary>
    public string? CheckpointOrigin { get; set; }

    public string Build()
    {
        if (Leaf is null && PublicKeyPem is null)
        {
            (Leaf, SigningKey) = sigstore.IssueLeaf();
        }

        byte[] signature = SigningKey!.SignData(Artifact, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
        string verifierPem = PublicKeyPem ?? Leaf!.ExportCertificatePem();
        string body = RekorV2 is null
            ? $$$"""{"apiVersion":"0.0.1","kind":"hashedrekord","spec":{"data":{"hash":{"algorithm":"sha256","value":"{{{Convert.ToHexStringLower(SHA256.HashData(LoggedArtifact ?? Artifact))}}}"}},"signature":{"content":"{{{TestSigstore.B64(signature)}}}","publicKey":{"content":"{{{TestSigstore.B64(Encoding.UTF8.GetBytes(verifierPem))}}}"}""" + "}}}"
            : $$$"""{"apiVersion":"0.0.2","kind":"hashedrekord","spec":{"hashedRekordV002":{"data":{"algorithm":"SHA2_256","digest":"{{{TestSigstore.B64(SHA256.HashData(LoggedArtifact ?? Artifact))}}}"},"signature":{"content":"{{{TestSigstore.B64(signature)}}}","verifier":{{{V2Verifier()}}}}""" + "}}}";
        byte[] bodyBytes = Encoding.UTF8.GetBytes(body);
        long integrated = IntegratedTime ?? (Leaf is null ? TestSigstore.LeafStart : new DateTimeOffset(Leaf.NotBefore.ToUniversalTime())).AddMinutes(1).ToUnixTimeSeconds();
        string setPayload = $$$"""{"body":"{{{TestSigstore.B64(bodyBytes)}}}","integratedTime":{{{integrated}}},"logID":"{{{Convert.ToHexStringLower(sigstore.RekorLogId)}}}","logIndex":{{{LogIndex}}}}""";
        byte[] set = sigstore.RekorKey.SignData(Encoding.UTF8.GetBytes(setPayload), HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);

        var leaves = new List<byte[]> { "a"u8.ToArray(), "b"u8.ToArray(), bodyBytes, "d"u8.ToArray(), "e"u8.ToArray() };
        const int index = 2;
        var proofHashes = TestSigstore.Path(index, leaves);
        byte[] root = TestSigstore.Mth(leaves);
        int size = leaves.Count;
        if (ProofForAnotherTree)
        {
            // A genuine, correctly signed checkpoint and proof, but of a tree that holds another entry at that index.
            var other = new List<byte[]>(leaves) { [2] = "not this entry"u8.ToArray() };
            proofHashes = TestSigstore.Path(index, other);
            root = TestSigstore.Mth(other);
        }

        string origin = CheckpointOrigin ?? RekorV2?.Origin ?? "rekor.test - 42";
        string text = $"{origin}\n{size}\n{TestSigstore.B64(root)}\n";
        byte[] noteSignature = RekorV2 is { } v2
            ? v2.Sign(Encoding.UTF8.GetBytes(text))
            : sigstore.RekorKey.SignData(Encoding.UTF8.GetBytes(text), HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
        byte[] logId = RekorV2?.LogId ?? sigstore.RekorLogId;
        string checkpoint = text + "\n\u2014 " + (RekorV2?.Origin ?? "rekor.test") + " " + TestSigstore.B64([.. logId.AsSpan(0, 4), .. noteSignature]) + "\n";

        string material = Leaf is not null
            ? $$$"""{"certificate":{"rawBytes":"{{{TestSigstore.B64(Leaf.RawData)}}}"}"""
            : """{"publicKey":{"hint":"test"}""";
        string promise = IncludeSet && RekorV2 is null ? $$$""","inclusionPromise":{"signedEntryTimestamp":"{{{TestSigstore.B64(set)}}}"}""" : string.Empty;
        string proof = IncludeProof
            ? $$$""","inclusionProof":{"logIndex":"{{{index}}}","rootHash":"{{{TestSigstore.B64(root)}}}","treeSize":"{{{size}}}","hashes":[{{{string.Join(",", proofHashes.Select(h => "\"" + TestSigstore.B64(h) + "\""))}}}],"checkpoint":{"envelope":{{{System.Text.Json.JsonSerializer.Serialize(checkpoint)}}}}}"""
            : string.Empty;
        string timestamps = Timestamp is { } stamp
            ? $$$""","timestampVerificationData":{"rfc3161Timestamps":[{"signedTimestamp":"{{{TestSigstore.B64(stamp(signature))}}}"}]}"""
            : string.Empty;
        string kindVersion = RekorV2 is null ? "0.0.1" : "0.0.2";
        string integratedTime = RekorV2 is null ? ",\"integratedTime\":\"" + (integrated + IntegratedTimeTamper).ToString(System.Globalization.CultureInfo.InvariantCulture) + "\"" : string.Empty;
        string entry = IncludeEntry
            ? $$$"""{"logIndex":"{{{LogIndex}}}","logId":{"keyId":"{{{TestSigstore.B64(logId)}}}"},"kindVersion":{"kind":"hashedrekord","version":"{{{kindVersion}}}"}{{{integratedTime}}}{{{promise}}}{{{proof}}},"canonicalizedBody":"{{{TestSigstore.B64(bodyBytes)}}}"}"""
            : string.Empty;
        return $$$"""
            {"mediaType":"{{{MediaType}}}",
             "verificationMaterial":{{{material}}},
               "tlogEntries":[{{{entry}}}]{{{timestamps}}}},
             "messageSignature":{"messageDigest":{"algorithm":"SHA2_256","digest":"{{{TestSigstore.B64(SHA256.HashData(Artifact))}}}"},"signature":"{{{TestSigstore.B64(signature)}}}"}}
            """;
    }

    private string V2Verifier() => Leaf is not null
        ? $$$"""{"x509Certificate":{"rawBytes":"{{{TestSigstore.B64(Leaf.RawData)}}}"},"keyDetails":"PKIX_ECDSA_P256_SHA_256"}"""
        : $$$"""{"publicKey":{"rawBytes":"{{{TestSigstore.B64(SigningKey!.ExportSubjectPublicKeyInfo())}}}"},"keyDetails":"PKIX_ECDSA_P256_SHA_256"}""";
}
