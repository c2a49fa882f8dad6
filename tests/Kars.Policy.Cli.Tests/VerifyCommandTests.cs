using System.Security.Cryptography;
using System.Text;

namespace Kars.Policy.Cli.Tests;

/// <summary>The exit-code contract of <c>verify-blob</c> and <c>verify</c> (DESIGN §7): 0 verified, 1 rejected, 2 usage or input error; never a stack trace.</summary>
public sealed class VerifyCommandTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "kars-verify-" + Guid.NewGuid().ToString("N"));
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);

    public VerifyCommandTests()
    {
        Directory.CreateDirectory(_folder);
        File.WriteAllBytes(Blob, Encoding.UTF8.GetBytes("apiVersion: kars.dev/v1alpha1\n"));
        File.WriteAllText(Key, _key.ExportSubjectPublicKeyInfoPem());
        File.WriteAllText(Signature, Convert.ToBase64String(_key.SignData(File.ReadAllBytes(Blob), HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence)) + "\n");
    }

    private string Blob => Path.Combine(_folder, "allowlist.yaml");

    private string Key => Path.Combine(_folder, "cosign.pub");

    private string Signature => Path.Combine(_folder, "allowlist.yaml.sig");

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

    [Fact]
    public void VerifyBlob_KeySignatureWithoutTlog_ExitsZero()
    {
        var (code, output, error) = Run("verify-blob", Blob, "--signature", Signature, "--key", Key, "--insecure-ignore-tlog");

        code.Should().Be(0, error);
        output.Should().Contain("Verified OK");
    }

    [Fact]
    public void VerifyBlob_TamperedBlob_ExitsOneNamingTheReason()
    {
        File.AppendAllText(Blob, "- host: evil.example\n");

        var (code, _, error) = Run("verify-blob", Blob, "--signature", Signature, "--key", Key, "--insecure-ignore-tlog");

        code.Should().Be(1);
        error.Should().Contain("SignatureInvalid").And.NotContain("   at ");
    }

    [Fact]
    public void VerifyBlob_TlogRequiredButAbsent_ExitsOne()
    {
        var (code, _, error) = Run("verify-blob", Blob, "--signature", Signature, "--key", Key);

        code.Should().Be(1);
        error.Should().Contain("TransparencyLogInvalid");
    }

    [Fact]
    public void VerifyBlob_JsonOutput_CarriesReason()
    {
        File.WriteAllText(Signature, "bm90IGEgc2lnbmF0dXJl");

        var (code, output, _) = Run("verify-blob", Blob, "--signature", Signature, "--key", Key, "--insecure-ignore-tlog", "--json");

        code.Should().Be(1);
        output.Should().Contain("\"verified\":false").And.Contain("\"reason\":\"signatureInvalid\"");
    }

    [Theory]
    [InlineData("verify-blob", "sha256:xyz", "--bundle", "b.json", "--trusted-root", "r.json", "--key", "k.pem")]
    [InlineData("verify-blob", "a.txt", "--bundle", "b.json", "--trusted-root", "r.json")]
    [InlineData("verify-blob", "a.txt", "--bundle", "b.json", "--trusted-root", "r.json", "--key", "k.pem", "--certificate-identity", "x", "--certificate-oidc-issuer", "y")]
    [InlineData("verify", "--oci-layout", "missing", "--digest", "sha256:00", "--key", "k.pem")]
    public void Verify_UsageErrors_ExitTwoWithoutAStackTrace(params string[] args)
    {
        var (code, _, error) = Run(args);

        code.Should().Be(2);
        error.Should().StartWith("kars-policy: ").And.NotContain("   at ");
    }

    [Fact]
    public void VerifyBlob_MalformedTrustedRoot_ExitsTwo()
    {
        string root = Path.Combine(_folder, "trusted_root.json");
        File.WriteAllText(root, """{"mediaType":"application/vnd.dev.sigstore.trustedroot+json;version=0.1","tlogs":[{"baseUrl":"https://r","publicKey":{"validFor":{}},"logId":{"keyId":"AA=="}}]}""");
        File.WriteAllText(Path.Combine(_folder, "b.json"), "{}");

        var (code, _, error) = Run("verify-blob", Blob, "--bundle", Path.Combine(_folder, "b.json"), "--trusted-root", root, "--key", Key);

        code.Should().Be(2);
        error.Should().Contain("start");
    }

    [Fact]
    public void Verify_LayoutWithoutSignature_ExitsOneUnsigned()
    {
        string layout = Path.Combine(_folder, "layout");
        Directory.CreateDirectory(Path.Combine(layout, "blobs", "sha256"));
        File.WriteAllText(Path.Combine(layout, "oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}");
        File.WriteAllText(Path.Combine(layout, "index.json"), "{\"schemaVersion\":2,\"manifests\":[]}");

        var (code, _, error) = Run("verify", "--oci-layout", layout, "--digest", "sha256:" + new string('a', 64), "--key", Key, "--insecure-ignore-tlog");

        code.Should().Be(1);
        error.Should().Contain("Unsigned");
    }
}
