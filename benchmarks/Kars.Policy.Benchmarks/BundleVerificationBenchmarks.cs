using System.Security.Cryptography;
using System.Text;
using BenchmarkDotNet.Attributes;
using Kars.Policy.Bundles;
using Kars.Policy.Tests.Bundles;

namespace Kars.Policy.Benchmarks;

/// <summary>
/// Verifying one signed policy bundle (target under 5 ms each; off the request path). Baseline: the one ECDSA
/// P-256 signature check that any verifier does, with nothing else (no parsing, no log, no chain).
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

    [GlobalSetup]
    public void Setup()
    {
        var sigstore = new TestSigstore();
        var keyless = new BundleBuilder(sigstore);
        _keylessBundle = Encoding.UTF8.GetBytes(keyless.Build());
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
}
