using System.IO.Abstractions.TestingHelpers;
using System.Security.Cryptography;
using System.Text;
using Kars.Policy.Bundles;
using Org.BouncyCastle.Crypto.Generators;
using Org.BouncyCastle.Crypto.Parameters;
using Org.BouncyCastle.Crypto.Signers;
using Org.BouncyCastle.Security;

namespace Kars.Policy.Tests.Bundles;

public sealed class KeyAndLayoutTests
{
    private static readonly byte[] Blob = Encoding.UTF8.GetBytes("apiVersion: kars.dev/v1alpha1\n");
    private static readonly SigstoreVerifier NoTlog = new(SigstoreTrustedRoot.Empty, new SigstoreVerifierOptions { RequireTransparencyLog = false });

    public static TheoryData<string> KeyKinds => ["P-256", "P-384", "P-521", "RSA-PKCS1", "RSA-PSS", "Ed25519"];

    [Theory]
    [MemberData(nameof(KeyKinds))]
    public void Cosign_blob_signatures_verify_with_every_supported_key_and_fail_for_another_blob(string kind)
    {
        var (pem, sign) = NewKey(kind);
        string signature = Convert.ToBase64String(sign(Blob));

        NoTlog.VerifyCosignBlob(Blob, signature, null, SignerPolicy.ForPublicKey(pem)).IsVerified.Should().BeTrue();
        NoTlog.VerifyCosignBlob("tampered"u8.ToArray(), signature, null, SignerPolicy.ForPublicKey(pem))
            .FailureReason.Should().Be(BundleFailureReason.SignatureInvalid);
    }

    [Fact]
    public void A_key_signature_without_log_evidence_is_refused_when_the_log_is_required()
    {
        var (pem, sign) = NewKey("P-256");

        new SigstoreVerifier(SigstoreTrustedRoot.Empty).VerifyCosignBlob(Blob, Convert.ToBase64String(sign(Blob)), null, SignerPolicy.ForPublicKey(pem))
            .FailureReason.Should().Be(BundleFailureReason.TransparencyLogInvalid);
    }

    [Fact]
    public void A_signature_that_is_not_base64_is_malformed()
    {
        var (pem, _) = NewKey("P-256");

        NoTlog.VerifyCosignBlob(Blob, "not base64!", null, SignerPolicy.ForPublicKey(pem))
            .FailureReason.Should().Be(BundleFailureReason.CanonicalFormViolation);
    }

