using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Kars.Policy.Bundles;

namespace Kars.Policy.Tests.Bundles;

/// <summary>
/// RFC 3161 timestamps from an own test TSA, the log key's validity window for Rekor v1 and v2 evidence, and the
/// checkpoint origin. Every vector is built in code (<see cref="TestSigstore"/>, <see cref="TestTsa"/>,
/// <see cref="TestRekorV2Log"/>).
/// </summary>
public sealed class TimestampAndLogWindowTests
{
    private static readonly DateTimeOffset GenTime = TestSigstore.LeafStart.AddMinutes(2);
    private readonly TestSigstore _sigstore = new();
    private readonly TestTsa _tsa = new();

    private static SignerPolicy Identity => SignerPolicy.ForIdentity(TestSigstore.Identity, TestSigstore.Issuer);

    private static string Window(DateTimeOffset start, DateTimeOffset? end = null) =>
        end is { } e ? $"{{\"start\":\"{Rfc3339(start)}\",\"end\":\"{Rfc3339(e)}\"}}" : $"{{\"start\":\"{Rfc3339(start)}\"}}";

    private static string Rfc3339(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    private BundleVerificationResult Verify(
        BundleBuilder builder,
        SignerPolicy? signer = null,
        string? tsaAuthorities = null,
        string? tlogValidFor = null,
        string? extraTlogs = null,
        SigstoreVerifierOptions? options = null)
    {
        string bundle = builder.Build();
        var root = _sigstore.TrustedRoot(tlogValidFor, extraTlogs, tsaAuthorities ?? _tsa.AuthorityJson());
        return new SigstoreVerifier(root, options).VerifyBundle(Encoding.UTF8.GetBytes(bundle), SigstoreArtifact.FromBytes(builder.Artifact), signer ?? Identity);
    }

    private BundleBuilder StampedOnly(Func<byte[], byte[]> stamp) => new(_sigstore) { IncludeSet = false, Timestamp = stamp };

    // ---- 1. RFC 3161 ----------------------------------------------------------------------------------------------

    [Fact]
    public void A_keyless_bundle_whose_only_signing_time_is_an_RFC3161_timestamp_verifies_at_that_time()
    {
        var result = Verify(StampedOnly(sig => _tsa.Stamp(sig, GenTime)));

        result.IsVerified.Should().BeTrue(result.Message);
        result.SignedAt.Should().Be(GenTime);
    }

    [Fact]
    public void A_token_without_an_embedded_certificate_is_verified_with_the_TSA_certificate_of_the_trusted_root()
    {
        var result = Verify(StampedOnly(sig => _tsa.Stamp(sig, GenTime, embedCertificate: false)));

        result.IsVerified.Should().BeTrue(result.Message);
        result.SignedAt.Should().Be(GenTime);
    }

    [Fact]
    public void A_key_signed_bundle_with_only_a_timestamp_and_no_log_entry_verifies_when_the_log_is_not_required()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        string pem = key.ExportSubjectPublicKeyInfoPem();
        var builder = new BundleBuilder(_sigstore) { SigningKey = key, PublicKeyPem = pem, IncludeEntry = false, Timestamp = sig => _tsa.Stamp(sig, GenTime) };

        var result = Verify(builder, SignerPolicy.ForPublicKey(pem), options: new SigstoreVerifierOptions { RequireTransparencyLog = false });

        result.IsVerified.Should().BeTrue(result.Message);
        result.SignedAt.Should().Be(GenTime);
    }

    [Fact]
    public void A_keyless_bundle_with_a_timestamp_but_no_log_entry_is_refused()
    {
        var builder = new BundleBuilder(_sigstore) { IncludeEntry = false, Timestamp = sig => _tsa.Stamp(sig, GenTime) };

        var result = Verify(builder);

        result.FailureReason.Should().Be(BundleFailureReason.TransparencyLogInvalid, result.Message);
        result.Message.Should().Contain("no transparency-log entry");
    }

