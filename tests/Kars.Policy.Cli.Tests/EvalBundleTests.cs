using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Kars.Policy.Cli.Tests;

/// <summary><c>eval --policy &lt;OCI layout&gt;</c> (DESIGN §7): a signed bundle is verified first; one that fails is
/// never evaluated (exit 2, the reason on stderr, nothing on stdout).</summary>
public sealed class EvalBundleTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "kars-eval-bundle-" + Guid.NewGuid().ToString("N"));
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly List<string> _index = [];

    public EvalBundleTests()
    {
        Directory.CreateDirectory(Path.Combine(Layout, "blobs", "sha256"));
        File.WriteAllText(Path.Combine(Layout, "oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}");
        File.WriteAllText(Key, _key.ExportSubjectPublicKeyInfoPem());
        (Manifest, LayerDigest) = AddSignedPolicy("apiVersion: kars.dev/v1alpha1\nkind: EgressAllowlist\nmetadata:\n  generation: 4\nspec:\n  endpoints:\n    - host: api.example.org\n      port: 443\n");
    }

    private string Layout => Path.Combine(_folder, "layout");

    private string Key => Path.Combine(_folder, "cosign.pub");

    private string Manifest { get; }

    private string LayerDigest { get; }

    public void Dispose()
    {
        _key.Dispose();
        Directory.Delete(_folder, recursive: true);
    }

    private static (int Code, string Out, string Err) Run(params string[] args)
    {
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = Program.Run(args, new StringReader(string.Empty), stdout, stderr);
        return (code, stdout.ToString(), stderr.ToString());
    }

    private (string Manifest, string Layer) AddSignedPolicy(string yaml)
    {
        const string type = "application/vnd.kars.egress-allowlist.v1+yaml";
        var (config, configSize) = Put("{}"u8.ToArray());
        var (layer, layerSize) = Put(Encoding.UTF8.GetBytes(yaml));
        var (manifest, size) = Put(Encoding.UTF8.GetBytes($$$"""{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"{{{type}}}","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{{{config}}}","size":{{{configSize}}}},"layers":[{"mediaType":"{{{type}}}","digest":"{{{layer}}}","size":{{{layerSize}}}}]}"""));
        _index.Add($$$"""{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{{{manifest}}}","size":{{{size}}},"annotations":{"org.opencontainers.image.ref.name":"policy-{{{_index.Count}}}"}}""");
        byte[] payload = Encoding.UTF8.GetBytes($$$"""{"critical":{"identity":{"docker-reference":"registry.test/policy"},"image":{"docker-manifest-digest":"{{{manifest}}}"},"type":"cosign container image signature"},"optional":null}""");
        string signature = Convert.ToBase64String(_key.SignData(payload, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence));
        var (payloadDigest, payloadSize) = Put(payload);
        var (sig, sigSize) = Put(Encoding.UTF8.GetBytes($$$"""{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{{{config}}}","size":{{{configSize}}}},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"{{{payloadDigest}}}","size":{{{payloadSize}}},"annotations":{"dev.cosignproject.cosign/signature":"{{{signature}}}"}}]}"""));
        _index.Add($$$"""{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{{{sig}}}","size":{{{sigSize}}},"annotations":{"org.opencontainers.image.ref.name":"sha256-{{{manifest[7..]}}}.sig"}}""");
        File.WriteAllText(Path.Combine(Layout, "index.json"), "{\"schemaVersion\":2,\"manifests\":[" + string.Join(",", _index) + "]}");
        return (manifest, layer);
    }

    private (string Digest, int Size) Put(byte[] bytes)
    {
        string hex = Convert.ToHexStringLower(SHA256.HashData(bytes));
        File.WriteAllBytes(Path.Combine(Layout, "blobs", "sha256", hex), bytes);
        return ("sha256:" + hex, bytes.Length);
    }

    [Fact]
    public void A_signed_layout_is_verified_and_evaluated()
    {
        var (code, output, error) = Run("eval", "--policy", Layout, "--key", Key, "--insecure-ignore-tlog", "--json", "https://api.example.org/v1", "x.api.example.org:443", "other.example.net");

        code.Should().Be(0, error);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        lines.Should().HaveCount(3);
        lines[0].GetProperty("verdict").GetString().Should().Be("allow");
        lines[0].GetProperty("reason").GetString().Should().Be("allowlisted");
        lines[1].GetProperty("verdict").GetString().Should().Be("allow");
        lines[2].GetProperty("verdict").GetString().Should().Be("deny");
        lines[2].GetProperty("reason").GetString().Should().Be("notAllowlisted");
    }

    [Fact]
    public void The_table_names_the_document_digest_and_generation()
    {
        var (code, output, _) = Run("eval", "--policy", Layout, "--key", Key, "--insecure-ignore-tlog", "api.example.org");

        code.Should().Be(0);
        output.Should().Contain($"{LayerDigest} generation 4").And.Contain("allowlisted");
    }

    [Fact]
    public void A_tampered_layout_is_never_evaluated()
    {
        File.WriteAllText(Path.Combine(Layout, "blobs", "sha256", LayerDigest[7..]), "apiVersion: kars.dev/v1alpha1\nkind: EgressAllowlist\nmetadata:\n  generation: 4\nspec:\n  endpoints:\n    - host: evil.example.org\n      port: 443\n");

        var (code, output, error) = Run("eval", "--policy", Layout, "--key", Key, "--insecure-ignore-tlog", "--json", "evil.example.org");

        code.Should().Be(2);
        output.Should().BeEmpty("no decision is printed for an unverified bundle");
        error.Should().Contain("DigestMismatch").And.NotContain("   at ");
    }

    [Fact]
    public void Another_key_is_SignatureInvalid_and_a_missing_signer_option_is_a_usage_error()
    {
        using var other = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        string otherKey = Path.Combine(_folder, "other.pub");
        File.WriteAllText(otherKey, other.ExportSubjectPublicKeyInfoPem());

        var (code, output, error) = Run("eval", "--policy", Layout, "--key", otherKey, "--insecure-ignore-tlog", "api.example.org");
        code.Should().Be(2);
        output.Should().BeEmpty();
        error.Should().Contain("SignatureInvalid");

        (code, output, error) = Run("eval", "--policy", Layout, "api.example.org");
        code.Should().Be(2);
        output.Should().BeEmpty();
        error.Should().Contain("--key");

        (code, _, error) = Run("eval", "--policy", Layout, "--key", Key, "api.example.org");
        code.Should().Be(2, "the transparency log is required unless --insecure-ignore-tlog");
        error.Should().Contain("TransparencyLogInvalid");
    }

    [Fact]
    public void Digest_pins_one_of_two_policy_manifests()
    {
        var (second, _) = AddSignedPolicy("apiVersion: kars.dev/v1alpha1\nkind: EgressAllowlist\nmetadata:\n  generation: 5\nspec:\n  endpoints:\n    - host: b.example.org\n      port: 443\n");

        var (code, _, error) = Run("eval", "--policy", Layout, "--key", Key, "--insecure-ignore-tlog", "b.example.org");
        code.Should().Be(2);
        error.Should().Contain("InvalidReference");

        (code, var output, error) = Run("eval", "--policy", Layout, "--key", Key, "--insecure-ignore-tlog", "--digest", second, "--json", "b.example.org");
        code.Should().Be(0, error);
        output.Should().Contain("\"allowlisted\"");
        Run("eval", "--policy", Layout, "--key", Key, "--insecure-ignore-tlog", "--digest", Manifest, "--json", "b.example.org").Out.Should().Contain("\"notAllowlisted\"");
    }

    [Fact]
    public void Expected_name_admits_only_the_signed_policy_of_that_name()
    {
        var (named, _) = AddSignedPolicy("apiVersion: kars.dev/v1alpha1\nkind: EgressAllowlist\nmetadata:\n  name: sandbox-a\n  generation: 5\nspec:\n  endpoints:\n    - host: b.example.org\n      port: 443\n");

        var (code, output, error) = Run("eval", "--policy", Layout, "--key", Key, "--insecure-ignore-tlog", "--digest", named, "--expected-name", "sandbox-a", "--json", "b.example.org");
        code.Should().Be(0, error);
        output.Should().Contain("\"allowlisted\"");

        (code, output, error) = Run("eval", "--policy", Layout, "--key", Key, "--insecure-ignore-tlog", "--digest", named, "--expected-name", "sandbox-b", "--json", "b.example.org");
        code.Should().Be(2, "a validly signed policy of another sandbox is refused like any other bundle failure");
        output.Should().BeEmpty("no decision is printed for a refused bundle");
        error.Should().Contain("the bundle was refused: IdentityMismatch").And.NotContain("   at ");

        // The first policy carries no metadata.name: with a name expected it is refused too.
        (code, output, error) = Run("eval", "--policy", Layout, "--key", Key, "--insecure-ignore-tlog", "--digest", Manifest, "--expected-name", "sandbox-a", "api.example.org");
        code.Should().Be(2);
        output.Should().BeEmpty();
        error.Should().Contain("IdentityMismatch");

        // Without the option nothing changes: the unnamed policy evaluates.
        Run("eval", "--policy", Layout, "--key", Key, "--insecure-ignore-tlog", "--digest", Manifest, "--json", "api.example.org").Out.Should().Contain("\"allowlisted\"");
    }

    [Theory]
    [InlineData("")]
    [InlineData("  ")]
    public void An_empty_expected_name_is_a_usage_error(string name)
    {
        var (code, output, error) = Run("eval", "--policy", Layout, "--key", Key, "--insecure-ignore-tlog", "--expected-name", name, "api.example.org");

        code.Should().Be(2);
        output.Should().BeEmpty();
        error.Should().Contain("--expected-name must not be empty").And.NotContain("   at ");
    }

    [Fact]
    public void Verification_options_on_a_policy_file_are_a_usage_error()
    {
        string file = Path.Combine(_folder, "policy.json");
        File.WriteAllText(file, """{"schemaVersion":1,"allow":[{"host":"api.example.org"}]}""");

        var (code, output, error) = Run("eval", "--policy", file, "--key", Key, "api.example.org");

        code.Should().Be(2);
        output.Should().BeEmpty();
        error.Should().Contain("only to an OCI image layout");

        (code, output, error) = Run("eval", "--policy", file, "--expected-name", "sandbox-a", "api.example.org");
        code.Should().Be(2, "a plain policy file names nothing to check");
        output.Should().BeEmpty();
        error.Should().Contain("only to an OCI image layout");
    }
}

