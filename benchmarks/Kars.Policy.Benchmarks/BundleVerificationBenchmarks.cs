using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using BenchmarkDotNet.Attributes;
using Kars.Policy.Bundles;
using Kars.Policy.Tests.Bundles;

namespace Kars.Policy.Benchmarks;

/// <summary>
/// Verifying one signed policy bundle (target under 5 ms each; off the request path). Baseline: the one ECDSA
/// P-256 signature check that any verifier does, with nothing else (no parsing, no log, no chain). Two attribution
/// rows show where a keyless verification's time goes: parsing the trusted root (what a caller that re-parsed it per
/// call would pay; the verifier holds it parsed) and the platform <see cref="X509Chain"/> build alone.
/// </summary>
[MemoryDiagnoser]
public class BundleVerificationBenchmarks
{
    private SigstoreVerifier _verifier = null!;
    private SigstoreVerifier _keyVerifier = null!;
    private byte[] _keylessBundle = null!;
    private byte[] _keyBundle = null!;
    private SigstoreArtifact _artifact = null!;
    private SignerPolicy _identity = null!;
    private SignerPolicy _key = null!;
    private ECDsa _rawKey = null!;
    private byte[] _artifactBytes = null!;
    private byte[] _signature = null!;
    private byte[] _trustedRootJson = null!;
    private X509Certificate2 _leaf = null!;
    private X509Certificate2 _ca = null!;
    private DateTime _signedAt;

    [GlobalSetup]
    public void Setup()
    {
        var sigstore = new TestSigstore();
        var keyless = new BundleBuilder(sigstore);
        _keylessBundle = Encoding.UTF8.GetBytes(keyless.Build());
        _leaf = keyless.Leaf!;
        _ca = sigstore.Ca;
        _signedAt = TestSigstore.LeafStart.AddMinutes(1).UtcDateTime;
        _trustedRootJson = Encoding.UTF8.GetBytes(sigstore.TrustedRootJson());
        _artifactBytes = keyless.Artifact;
        _artifact = SigstoreArtifact.FromBytes(_artifactBytes);
        _rawKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        string pem = _rawKey.ExportSubjectPublicKeyInfoPem();
        _keyBundle = Encoding.UTF8.GetBytes(new BundleBuilder(sigstore) { SigningKey = _rawKey, PublicKeyPem = pem }.Build());
        _signature = _rawKey.SignData(_artifactBytes, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
        _verifier = new SigstoreVerifier(sigstore.TrustedRoot());
        _keyVerifier = _verifier;
        _identity = SignerPolicy.ForIdentity(TestSigstore.Identity, TestSigstore.Issuer);
        _key = SignerPolicy.ForPublicKey(pem);
        if (!VerifyKeyless() || !VerifyKeyBundle())
        {
            throw new InvalidOperationException("the benchmark bundles do not verify");
        }
    }

    [Benchmark(Baseline = true, Description = "naive: one ECDSA P-256 VerifyData")]
    public bool NaiveSignatureOnly() => _rawKey.VerifyData(_artifactBytes, _signature, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);

    [Benchmark(Description = "key-signed bundle v0.3 (SET, proof, checkpoint)")]
    public bool VerifyKeyBundle() => _keyVerifier.VerifyBundle(_keyBundle, _artifact, _key).IsVerified;

    [Benchmark(Description = "keyless bundle v0.3 (chain, SCT, SET, proof, checkpoint, identity)")]
    public bool VerifyKeyless() => _verifier.VerifyBundle(_keylessBundle, _artifact, _identity).IsVerified;

    [Benchmark(Description = "attribution: parse trusted_root.json (not per call: the verifier holds it)")]
    public bool ParseTrustedRoot() => SigstoreTrustedRoot.TryParse(_trustedRootJson, out _, out _);

    [Benchmark(Description = "attribution: X509Chain build alone (the keyless chain step)")]
    public bool ChainBuildAlone()
    {
        using var chain = new X509Chain();
        var policy = chain.ChainPolicy;
        policy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        policy.CustomTrustStore.Add(_ca);
        policy.RevocationMode = X509RevocationMode.NoCheck;
        policy.DisableCertificateDownloads = true;
        policy.VerificationTime = _signedAt;
        policy.ApplicationPolicy.Add(new Oid("1.3.6.1.5.5.7.3.3"));
        return chain.Build(_leaf);
    }
}
