using System.IO.Abstractions.TestingHelpers;
using System.Security.Cryptography;
using System.Text;
using Kars.Policy.Bundles;
using Kars.Policy.Egress;
using Microsoft.Extensions.Time.Testing;

namespace Kars.Policy.Tests.Bundles;

/// <summary>
/// The generation rule for signed bundles (kars doc rule 8, gap 16: generation monotonic across rotations) and the
/// predicate types a bundle source accepts in a DSSE signature (docs/bundles.md).
/// </summary>
public sealed class BundleGenerationAndPredicateTests : IDisposable
{
    private static readonly SigstoreVerifier NoTlog = new(SigstoreTrustedRoot.Empty, new SigstoreVerifierOptions { RequireTransparencyLog = false });
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly MockFileSystem _fs = new();
    private readonly FakeTimeProvider _time = new(Egress.EgressTestHelpers.Start);
    private readonly PolicyLayout _layout;

    public BundleGenerationAndPredicateTests() => _layout = new PolicyLayout(_fs, "/policy");

    public void Dispose() => _key.Dispose();

    private OciBundleEgressPolicySource Source(SigstoreVerifier? verifier = null, SignerPolicy? signer = null) =>
        new("/policy", verifier ?? NoTlog, signer ?? SignerPolicy.ForPublicKey(_key.ExportSubjectPublicKeyInfoPem()), null, null, _fs, _time);

    private void Publish(long generation, params string[] hosts)
    {
        var (manifest, _) = _layout.AddPolicy(PolicyLayout.Yaml(generation, hosts));
        _layout.SignWithKey(manifest, _key);
    }

    [Fact]
    public void The_same_generation_with_another_digest_is_RollbackRejected_and_the_policy_in_force_stays()
    {
        Publish(5, "a.example.org");
        using var source = Source();
        using var monitor = new EgressPolicyMonitor(source, null, _time);
        string digest = monitor.State.Digest!;

        Publish(5, "b.example.org");
        monitor.Reload().Should().BeFalse();

        monitor.State.Digest.Should().Be(digest);
        monitor.State.IsStale.Should().BeTrue();
        monitor.State.Problems[0].Kind.Should().Be(EgressPolicyProblemKind.RollbackRejected);
        monitor.State.Problems[0].BundleFailure.Should().Be(BundleFailureReason.RollbackRejected);
        monitor.State.Problems[0].Message.Should().Contain("same generation");
        monitor.Evaluate("a.example.org", 443, null).Reason.Should().Be(EgressReason.Allowlisted);
        monitor.Evaluate("b.example.org", 443, null).Reason.Should().Be(EgressReason.NotAllowlisted, "the second policy of generation 5 is never evaluated");
    }

    [Fact]
    public void The_same_generation_with_the_same_digest_is_the_same_policy_and_clears_a_stale_state()
    {
        Publish(5, "a.example.org");
        using var source = Source();
        using var monitor = new EgressPolicyMonitor(source, null, _time);
        string digest = monitor.State.Digest!;
        Publish(4, "b.example.org");
        monitor.Reload().Should().BeFalse();
        monitor.State.IsStale.Should().BeTrue();

        // The same document signed again (a new manifest and signature over the same layer bytes).
        Publish(5, "a.example.org");
        monitor.Reload().Should().BeTrue();

        monitor.State.Digest.Should().Be(digest);
        monitor.State.IsStale.Should().BeFalse();
        monitor.State.Problems.Should().BeEmpty();
    }

    [Fact]
    public void After_a_restart_the_persisted_generation_refuses_another_policy_of_the_same_generation()
    {
        Publish(5, "a.example.org");
        using (var source = Source())
        using (var monitor = new EgressPolicyMonitor(source, null, _time, lastKnownGood: new FileEgressPolicyLastKnownGoodStore("/state", source, _fs, _time)))
        {
            monitor.State.Generation.Should().Be(5);
        }

        Publish(5, "b.example.org");
        using (var source = Source())
        using (var monitor = new EgressPolicyMonitor(source, null, _time, lastKnownGood: new FileEgressPolicyLastKnownGoodStore("/state", source, _fs, _time)))
        {
            monitor.State.Problems[0].BundleFailure.Should().Be(BundleFailureReason.RollbackRejected);
            monitor.State.IsStale.Should().BeTrue();
            monitor.Evaluate("a.example.org", 443, null).Reason.Should().Be(EgressReason.Allowlisted, "the persisted last-known-good stays in force");
            monitor.Evaluate("b.example.org", 443, null).Reason.Should().Be(EgressReason.NotAllowlisted);
        }

        // The persisted copy was not replaced by the refused one: a third start still holds generation 5 of a.example.org.
        Publish(5, "a.example.org");
        using (var source = Source())
        using (var monitor = new EgressPolicyMonitor(source, null, _time, lastKnownGood: new FileEgressPolicyLastKnownGoodStore("/state", source, _fs, _time)))
        {
            monitor.State.IsStale.Should().BeFalse("the layout holds the persisted policy again");
            monitor.Evaluate("a.example.org", 443, null).Reason.Should().Be(EgressReason.Allowlisted);
        }
    }

