using System.IO.Abstractions;
using System.IO.Abstractions.TestingHelpers;
using System.Security.Cryptography;
using Kars.Policy.Bundles;
using Kars.Policy.DependencyInjection;
using Kars.Policy.Egress;
using Kars.Policy.Tests.Bundles;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Kars.Policy.Extensions.Tests.DependencyInjection;

/// <summary>The <c>Kars:Egress:Bundle</c> options: read strictly, validated at start-up with every other problem.</summary>
public sealed class BundleConfigurationTests : IDisposable
{
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly MockFileSystem _fs = new();

    public BundleConfigurationTests() => _fs.AddFile("/etc/kars/cosign.pub", new MockFileData(_key.ExportSubjectPublicKeyInfoPem()));

    public void Dispose() => _key.Dispose();

    private ServiceProvider Build(params (string Key, string? Value)[] values)
    {
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>(v.Key, v.Value)))
            .Build();
        var services = new ServiceCollection();
        services.AddSingleton<IFileSystem>(_fs);
        services.AddSingleton<TimeProvider>(new FakeTimeProvider(new DateTimeOffset(2030, 1, 1, 12, 0, 0, TimeSpan.Zero)));
        services.AddLogging();
        services.AddKarsPolicy(configuration);
        return services.BuildServiceProvider();
    }

    private static List<string> Failures(ServiceProvider sp)
    {
        var act = () => sp.GetRequiredService<IStartupValidator>().Validate();
        return act.Should().Throw<OptionsValidationException>().Which.Failures.ToList();
    }

    [Fact]
    public void Bundle_KeyOptions_ReadIntoTheOptionsAndTheContainerBuildsTheBundleSourceWithAPersistedLastKnownGood()
    {
        using var sp = Build(
            ("Kars:Egress:Bundle:Path", "/etc/kars/policy"),
            ("Kars:Egress:Bundle:PublicKeyPath", "/etc/kars/cosign.pub"),
            ("Kars:Egress:Bundle:StatePath", "/var/lib/kars/egress"),
            ("Kars:Egress:Bundle:RequireTransparencyLog", "false"),
            ("Kars:Egress:Bundle:ManifestDigest", "sha256:" + new string('a', 64)),
            ("Kars:Egress:Bundle:AllowedPredicateTypes:0", "https://sigstore.dev/cosign/sign/v1"));

        sp.GetRequiredService<IStartupValidator>().Validate();

        var bundle = sp.GetRequiredService<IOptions<KarsPolicyOptions>>().Value.Egress.Bundle!;
        bundle.RequireTransparencyLog.Should().BeFalse();
        bundle.RequireSignedCertificateTimestamp.Should().BeTrue();
        bundle.AllowedPredicateTypes.Should().Equal("https://sigstore.dev/cosign/sign/v1");
        sp.GetRequiredService<IEgressPolicySource>().Should().BeOfType<OciBundleEgressPolicySource>();
        var monitor = sp.GetRequiredService<EgressPolicyMonitor>();
        monitor.State.IsLoaded.Should().BeFalse("the layout does not exist");
        monitor.State.Problems[0].BundleFailure.Should().Be(BundleFailureReason.NotFound);
        monitor.Evaluate("api.example.org", 443, null).Reason.Should().Be(EgressReason.NoPolicy);
    }

    [Theory]
    [InlineData("sandbox-a", true)]
    [InlineData("sandbox-b", false)]
    public void Bundle_ExpectedName_LoadsOnlyTheSignedPolicyOfThatName(string published, bool loads)
    {
        var layout = new PolicyLayout(_fs, "/etc/kars/policy");
        var (manifest, _) = layout.AddPolicy(PolicyLayout.NamedYaml(published, 4, "api.example.org"));
        layout.SignWithKey(manifest, _key);
        using var sp = Build(
            ("Kars:Egress:Bundle:Path", "/etc/kars/policy"),
            ("Kars:Egress:Bundle:PublicKeyPath", "/etc/kars/cosign.pub"),
            ("Kars:Egress:Bundle:StatePath", "/var/lib/kars/egress"),
            ("Kars:Egress:Bundle:RequireTransparencyLog", "false"),
            ("Kars:Egress:Bundle:ExpectedName", "sandbox-a"));
        sp.GetRequiredService<IStartupValidator>().Validate();

        var monitor = sp.GetRequiredService<EgressPolicyMonitor>();

        monitor.State.IsLoaded.Should().Be(loads);
        monitor.Evaluate("api.example.org", 443, null).Reason.Should().Be(loads ? EgressReason.Allowlisted : EgressReason.NoPolicy);
        if (!loads)
        {
            monitor.State.Problems[0].BundleFailure.Should().Be(BundleFailureReason.IdentityMismatch);
        }
    }

    [Fact]
    public void Bundle_ExpectedNameBlank_StartupError()
    {
        using var sp = Build(
            ("Kars:Egress:Bundle:Path", "/etc/kars/policy"),
            ("Kars:Egress:Bundle:PublicKeyPath", "/etc/kars/cosign.pub"),
            ("Kars:Egress:Bundle:StatePath", "/var/lib/kars/egress"),
            ("Kars:Egress:Bundle:RequireTransparencyLog", "false"),
            ("Kars:Egress:Bundle:ExpectedName", " "));

        Failures(sp).Should().Contain(f => f.Contains("ExpectedName", StringComparison.Ordinal));
    }

    [Fact]
    public void Bundle_TransparencyLogAndSctRequiredByDefault()
    {
        var bundle = new KarsEgressBundleOptions();

        bundle.RequireTransparencyLog.Should().BeTrue();
        bundle.RequireSignedCertificateTimestamp.Should().BeTrue();
        bundle.AllowedPredicateTypes.Should().BeEmpty("empty means cosign sign's predicate type only");
    }

    [Fact]
    public void PathAndBundle_BothSet_ExactlyOneSourceError()
    {
        using var sp = Build(
            ("Kars:Egress:Path", "/etc/kars/policy.json"),
            ("Kars:Egress:Bundle:Path", "/etc/kars/policy"),
            ("Kars:Egress:Bundle:PublicKeyPath", "/etc/kars/cosign.pub"),
            ("Kars:Egress:Bundle:StatePath", "/var/lib/kars/egress"),
            ("Kars:Egress:Bundle:RequireTransparencyLog", "false"));

        Failures(sp).Should().Contain(f => f.Contains("both set", StringComparison.Ordinal) && f.Contains("exactly one policy source", StringComparison.Ordinal));
    }

    [Fact]
    public void NeitherPathNorBundle_Error()
    {
        using var sp = Build(("Kars:Budgets:Limits:Day", "10"));

        Failures(sp).Should().Contain(f => f.Contains("Kars:Egress:Path or Kars:Egress:Bundle is required", StringComparison.Ordinal));
    }

    [Fact]
    public void Bundle_EveryShapeAndTrustProblem_ReportedAtOnceWithTheOthers()
    {
        _fs.AddFile("/etc/kars/trusted_root.json", new MockFileData("{ not a trusted root"));
        using var sp = Build(
            ("Kars:Egress:Mode", "Strict,Learn"),
            ("Kars:Egress:Bundle:PublicKeyPath", "/etc/kars/missing.pub"),
            ("Kars:Egress:Bundle:CertificateOidcIssuer", "https://token.actions.githubusercontent.com"),
            ("Kars:Egress:Bundle:TrustedRootPath", "/etc/kars/trusted_root.json"),
            ("Kars:Egress:Bundle:ManifestDigest", "sha256:ABC"),
            ("Kars:Egress:Bundle:RequireTransparencyLog", "sometimes"),
            ("Kars:Egress:Bundle:Pth", "/typo"),
            ("Kars:Budgets:Limits:Day", "lots"));

        var failures = Failures(sp);

        failures.Should().Contain(f => f.Contains("Kars:Egress:Mode", StringComparison.Ordinal));
        failures.Should().Contain(f => f.Contains("Kars:Budgets:Limits:Day", StringComparison.Ordinal));
        failures.Should().Contain(f => f.Contains("Kars:Egress:Bundle:Path is required", StringComparison.Ordinal));
        failures.Should().Contain(f => f.Contains("Kars:Egress:Bundle:StatePath is required", StringComparison.Ordinal));
        failures.Should().Contain(f => f.Contains("name exactly one signer", StringComparison.Ordinal));
        failures.Should().Contain(f => f.Contains("Kars:Egress:Bundle:ManifestDigest", StringComparison.Ordinal));
        failures.Should().Contain(f => f.Contains("Kars:Egress:Bundle:RequireTransparencyLog", StringComparison.Ordinal));
        failures.Should().Contain(f => f.Contains("Kars:Egress:Bundle:Pth: unknown setting", StringComparison.Ordinal));
        failures.Should().Contain(f => f.Contains("Kars:Egress:Bundle:PublicKeyPath", StringComparison.Ordinal) && f.Contains("cannot be read", StringComparison.Ordinal));
        failures.Should().Contain(f => f.Contains("Kars:Egress:Bundle:TrustedRootPath", StringComparison.Ordinal) && f.Contains("not a Sigstore trusted root", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("keyless without a trusted root", "CertificateIdentity=https://github.com/a/b/.github/workflows/s.yml@refs/heads/main;CertificateOidcIssuer=https://issuer.test", "TrustedRootPath is required for a keyless signer")]
    [InlineData("keyless without an issuer", "CertificateIdentity=https://github.com/a/b/.github/workflows/s.yml@refs/heads/main;TrustedRootPath=/etc/kars/root.json", "CertificateOidcIssuer is required")]
    [InlineData("identity and regex", "CertificateIdentity=a@example.test;CertificateIdentityRegex=.*;CertificateOidcIssuer=https://issuer.test;TrustedRootPath=/etc/kars/root.json", "both set: give one")]
    [InlineData("regex that does not compile", "CertificateIdentityRegex=(unclosed;CertificateOidcIssuer=https://issuer.test;TrustedRootPath=/etc/kars/root.json", "does not compile")]
    [InlineData("key signature with the log required and no trusted root", "PublicKeyPath=/etc/kars/cosign.pub", "TrustedRootPath is required while RequireTransparencyLog is true")]
    [InlineData("no signer", "", "name who must have signed")]
    [InlineData("state in the layout", "PublicKeyPath=/etc/kars/cosign.pub;RequireTransparencyLog=false;StatePath=/etc/kars/policy/", "must not be the layout directory")]
    public void Bundle_SignerShape_Errors(string why, string settings, string expected)
    {
        var values = new List<(string, string?)> { ("Kars:Egress:Bundle:Path", "/etc/kars/policy"), ("Kars:Egress:Bundle:StatePath", "/var/lib/kars/egress") };
        foreach (string pair in settings.Split(';', StringSplitOptions.RemoveEmptyEntries))
        {
            int equals = pair.IndexOf('=', StringComparison.Ordinal);
            values.RemoveAll(v => v.Item1 == "Kars:Egress:Bundle:" + pair[..equals]);
            values.Add(("Kars:Egress:Bundle:" + pair[..equals], pair[(equals + 1)..]));
        }

        using var sp = Build([.. values]);

        Failures(sp).Should().Contain(f => f.Contains(expected, StringComparison.Ordinal), why);
    }

    [Fact]
    public void Bundle_DisabledEgress_NothingRequired()
    {
        using var sp = Build(("Kars:Egress:Enabled", "false"), ("Kars:Egress:Bundle:Path", "/etc/kars/policy"));

        sp.GetRequiredService<IStartupValidator>().Validate();
    }
}