    [Fact]
    public void A_timestamp_over_other_data_is_DigestMismatch()
    {
        var result = Verify(StampedOnly(sig => _tsa.Stamp([.. sig, 0], GenTime)));

        result.FailureReason.Should().Be(BundleFailureReason.DigestMismatch, result.Message);
        result.Message.Should().Contain("message imprint");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_timestamp_from_a_TSA_the_trusted_root_does_not_list_is_UntrustedRoot(bool embedCertificate)
    {
        var rogue = new TestTsa("rogue-tsa");

        var result = Verify(StampedOnly(sig => rogue.Stamp(sig, GenTime, embedCertificate)));

        result.FailureReason.Should().Be(BundleFailureReason.UntrustedRoot, result.Message);
        result.Message.Should().Contain("RFC 3161");
    }

    [Fact]
    public void A_timestamp_whose_TSA_certificate_has_expired_at_genTime_is_UntrustedRoot()
    {
        var expired = new TestTsa("short-lived-tsa", notBefore: TestSigstore.CaStart, notAfter: GenTime.AddSeconds(-1));

        var result = Verify(StampedOnly(sig => expired.Stamp(sig, GenTime)), tsaAuthorities: expired.AuthorityJson());

        result.FailureReason.Should().Be(BundleFailureReason.UntrustedRoot, result.Message);
        result.Message.Should().Contain("RFC 3161");
    }

    [Fact]
    public void A_timestamp_whose_TSA_certificate_is_not_yet_valid_at_genTime_is_UntrustedRoot()
    {
        var future = new TestTsa("future-tsa", notBefore: GenTime.AddSeconds(1), notAfter: GenTime.AddYears(1));

        var result = Verify(StampedOnly(sig => future.Stamp(sig, GenTime)), tsaAuthorities: future.AuthorityJson());

        result.FailureReason.Should().Be(BundleFailureReason.UntrustedRoot, result.Message);
    }

    [Fact]
    public void The_TSA_validFor_window_of_the_trusted_root_is_closed_and_bounds_genTime()
    {
        var build = () => StampedOnly(sig => _tsa.Stamp(sig, GenTime));

        Verify(build(), tsaAuthorities: _tsa.AuthorityJson(Window(TestSigstore.CaStart, GenTime))).IsVerified.Should().BeTrue("the end is inclusive");
        Verify(build(), tsaAuthorities: _tsa.AuthorityJson(Window(GenTime))).IsVerified.Should().BeTrue("the start is inclusive");

        var ended = Verify(build(), tsaAuthorities: _tsa.AuthorityJson(Window(TestSigstore.CaStart, GenTime.AddSeconds(-1))));
        var notStarted = Verify(build(), tsaAuthorities: _tsa.AuthorityJson(Window(GenTime.AddSeconds(1))));

        ended.FailureReason.Should().Be(BundleFailureReason.UntrustedRoot);
        notStarted.FailureReason.Should().Be(BundleFailureReason.UntrustedRoot);
    }

    [Theory]
    [InlineData(-1)] // before the 10-minute leaf starts
    [InlineData(11)] // after it ended
    public void A_signing_certificate_not_valid_at_the_TSA_time_is_UntrustedRoot(int minutesAfterLeafStart)
    {
        var at = TestSigstore.LeafStart.AddMinutes(minutesAfterLeafStart);

        var result = Verify(StampedOnly(sig => _tsa.Stamp(sig, at)));

        result.FailureReason.Should().Be(BundleFailureReason.UntrustedRoot, result.Message);
        result.Message.Should().Contain("signing certificate");
    }

    [Fact]
    public void A_timestamp_with_a_tampered_signature_is_UntrustedRoot()
    {
        // The response ends with the token, which ends with the SignerInfo's ECDSA signature: change its last byte.
        var result = Verify(StampedOnly(sig =>
        {
            byte[] response = _tsa.Stamp(sig, GenTime);
            response[^1] ^= 0x01;
            return response;
        }));

        result.FailureReason.Should().Be(BundleFailureReason.UntrustedRoot, result.Message);
        result.Message.Should().Contain("CMS signature");
    }

    [Fact]
    public void A_timestamp_with_a_forged_genTime_is_UntrustedRoot()
    {
        // Same length, one minute later: the signed content no longer matches the CMS message digest.
        var result = Verify(StampedOnly(sig =>
        {
            byte[] response = _tsa.Stamp(sig, GenTime);
            byte[] original = Encoding.ASCII.GetBytes(GenTime.UtcDateTime.ToString("yyyyMMddHHmmss'Z'", CultureInfo.InvariantCulture));
            byte[] forged = Encoding.ASCII.GetBytes(GenTime.AddMinutes(1).UtcDateTime.ToString("yyyyMMddHHmmss'Z'", CultureInfo.InvariantCulture));
            int at = response.AsSpan().IndexOf(original);
            at.Should().BePositive();
            forged.CopyTo(response, at);
            return response;
        }));

        result.IsVerified.Should().BeFalse();
        result.FailureReason.Should().Be(BundleFailureReason.UntrustedRoot, result.Message);
    }

    [Fact]
    public void A_timestamp_that_is_present_must_verify_even_when_a_signed_entry_timestamp_gives_a_time()
    {
        var builder = new BundleBuilder(_sigstore) { Timestamp = sig => _tsa.Stamp([.. sig, 0], GenTime) };

        Verify(builder).FailureReason.Should().Be(BundleFailureReason.DigestMismatch);
    }

    // ---- 2. Log key validity windows ------------------------------------------------------------------------------

    [Fact]
    public void A_Rekor_v2_entry_with_a_timestamp_inside_the_log_window_verifies()
    {
        var log = new TestRekorV2Log();
        var builder = new BundleBuilder(_sigstore) { RekorV2 = log, Timestamp = sig => _tsa.Stamp(sig, GenTime) };

        var result = Verify(builder, extraTlogs: log.TlogJson(Window(TestSigstore.CaStart, GenTime)));

        result.IsVerified.Should().BeTrue(result.Message);
        result.SignedAt.Should().Be(GenTime);
    }

    [Theory]
    [InlineData("before-start")]
    [InlineData("after-end")]
    public void A_Rekor_v2_entry_whose_timestamp_is_outside_the_log_key_window_is_TransparencyLogInvalid(string where)
    {
        var log = new TestRekorV2Log();
        var builder = new BundleBuilder(_sigstore) { RekorV2 = log, Timestamp = sig => _tsa.Stamp(sig, GenTime) };
        string window = where == "before-start" ? Window(GenTime.AddSeconds(1)) : Window(TestSigstore.CaStart, GenTime.AddSeconds(-1));

        var result = Verify(builder, extraTlogs: log.TlogJson(window));

        result.FailureReason.Should().Be(BundleFailureReason.TransparencyLogInvalid, result.Message);
        result.Message.Should().Contain("validity window of log https://" + log.Origin);
    }

    [Fact]
    public void A_Rekor_v2_entry_without_a_timestamp_is_refused()
    {
        var log = new TestRekorV2Log();

        var result = Verify(new BundleBuilder(_sigstore) { RekorV2 = log }, extraTlogs: log.TlogJson());

        result.FailureReason.Should().Be(BundleFailureReason.TransparencyLogInvalid, result.Message);
    }

    [Theory]
    [InlineData("before-start")]
    [InlineData("after-end")]
    public void A_Rekor_v1_proof_placed_in_time_by_a_timestamp_outside_the_log_key_window_is_TransparencyLogInvalid(string where)
    {
        string window = where == "before-start" ? Window(GenTime.AddSeconds(1)) : Window(TestSigstore.CaStart, GenTime.AddSeconds(-1));

        var result = Verify(StampedOnly(sig => _tsa.Stamp(sig, GenTime)), tlogValidFor: window);

        result.FailureReason.Should().Be(BundleFailureReason.TransparencyLogInvalid, result.Message);
        result.Message.Should().Contain("validity window of log https://rekor.test");
    }

    [Theory]
    [InlineData("before-start")]
    [InlineData("after-end")]
    public void A_Rekor_v1_signed_entry_timestamp_outside_the_log_key_window_is_TransparencyLogInvalid(string where)
    {
        var integrated = TestSigstore.LeafStart.AddMinutes(1);
        string window = where == "before-start" ? Window(integrated.AddSeconds(1)) : Window(TestSigstore.CaStart, integrated.AddSeconds(-1));

        var result = Verify(new BundleBuilder(_sigstore), tlogValidFor: window);

        result.FailureReason.Should().Be(BundleFailureReason.TransparencyLogInvalid, result.Message);
        result.Message.Should().Contain("outside the log key's validity window");
    }

    [Fact]
    public void A_key_signed_Rekor_v1_proof_without_any_time_cannot_be_placed_in_the_log_window_and_is_refused()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        string pem = key.ExportSubjectPublicKeyInfoPem();
        var builder = new BundleBuilder(_sigstore) { SigningKey = key, PublicKeyPem = pem, IncludeSet = false };

        var result = Verify(builder, SignerPolicy.ForPublicKey(pem));

        result.FailureReason.Should().Be(BundleFailureReason.TransparencyLogInvalid, result.Message);
        result.Message.Should().Contain("validity window");
    }