/// <summary>The committed sample bundle (<c>samples/policies/signed-bundle</c>, written by its <c>make.py</c>) verifies and evaluates.</summary>
public sealed class SignedSampleBundleTests
{
    [Fact]
    public void The_committed_sample_layout_verifies_and_evaluates()
    {
        string? root = AppContext.BaseDirectory;
        while (root is not null && !File.Exists(Path.Combine(root, "Kars.Policy.sln")))
        {
            root = Path.GetDirectoryName(root);
        }

        root.Should().NotBeNull("the tests run inside the repository");
        string sample = Path.Combine(root!, "samples", "policies", "signed-bundle");
        var stdout = new StringWriter();
        var stderr = new StringWriter();
        int code = Program.Run(["eval", "--policy", Path.Combine(sample, "layout"), "--key", Path.Combine(sample, "sample-signing.pub"), "--insecure-ignore-tlog", "--json", "api.github.com", "files.pypi.org", "evil.example"], new StringReader(string.Empty), stdout, stderr);

        code.Should().Be(0, stderr.ToString());
        string output = stdout.ToString();
        output.Should().Contain("\"target\":\"files.pypi.org\",\"verdict\":\"allow\"").And.Contain("\"target\":\"evil.example\",\"verdict\":\"deny\"");
    }
}
