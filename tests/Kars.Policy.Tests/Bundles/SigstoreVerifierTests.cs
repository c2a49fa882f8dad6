using System.Security.Cryptography;
using System.Text;
using Kars.Policy.Bundles;

namespace Kars.Policy.Tests.Bundles;

public sealed class SigstoreVerifierTests
{
    private readonly TestSigstore _sigstore = new();

    private BundleVerificationResult Verify(BundleBuilder builder, SignerPolicy? signer = null, byte[]? artifact = null, SigstoreVerifierOptions? options = null)
    {
        string bundle = builder.Build();
        return new SigstoreVerifier(_sigstore.TrustedRoot(), options)
            .VerifyBundle(Encoding.UTF8.GetBytes(bundle), SigstoreArtifact.FromBytes(artifact ?? builder.Artifact), signer ?? SignerPolicy.ForIdentity(TestSigstore.Identity, TestSigstore.Issuer));
    }

    [Fact]
    public void A_keyless_bundle_with_SET_proof_checkpoint_and_SCT_verifies_at_the_log_time()
    {
        var builder = new BundleBuilder(_sigstore);
        var result = Verify(builder);

        result.IsVerified.Should().BeTrue(result.Message);
        result.FailureReason.Should().BeNull();
        result.Signer.Should().Be(TestSigstore.Identity);
        result.ArtifactDigest.Should().Be("sha256:" + Convert.ToHexStringLower(SHA256.HashData(builder.Artifact)));
        result.SignedAt.Should().Be(TestSigstore.LeafStart.AddMinutes(1));
    }

    [Fact]
    public void The_same_bundle_verifies_by_digest()
    {
        var builder = new BundleBuilder(_sigstore);
        string bundle = builder.Build();
        SigstoreArtifact.TryFromDigest("sha256:" + Convert.ToHexStringLower(SHA256.HashData(builder.Artifact)), out var artifact).Should().BeTrue();

        var result = new SigstoreVerifier(_sigstore.TrustedRoot()).VerifyBundle(Encoding.UTF8.GetBytes(bundle), artifact!, SignerPolicy.ForIdentity(TestSigstore.Identity, TestSigstore.Issuer));

        result.IsVerified.Should().BeTrue(result.Message);
    }

    [Fact]
    public void A_tampered_artifact_is_SignatureInvalid()
    {
        var builder = new BundleBuilder(_sigstore);
        var result = Verify(builder, artifact: Encoding.UTF8.GetBytes("egress allowlist v2\n"));

        result.FailureReason.Should().Be(BundleFailureReason.SignatureInvalid);
    }

    [Theory]
    [InlineData("https://github.com/example/other/.github/workflows/sign.yml@refs/heads/main", TestSigstore.Issuer)]
    [InlineData(TestSigstore.Identity, "https://accounts.google.com")]
    public void A_wrong_identity_or_issuer_is_IdentityMismatch(string identity, string issuer)
    {
        var result = Verify(new BundleBuilder(_sigstore), SignerPolicy.ForIdentity(identity, issuer));

        result.FailureReason.Should().Be(BundleFailureReason.IdentityMismatch);
    }

    [Fact]
    public void An_identity_pattern_is_anchored_to_the_whole_SAN()
    {
        var builder = new BundleBuilder(_sigstore);
        string bundle = builder.Build();
        var verifier = new SigstoreVerifier(_sigstore.TrustedRoot());
        var artifact = SigstoreArtifact.FromBytes(builder.Artifact);

        verifier.VerifyBundle(Encoding.UTF8.GetBytes(bundle), artifact, SignerPolicy.ForIdentityPattern(@"https://github\.com/example/", TestSigstore.Issuer))
            .FailureReason.Should().Be(BundleFailureReason.IdentityMismatch, "a prefix must not match");
        verifier.VerifyBundle(Encoding.UTF8.GetBytes(bundle), artifact, SignerPolicy.ForIdentityPattern(@"https://github\.com/example/[^/]+/\.github/workflows/sign\.yml@refs/heads/main", TestSigstore.Issuer))
            .IsVerified.Should().BeTrue();
    }