    // ---- Pooled imported keys -------------------------------------------------------------------------------------

    [Fact]
    public void One_verifier_gives_the_same_answers_from_many_threads_with_its_pooled_keys()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        string pem = key.ExportSubjectPublicKeyInfoPem();
        var keyBuilder = new BundleBuilder(_sigstore) { SigningKey = key, PublicKeyPem = pem };
        byte[] keyBundle = Encoding.UTF8.GetBytes(keyBuilder.Build());
        var keylessBuilder = new BundleBuilder(_sigstore);
        byte[] keylessBundle = Encoding.UTF8.GetBytes(keylessBuilder.Build());
        var verifier = new SigstoreVerifier(_sigstore.TrustedRoot());
        var keyPolicy = SignerPolicy.ForPublicKey(pem);
        var other = SigstoreArtifact.FromBytes("another artifact"u8.ToArray());
        var answers = new System.Collections.Concurrent.ConcurrentBag<(int Case, BundleFailureReason? Reason)>();

        Parallel.For(0, 96, new ParallelOptions { MaxDegreeOfParallelism = 8 }, i =>
        {
            var result = (i % 4) switch
            {
                0 => verifier.VerifyBundle(keyBundle, SigstoreArtifact.FromBytes(keyBuilder.Artifact), keyPolicy),
                1 => verifier.VerifyBundle(keyBundle, other, keyPolicy),
                2 => verifier.VerifyBundle(keylessBundle, SigstoreArtifact.FromBytes(keylessBuilder.Artifact), Identity),
                _ => verifier.VerifyBundle(keylessBundle, other, Identity),
            };
            answers.Add((i % 4, result.FailureReason));
        });

