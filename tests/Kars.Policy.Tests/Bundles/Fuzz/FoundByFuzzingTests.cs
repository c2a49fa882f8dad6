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
}