    [Fact]
    public void An_identity_pattern_that_would_close_the_anchoring_group_is_refused()
    {
        // Inside \A(?:…)\z this pattern compiles and matches any SAN; alone it does not compile.
        var act = () => SignerPolicy.ForIdentityPattern(@"https://github\.com/example/.*)|(?:.*", TestSigstore.Issuer);

        act.Should().Throw<ArgumentException>();
    }

    [Fact]
    public void A_leaf_without_the_code_signing_extended_key_usage_is_UntrustedRoot()
    {
        // X509Chain accepts a leaf with no EKU extension for any purpose; a signing certificate must name code signing.
        var (leaf, key) = _sigstore.IssueLeaf(withCodeSigningEku: false);
        var builder = new BundleBuilder(_sigstore) { Leaf = leaf, SigningKey = key };

        Verify(builder).FailureReason.Should().Be(BundleFailureReason.UntrustedRoot);
        Verify(new BundleBuilder(_sigstore)).IsVerified.Should().BeTrue("the same bundle with the EKU verifies");
    }

    [Fact]
    public void A_certificate_expired_at_the_log_time_is_UntrustedRoot()
    {
        var builder = new BundleBuilder(_sigstore) { IntegratedTime = TestSigstore.LeafStart.AddMinutes(11).ToUnixTimeSeconds() };

        Verify(builder).FailureReason.Should().Be(BundleFailureReason.UntrustedRoot);
    }

    [Fact]
    public void A_forged_integrated_time_breaks_the_signed_entry_timestamp()
    {
        var builder = new BundleBuilder(_sigstore) { IntegratedTimeTamper = 1 };

        Verify(builder).FailureReason.Should().Be(BundleFailureReason.TransparencyLogInvalid);
    }

    [Fact]
    public void A_log_entry_for_another_artifact_is_TransparencyLogInvalid()
    {
        var builder = new BundleBuilder(_sigstore) { LoggedArtifact = "something else"u8.ToArray() };

        Verify(builder).FailureReason.Should().Be(BundleFailureReason.TransparencyLogInvalid);
    }

    [Fact]
    public void An_inclusion_proof_for_another_tree_is_TransparencyLogInvalid()
    {
        var builder = new BundleBuilder(_sigstore) { ProofForAnotherTree = true };

        var result = Verify(builder);

        result.FailureReason.Should().Be(BundleFailureReason.TransparencyLogInvalid);
        result.Message.Should().Contain("inclusion proof");
    }

    [Fact]
    public void A_v03_bundle_without_an_inclusion_proof_is_refused()
    {
        var builder = new BundleBuilder(_sigstore) { IncludeProof = false };

        Verify(builder).FailureReason.Should().Be(BundleFailureReason.TransparencyLogInvalid);
    }

    [Fact]
    public void Without_a_signed_entry_timestamp_keyless_has_no_verified_time()
    {
        var builder = new BundleBuilder(_sigstore) { IncludeSet = false };

        var result = Verify(builder);

        result.FailureReason.Should().Be(BundleFailureReason.TransparencyLogInvalid);
        result.Message.Should().Contain("verified signing time");
    }