        answers.Should().HaveCount(96);
        answers.Where(a => a.Case is 0 or 2).Should().OnlyContain(a => a.Reason == null);
        answers.Where(a => a.Case is 1 or 3).Should().OnlyContain(a => a.Reason == BundleFailureReason.SignatureInvalid);
    }

    // ---- 3. Checkpoint origin -------------------------------------------------------------------------------------

    [Theory]
    [InlineData("rekor.evil - 42")]
    [InlineData("rekor.test.evil - 42")]
    [InlineData("rekor.test - 042")]
    [InlineData("rekor.test - ")]
    [InlineData("rekor.test - 42 ")]
    [InlineData("rekor.test -42")]
    [InlineData("REKOR.TEST - 42")]
    public void A_Rekor_v1_checkpoint_with_a_foreign_origin_but_a_valid_log_signature_is_TransparencyLogInvalid(string origin)
    {
        var result = Verify(new BundleBuilder(_sigstore) { CheckpointOrigin = origin });

        result.FailureReason.Should().Be(BundleFailureReason.TransparencyLogInvalid, result.Message);
        result.Message.Should().Contain("origin");
    }

    [Theory]
    [InlineData("rekor.test - 42")]
    [InlineData("rekor.test - 1193050959916656506")]
    [InlineData("rekor.test")]
    public void A_Rekor_v1_checkpoint_origin_is_the_log_host_with_any_tree_id(string origin)
    {
        var result = Verify(new BundleBuilder(_sigstore) { CheckpointOrigin = origin });

        result.IsVerified.Should().BeTrue(result.Message);
    }

    [Theory]
    [InlineData("log2030-2.rekor.test")]
    [InlineData("log2030-1.rekor.test - 42")]
    [InlineData("rekor.test")]
    public void A_Rekor_v2_checkpoint_with_a_foreign_origin_but_a_valid_log_signature_is_TransparencyLogInvalid(string origin)
    {
        var log = new TestRekorV2Log();
        var builder = new BundleBuilder(_sigstore) { RekorV2 = log, CheckpointOrigin = origin, Timestamp = sig => _tsa.Stamp(sig, GenTime) };

        var result = Verify(builder, extraTlogs: log.TlogJson());

        result.FailureReason.Should().Be(BundleFailureReason.TransparencyLogInvalid, result.Message);
        result.Message.Should().Contain("origin");
    }
}