    [Fact]
    public void A_plain_policy_file_still_accepts_another_document_of_the_same_generation()
    {
        var source = new InMemoryEgressPolicySource("""{"schemaVersion":1,"generation":3,"allow":[{"host":"a.example.org"}]}"""u8.ToArray());
        using var monitor = new EgressPolicyMonitor(source, null, _time);
        monitor.State.Generation.Should().Be(3);

        source.Update("""{"schemaVersion":1,"generation":3,"allow":[{"host":"b.example.org"}]}"""u8.ToArray());
        monitor.Reload().Should().BeTrue("plain files carry no signed generation; only a lower one is refused");
        monitor.Evaluate("b.example.org", 443, null).Reason.Should().Be(EgressReason.Allowlisted);
    }

    [Fact]
    public void A_signed_native_policy_without_a_generation_is_CanonicalFormViolation()
    {
        var (manifest, _) = _layout.AddPolicy("""{"schemaVersion":1,"allow":[{"host":"a.example.org","ports":[443]}]}""", PolicyLayout.Native);
        _layout.SignWithKey(manifest, _key);
        using var source = Source();

        var problem = source.Invoking(s => s.Load()).Should().Throw<EgressPolicyLoadException>().Which.Problems.Single();
        problem.BundleFailure.Should().Be(BundleFailureReason.CanonicalFormViolation);
        problem.Message.Should().Contain("generation");
    }

    [Fact]
    public void A_DSSE_attestation_of_another_predicate_type_does_not_vouch_for_a_policy_unless_that_type_is_allowed()
    {
        var sigstore = new TestSigstore();
        var (manifest, _) = _layout.AddPolicy(PolicyLayout.Yaml(1, "a.example.org"));
        var (leaf, key) = sigstore.IssueLeaf();
        string statement = $$$"""{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"registry.test/policy","digest":{"sha256":"{{{manifest[7..]}}}"}}],"predicateType":"https://slsa.dev/provenance/v1","predicate":{}}""";
        _layout.AttachBundle(manifest, KeyAndLayoutTests.DsseBundle(sigstore, leaf, key, Encoding.UTF8.GetBytes(statement)));
        var signer = SignerPolicy.ForIdentity(TestSigstore.Identity, TestSigstore.Issuer);

        using var byDefault = Source(new SigstoreVerifier(sigstore.TrustedRoot()), signer);
        var problem = byDefault.Invoking(s => s.Load()).Should().Throw<EgressPolicyLoadException>().Which.Problems[0];
        problem.BundleFailure.Should().Be(BundleFailureReason.IdentityMismatch);
        problem.Message.Should().Contain("predicate type");

        using var explicitly = Source(new SigstoreVerifier(sigstore.TrustedRoot(), new SigstoreVerifierOptions { AllowedPredicateTypes = ["https://slsa.dev/provenance/v1"] }), signer);
        explicitly.Load().Generation.Should().Be(1);
        new SigstoreVerifier(sigstore.TrustedRoot()).VerifyOciLayout(_fs, "/policy", manifest, signer).IsVerified
            .Should().BeTrue("the verifier itself (kars-policy verify) keeps cosign's any-type default");
    }

    [Fact]
    public void A_cosign_sign_DSSE_signature_is_accepted_by_default()
    {
        var sigstore = new TestSigstore();
        var (manifest, _) = _layout.AddPolicy(PolicyLayout.Yaml(2, "a.example.org"));
        var (leaf, key) = sigstore.IssueLeaf();
        string statement = $$$"""{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"registry.test/policy","digest":{"sha256":"{{{manifest[7..]}}}"}}],"predicateType":"{{{OciBundleEgressPolicySource.CosignSignPredicateType}}}","predicate":{}}""";
        _layout.AttachBundle(manifest, KeyAndLayoutTests.DsseBundle(sigstore, leaf, key, Encoding.UTF8.GetBytes(statement)));

        using var source = Source(new SigstoreVerifier(sigstore.TrustedRoot()), SignerPolicy.ForIdentity(TestSigstore.Identity, TestSigstore.Issuer));

        source.Load().Generation.Should().Be(2);
    }
}