    [Fact]
    public void A_certificate_from_another_CA_is_UntrustedRoot_even_when_the_bundle_carries_that_CA()
    {
        using var rogueKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new System.Security.Cryptography.X509Certificates.CertificateRequest("CN=test-fulcio, O=kars-test", rogueKey, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new System.Security.Cryptography.X509Certificates.X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new System.Security.Cryptography.X509Certificates.X509KeyUsageExtension(System.Security.Cryptography.X509Certificates.X509KeyUsageFlags.KeyCertSign, true));
        request.CertificateExtensions.Add(new System.Security.Cryptography.X509Certificates.X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        var rogueCa = request.CreateSelfSigned(TestSigstore.CaStart, TestSigstore.CaStart.AddYears(10));
        var (leaf, key) = _sigstore.IssueLeaf(issuingCa: rogueCa);
        var builder = new BundleBuilder(_sigstore) { Leaf = leaf, SigningKey = key, MediaType = "application/vnd.dev.sigstore.bundle+json;version=0.2" };
        string bundle = builder.Build().Replace(
            $$"""{"certificate":{"rawBytes":"{{TestSigstore.B64(leaf.RawData)}}"}""",
            $$"""{"x509CertificateChain":{"certificates":[{"rawBytes":"{{TestSigstore.B64(leaf.RawData)}}"},{"rawBytes":"{{TestSigstore.B64(rogueCa.RawData)}}"}]}""",
            StringComparison.Ordinal);

        var result = new SigstoreVerifier(_sigstore.TrustedRoot())
            .VerifyBundle(Encoding.UTF8.GetBytes(bundle), SigstoreArtifact.FromBytes(builder.Artifact), SignerPolicy.ForIdentity(TestSigstore.Identity, TestSigstore.Issuer));

        result.FailureReason.Should().Be(BundleFailureReason.UntrustedRoot);
    }

    [Fact]
    public void A_certificate_without_an_SCT_from_a_trusted_CT_log_is_UntrustedRoot()
    {
        using var otherCt = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var (leaf, key) = _sigstore.IssueLeaf(ctKey: otherCt);
        var (bare, bareKey) = _sigstore.IssueLeaf(withSct: false);

        Verify(new BundleBuilder(_sigstore) { Leaf = leaf, SigningKey = key }).FailureReason.Should().Be(BundleFailureReason.UntrustedRoot);
        Verify(new BundleBuilder(_sigstore) { Leaf = bare, SigningKey = bareKey }).FailureReason.Should().Be(BundleFailureReason.UntrustedRoot);
        Verify(new BundleBuilder(_sigstore) { Leaf = bare, SigningKey = bareKey }, options: new SigstoreVerifierOptions { RequireSignedCertificateTimestamp = false })
            .IsVerified.Should().BeTrue();
    }

    [Fact]
    public void A_key_signed_bundle_verifies_with_the_key_and_never_with_an_identity()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        string pem = key.ExportSubjectPublicKeyInfoPem();
        var builder = new BundleBuilder(_sigstore) { SigningKey = key, PublicKeyPem = pem };

        Verify(builder, SignerPolicy.ForPublicKey(pem)).IsVerified.Should().BeTrue();
        Verify(builder, SignerPolicy.ForIdentity(TestSigstore.Identity, TestSigstore.Issuer)).FailureReason.Should().Be(BundleFailureReason.IdentityMismatch);
        using var other = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        Verify(builder, SignerPolicy.ForPublicKey(other.ExportSubjectPublicKeyInfoPem())).FailureReason.Should().Be(BundleFailureReason.SignatureInvalid);
    }

    [Fact]
    public void A_certificate_bundle_never_satisfies_a_key_policy()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