    [Fact]
    public void A_PEM_that_is_not_a_key_is_refused_at_policy_creation()
    {
        FluentActions.Invoking(() => SignerPolicy.ForPublicKey("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))
            .Should().Throw<FormatException>();
    }

    [Fact]
    public void An_OCI_layout_with_a_legacy_sig_tag_verifies_and_recomputes_every_blob_digest()
    {
        var (pem, sign) = NewKey("P-256");
        var layout = new LayoutBuilder();
        string manifestDigest = layout.AddImage();
        byte[] payload = Encoding.UTF8.GetBytes($$$"""{"critical":{"identity":{"docker-reference":"registry.test/policy"},"image":{"docker-manifest-digest":"{{{manifestDigest}}}"},"type":"cosign container image signature"},"optional":null}""");
        string payloadDigest = layout.AddSignature(manifestDigest, payload, Convert.ToBase64String(sign(payload)));
        var signer = SignerPolicy.ForPublicKey(pem);

        var result = NoTlog.VerifyOciLayout(layout.FileSystem, "/layout", manifestDigest, signer);
        result.IsVerified.Should().BeTrue(result.Message);
        result.ArtifactDigest.Should().Be(manifestDigest);

        // A blob whose content no longer hashes to its name.
        layout.FileSystem.File.WriteAllBytes("/layout/blobs/sha256/" + payloadDigest[7..], Encoding.UTF8.GetBytes("{}"));
        NoTlog.VerifyOciLayout(layout.FileSystem, "/layout", manifestDigest, signer).FailureReason.Should().Be(BundleFailureReason.DigestMismatch);
    }

    [Fact]
    public void A_signature_for_another_manifest_is_DigestMismatch()
    {
        var (pem, sign) = NewKey("P-256");
        var layout = new LayoutBuilder();
        string manifestDigest = layout.AddImage();
        byte[] payload = Encoding.UTF8.GetBytes("""{"critical":{"identity":{"docker-reference":"r"},"image":{"docker-manifest-digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000"},"type":"cosign container image signature"},"optional":null}""");
        layout.AddSignature(manifestDigest, payload, Convert.ToBase64String(sign(payload)));

        NoTlog.VerifyOciLayout(layout.FileSystem, "/layout", manifestDigest, SignerPolicy.ForPublicKey(pem))
            .FailureReason.Should().Be(BundleFailureReason.DigestMismatch);
    }

    [Fact]
    public void Layout_failures_have_their_own_reasons()
    {
        var (pem, _) = NewKey("P-256");
        var signer = SignerPolicy.ForPublicKey(pem);
        var layout = new LayoutBuilder();
        string manifestDigest = layout.AddImage();

        NoTlog.VerifyOciLayout(layout.FileSystem, "/layout", manifestDigest, signer).FailureReason.Should().Be(BundleFailureReason.Unsigned);
        NoTlog.VerifyOciLayout(layout.FileSystem, "/layout", "sha256:ABC", signer).FailureReason.Should().Be(BundleFailureReason.InvalidReference);
        NoTlog.VerifyOciLayout(layout.FileSystem, "/elsewhere", manifestDigest, signer).FailureReason.Should().Be(BundleFailureReason.NotFound);
        layout.FileSystem.File.WriteAllText("/layout/index.json", "{\"manifests\":[");
        NoTlog.VerifyOciLayout(layout.FileSystem, "/layout", manifestDigest, signer).FailureReason.Should().Be(BundleFailureReason.CanonicalFormViolation);
    }

    [Fact]
    public void A_referrer_bundle_attached_to_the_manifest_verifies_with_its_DSSE_subject()
    {
        var sigstore = new TestSigstore();
        var layout = new LayoutBuilder();
        string manifestDigest = layout.AddImage();
        string statement = $$$"""{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"registry.test/policy","digest":{"sha256":"{{{manifestDigest[7..]}}}"}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}}""";
        var (leaf, key) = sigstore.IssueLeaf();
        string bundle = DsseBundle(sigstore, leaf, key, Encoding.UTF8.GetBytes(statement));
        layout.AddReferrer(manifestDigest, Encoding.UTF8.GetBytes(bundle));
        var verifier = new SigstoreVerifier(sigstore.TrustedRoot());

        var result = verifier.VerifyOciLayout(layout.FileSystem, "/layout", manifestDigest, SignerPolicy.ForIdentity(TestSigstore.Identity, TestSigstore.Issuer));

        result.IsVerified.Should().BeTrue(result.Message);
        result.ArtifactDigest.Should().Be(manifestDigest);
        new SigstoreVerifier(sigstore.TrustedRoot(), new SigstoreVerifierOptions { AllowedPredicateTypes = ["https://example.test/other"] })
            .VerifyOciLayout(layout.FileSystem, "/layout", manifestDigest, SignerPolicy.ForIdentity(TestSigstore.Identity, TestSigstore.Issuer))
            .IsVerified.Should().BeFalse();
    }

    /// <summary>A keyless DSSE bundle v0.3 with a dsse/0.0.1 entry, SET, and a one-leaf tree proof.</summary>
    internal static string DsseBundle(TestSigstore sigstore, System.Security.Cryptography.X509Certificates.X509Certificate2 leaf, ECDsa key, byte[] statement)
    {
        const string payloadType = "application/vnd.in-toto+json";
        byte[] pae = [.. Encoding.ASCII.GetBytes($"DSSEv1 {payloadType.Length} {payloadType} {statement.Length} "), .. statement];
        byte[] signature = key.SignData(pae, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
        string body = $$$"""{"apiVersion":"0.0.1","kind":"dsse","spec":{"payloadHash":{"algorithm":"sha256","value":"{{{Convert.ToHexStringLower(SHA256.HashData(statement))}}}"},"signatures":[{"signature":"{{{TestSigstore.B64(signature)}}}","verifier":"{{{TestSigstore.B64(Encoding.UTF8.GetBytes(leaf.ExportCertificatePem()))}}}"}]}}""";
        byte[] bodyBytes = Encoding.UTF8.GetBytes(body);
        long integrated = TestSigstore.LeafStart.AddMinutes(2).ToUnixTimeSeconds();
        string setPayload = $$$"""{"body":"{{{TestSigstore.B64(bodyBytes)}}}","integratedTime":{{{integrated}}},"logID":"{{{Convert.ToHexStringLower(sigstore.RekorLogId)}}}","logIndex":7}""";
        byte[] set = sigstore.RekorKey.SignData(Encoding.UTF8.GetBytes(setPayload), HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
        byte[] root = TestSigstore.Mth([bodyBytes]);
        string text = $"rekor.test - 42\n1\n{TestSigstore.B64(root)}\n";
        byte[] note = sigstore.RekorKey.SignData(Encoding.UTF8.GetBytes(text), HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
        string checkpoint = text + "\n\u2014 rekor.test " + TestSigstore.B64([.. sigstore.RekorLogId.AsSpan(0, 4), .. note]) + "\n";
        return $$$"""
            {"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json",
             "verificationMaterial":{"certificate":{"rawBytes":"{{{TestSigstore.B64(leaf.RawData)}}}"},
               "tlogEntries":[{"logIndex":"7","logId":{"keyId":"{{{TestSigstore.B64(sigstore.RekorLogId)}}}"},"kindVersion":{"kind":"dsse","version":"0.0.1"},"integratedTime":"{{{integrated}}}",
                 "inclusionPromise":{"signedEntryTimestamp":"{{{TestSigstore.B64(set)}}}"},
                 "inclusionProof":{"logIndex":"0","rootHash":"{{{TestSigstore.B64(root)}}}","treeSize":"1","hashes":[],"checkpoint":{"envelope":{{{System.Text.Json.JsonSerializer.Serialize(checkpoint)}}}}},
                 "canonicalizedBody":"{{{TestSigstore.B64(bodyBytes)}}}"}]},
             "dsseEnvelope":{"payload":"{{{TestSigstore.B64(statement)}}}","payloadType":"{{{payloadType}}}","signatures":[{"sig":"{{{TestSigstore.B64(signature)}}}"}]}}
            """;
    }

    private static (string Pem, Func<byte[], byte[]> Sign) NewKey(string kind)
    {
        switch (kind)
        {
            case "P-256":
            case "P-384":
            case "P-521":
                var (curve, hash) = kind switch
                {
                    "P-256" => (ECCurve.NamedCurves.nistP256, HashAlgorithmName.SHA256),
                    "P-384" => (ECCurve.NamedCurves.nistP384, HashAlgorithmName.SHA384),
                    _ => (ECCurve.NamedCurves.nistP521, HashAlgorithmName.SHA512),
                };
                var ec = ECDsa.Create(curve);
                return (ec.ExportSubjectPublicKeyInfoPem(), data => ec.SignData(data, hash, DSASignatureFormat.Rfc3279DerSequence));
            case "RSA-PKCS1":
            case "RSA-PSS":
                var rsa = RSA.Create(2048);
                var padding = kind == "RSA-PSS" ? RSASignaturePadding.Pss : RSASignaturePadding.Pkcs1;
                return (rsa.ExportSubjectPublicKeyInfoPem(), data => rsa.SignData(data, HashAlgorithmName.SHA256, padding));
            default:
                var generator = new Ed25519KeyPairGenerator();
                generator.Init(new Ed25519KeyGenerationParameters(new SecureRandom()));
                var pair = generator.GenerateKeyPair();
                byte[] raw = ((Ed25519PublicKeyParameters)pair.Public).GetEncoded();
                byte[] spki = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00, .. raw];
                string pem = new string(PemEncoding.Write("PUBLIC KEY", spki));
                return (pem, data =>
                {
                    var signer = new Ed25519Signer();
                    signer.Init(true, pair.Private);
                    signer.BlockUpdate(data, 0, data.Length);
                    return signer.GenerateSignature();
                });
        }
    }

    /// <summary>An OCI image layout on a mock file system, written as cosign and oras write it.</summary>
    private sealed class LayoutBuilder
    {
        private readonly List<string> _index = [];

        public LayoutBuilder()
        {
            FileSystem.Directory.CreateDirectory("/layout/blobs/sha256");
            FileSystem.File.WriteAllText("/layout/oci-layout", "{\"imageLayoutVersion\":\"1.0.0\"}");
            Flush();
        }

        public MockFileSystem FileSystem { get; } = new();

        public string AddImage()
        {
            var (config, configSize) = Put("{}"u8.ToArray());
            var (layer, layerSize) = Put(Blob);
            var (manifest, size) = Put(Encoding.UTF8.GetBytes($$$"""{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.kars.egress-allowlist.v1+yaml","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{{{config}}}","size":{{{configSize}}}},"layers":[{"mediaType":"application/vnd.kars.egress-allowlist.v1+yaml","digest":"{{{layer}}}","size":{{{layerSize}}}}]}"""));
            _index.Add($$$"""{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{{{manifest}}}","size":{{{size}}},"annotations":{"org.opencontainers.image.ref.name":"policy"}}""");
            Flush();
            return manifest;
        }

        public string AddSignature(string manifestDigest, byte[] payload, string signature)
        {
            var (payloadDigest, payloadSize) = Put(payload);
            var (config, configSize) = Put("{}"u8.ToArray());
            var (sig, size) = Put(Encoding.UTF8.GetBytes($$$"""{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{{{config}}}","size":{{{configSize}}}},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"{{{payloadDigest}}}","size":{{{payloadSize}}},"annotations":{"dev.cosignproject.cosign/signature":"{{{signature}}}"}}]}"""));
            _index.Add($$$"""{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{{{sig}}}","size":{{{size}}},"annotations":{"org.opencontainers.image.ref.name":"sha256-{{{manifestDigest[7..]}}}.sig"}}""");
            Flush();
            return payloadDigest;
        }

        public void AddReferrer(string manifestDigest, byte[] bundle)
        {
            var (bundleDigest, bundleSize) = Put(bundle);
            var (config, configSize) = Put("{}"u8.ToArray());
            var (referrer, size) = Put(Encoding.UTF8.GetBytes($$$"""{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{{{config}}}","size":{{{configSize}}}},"layers":[{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","digest":"{{{bundleDigest}}}","size":{{{bundleSize}}}}],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{{{manifestDigest}}}","size":1}}"""));
            _index.Add($$$"""{"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json","digest":"{{{referrer}}}","size":{{{size}}}}""");
            Flush();
        }

        private (string Digest, int Size) Put(byte[] bytes)
        {
            string hex = Convert.ToHexStringLower(SHA256.HashData(bytes));
            FileSystem.File.WriteAllBytes("/layout/blobs/sha256/" + hex, bytes);
            return ("sha256:" + hex, bytes.Length);
        }

        private void Flush() =>
            FileSystem.File.WriteAllText("/layout/index.json", "{\"schemaVersion\":2,\"manifests\":[" + string.Join(",", _index) + "]}");
    }
}
