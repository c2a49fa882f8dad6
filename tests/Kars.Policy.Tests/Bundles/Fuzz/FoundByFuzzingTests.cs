using System.IO.Abstractions.TestingHelpers;
using System.Security.Cryptography;
using Kars.Policy.Bundles;
using Kars.Policy.Egress;
using Kars.Policy.Tests.Egress;
using Microsoft.Extensions.Time.Testing;

namespace Kars.Policy.Tests.Bundles.Fuzz;

/// <summary>Fixed regressions for what the hostile-input tests found, each as the smallest input that showed it.</summary>
public sealed class FoundByFuzzingTests : IDisposable
{
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    public void Dispose() => _key.Dispose();

    /// <summary>A signed canonical YAML with a line of exactly two spaces under <c>metadata</c> or <c>spec</c> threw
    /// <see cref="IndexOutOfRangeException"/> out of the parser (past the bundle source's typed failure); it is a
    /// canonical-form violation reported with its line.</summary>
    [Theory]
    [InlineData("apiVersion: kars.dev/v1alpha1\nkind: EgressAllowlist\nmetadata:\n  generation: 1\nspec:\n  \n", 6)]
    [InlineData("apiVersion: kars.dev/v1alpha1\nkind: EgressAllowlist\nmetadata:\n  \n  generation: 1\nspec:\n  endpoints: []\n", 4)]
    public void A_two_space_line_in_a_signed_yaml_is_a_violation_with_its_line(string yaml, int line)
    {
        var fs = new MockFileSystem();
        var layout = new PolicyLayout(fs, "/policy");
        var (manifest, _) = layout.AddPolicy(yaml);
        layout.SignWithKey(manifest, _key);
        using var source = new OciBundleEgressPolicySource(
            "/policy",
            new SigstoreVerifier(SigstoreTrustedRoot.Empty, new SigstoreVerifierOptions { RequireTransparencyLog = false }),
            SignerPolicy.ForPublicKey(_key.ExportSubjectPublicKeyInfoPem()),
            null,
            null,
            fs,
            new FakeTimeProvider(EgressTestHelpers.Start));

        var problems = source.Invoking(s => s.Load()).Should().Throw<EgressPolicyLoadException>().Which.Problems;

        problems.Should().OnlyContain(p => p.BundleFailure == BundleFailureReason.CanonicalFormViolation);
        problems.Should().Contain(p => p.Path == $"line {line}" && p.Message.Contains("trailing spaces", StringComparison.Ordinal));
    }

    /// <summary>A bundle with bytes that are not UTF-8 in a member the verifier never reads (the key hint, or an unknown
    /// member's name) verified: the JSON reader decodes only what is read. A document that is not UTF-8 is malformed.</summary>
    [Theory]
    [InlineData("\"hint\":\"test\"", "\"hint\":\"te\u0080st\"")]
    [InlineData("\"hint\":\"test\"", "\"hint\":\"test\",\"h\u0080\":1")]
    public void A_bundle_that_is_not_UTF8_is_malformed_even_where_nothing_is_read(string from, string to)
    {
        var sigstore = new TestSigstore();
        var builder = new BundleBuilder(sigstore) { SigningKey = _key, PublicKeyPem = _key.ExportSubjectPublicKeyInfoPem() };
        string bundle = builder.Build();
        var verifier = new SigstoreVerifier(sigstore.TrustedRoot());
        var signer = SignerPolicy.ForPublicKey(_key.ExportSubjectPublicKeyInfoPem());
        verifier.VerifyBundle(System.Text.Encoding.UTF8.GetBytes(bundle), SigstoreArtifact.FromBytes(builder.Artifact), signer).IsVerified.Should().BeTrue();

        // \u0080 stands for the single byte 0x80, which is never valid UTF-8 on its own.
        byte[] bytes = [.. System.Text.Encoding.UTF8.GetBytes(bundle.Replace(from, to, StringComparison.Ordinal)).SelectMany(b => b == 0xC2 ? Array.Empty<byte>() : [b])];

        var result = verifier.VerifyBundle(bytes, SigstoreArtifact.FromBytes(builder.Artifact), signer);

        result.IsVerified.Should().BeFalse();
        result.FailureReason.Should().Be(BundleFailureReason.CanonicalFormViolation);
        result.Message.Should().Contain("UTF-8");
    }
}