        Verify(new BundleBuilder(_sigstore), SignerPolicy.ForPublicKey(key.ExportSubjectPublicKeyInfoPem()))
            .FailureReason.Should().Be(BundleFailureReason.IdentityMismatch);
    }

    [Theory]
    [InlineData("{\"mediaType\":")]
    [InlineData("[]")]
    [InlineData("{\"mediaType\":\"application/vnd.dev.sigstore.bundle+json;version=0.9\"}")]
    public void Malformed_bundles_are_CanonicalFormViolation(string json)
    {
        var result = new SigstoreVerifier(_sigstore.TrustedRoot())
            .VerifyBundle(Encoding.UTF8.GetBytes(json), SigstoreArtifact.FromBytes("x"u8.ToArray()), SignerPolicy.ForIdentity(TestSigstore.Identity, TestSigstore.Issuer));

        result.FailureReason.Should().Be(BundleFailureReason.CanonicalFormViolation);
    }

    [Fact]
    public void Duplicate_JSON_properties_are_refused()
    {
        var builder = new BundleBuilder(_sigstore);
        string bundle = builder.Build().Replace("{\"mediaType\":", "{\"mediaType\":\"x\",\"mediaType\":", StringComparison.Ordinal);

        var result = new SigstoreVerifier(_sigstore.TrustedRoot())
            .VerifyBundle(Encoding.UTF8.GetBytes(bundle), SigstoreArtifact.FromBytes(builder.Artifact), SignerPolicy.ForIdentity(TestSigstore.Identity, TestSigstore.Issuer));

        result.FailureReason.Should().Be(BundleFailureReason.CanonicalFormViolation);
    }

    [Fact]
    public void Every_single_byte_corruption_of_a_bundle_fails_closed_without_throwing()
    {
        var builder = new BundleBuilder(_sigstore);
        byte[] bundle = Encoding.UTF8.GetBytes(builder.Build());
        var verifier = new SigstoreVerifier(_sigstore.TrustedRoot());
        var signer = SignerPolicy.ForIdentity(TestSigstore.Identity, TestSigstore.Issuer);
        var artifact = SigstoreArtifact.FromBytes(builder.Artifact);
        var random = new Random(20301);
        int verified = 0;
        for (int i = 0; i < 300; i++)
        {
            byte[] copy = (byte[])bundle.Clone();
            int at = random.Next(copy.Length);
            copy[at] = (byte)(copy[at] ^ (1 << random.Next(8)));
            var result = verifier.VerifyBundle(copy, artifact, signer);
            if (result.IsVerified)
            {
                verified++;
            }
            else
            {
                Enum.IsDefined(result.FailureReason!.Value).Should().BeTrue();
            }
        }

        // A flipped bit can only be harmless inside JSON white space or the unused hint; anything else must fail.
        verified.Should().BeLessThan(5);
    }

    [Fact]
    public void A_trusted_root_whose_validity_window_has_no_start_is_malformed()
    {
        string json = _sigstore.TrustedRootJson(tlogValidFor: "{}");

        SigstoreTrustedRoot.TryParse(Encoding.UTF8.GetBytes(json), out var root, out string? error).Should().BeFalse();
        root.Should().BeNull();
        error.Should().Contain("start");
    }

    [Fact]
    public void The_log_window_is_a_closed_interval()
    {
        var builder = new BundleBuilder(_sigstore);
        long integrated = TestSigstore.LeafStart.AddMinutes(1).ToUnixTimeSeconds();
        string end = DateTimeOffset.FromUnixTimeSeconds(integrated).ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture);
        string bundle = builder.Build();
        var signer = SignerPolicy.ForIdentity(TestSigstore.Identity, TestSigstore.Issuer);

        SigstoreTrustedRoot.TryParse(Encoding.UTF8.GetBytes(_sigstore.TrustedRootJson($"{{\"start\":\"2029-01-01T00:00:00Z\",\"end\":\"{end}\"}}")), out var atEnd, out _).Should().BeTrue();
        new SigstoreVerifier(atEnd!).VerifyBundle(Encoding.UTF8.GetBytes(bundle), SigstoreArtifact.FromBytes(builder.Artifact), signer).IsVerified.Should().BeTrue();

        string before = DateTimeOffset.FromUnixTimeSeconds(integrated - 1).ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", System.Globalization.CultureInfo.InvariantCulture);
        SigstoreTrustedRoot.TryParse(Encoding.UTF8.GetBytes(_sigstore.TrustedRootJson($"{{\"start\":\"2029-01-01T00:00:00Z\",\"end\":\"{before}\"}}")), out var ended, out _).Should().BeTrue();
        new SigstoreVerifier(ended!).VerifyBundle(Encoding.UTF8.GetBytes(bundle), SigstoreArtifact.FromBytes(builder.Artifact), signer)
            .FailureReason.Should().Be(BundleFailureReason.TransparencyLogInvalid);
    }

    [Fact]
    public void A_bundle_from_a_log_the_trusted_root_does_not_list_is_refused()
    {
        var builder = new BundleBuilder(_sigstore);
        string bundle = builder.Build();
        var otherInstance = new TestSigstore();

        var result = new SigstoreVerifier(otherInstance.TrustedRoot())
            .VerifyBundle(Encoding.UTF8.GetBytes(bundle), SigstoreArtifact.FromBytes(builder.Artifact), SignerPolicy.ForIdentity(TestSigstore.Identity, TestSigstore.Issuer));

        result.IsVerified.Should().BeFalse();
        result.FailureReason.Should().Be(BundleFailureReason.TransparencyLogInvalid);
    }
}
