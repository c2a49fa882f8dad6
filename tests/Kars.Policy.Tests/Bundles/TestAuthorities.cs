using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.Pkcs;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Org.BouncyCastle.Crypto.Generators;
using Org.BouncyCastle.Crypto.Parameters;
using Org.BouncyCastle.Crypto.Signers;
using Org.BouncyCastle.Security;

namespace Kars.Policy.Tests.Bundles;

/// <summary>
/// A test RFC 3161 timestamp authority built in code (BCL only): its own root, a leaf with the critical
/// timeStamping EKU, and real tokens — a CMS SignedData over an <c>id-ct-TSTInfo</c> content written with
/// System.Formats.Asn1, with the ESS signing-certificate-v2 attribute — wrapped in a granted TimeStampResp.
/// </summary>
internal sealed class TestTsa
{
    private const string TstInfoOid = "1.2.840.113549.1.9.16.1.4";
    private const string Sha256Oid = "2.16.840.1.101.3.4.2.1";

    public TestTsa(string name = "test-tsa", DateTimeOffset? notBefore = null, DateTimeOffset? notAfter = null)
    {
        RootKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var rootRequest = new CertificateRequest($"CN={name}-root, O=kars-test", RootKey, HashAlgorithmName.SHA256);
        rootRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        rootRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
        rootRequest.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(rootRequest.PublicKey, false));
        Root = rootRequest.CreateSelfSigned(TestSigstore.CaStart, TestSigstore.CaStart.AddYears(10));

        Key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}, O=kars-test", Key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.8")], true));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(Root, true, false));
        byte[] serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7f;
        using var issued = request.Create(Root, notBefore ?? TestSigstore.CaStart, notAfter ?? TestSigstore.CaStart.AddYears(5), serial);
        Leaf = issued.CopyWithPrivateKey(Key);
    }

    public ECDsa RootKey { get; }

    public X509Certificate2 Root { get; }

    public ECDsa Key { get; }

    public X509Certificate2 Leaf { get; }

    /// <summary>The <c>timestampAuthorities[]</c> entry of a trusted root: chain [TSA leaf, root] and a window.</summary>
    public string AuthorityJson(string validFor = "{\"start\":\"2029-01-01T00:00:00Z\"}") =>
        $$$"""{"subject":{"organization":"kars-test","commonName":"test-tsa"},"uri":"https://tsa.test","certChain":{"certificates":[{"rawBytes":"{{{TestSigstore.B64(Leaf.RawData)}}}"},{"rawBytes":"{{{TestSigstore.B64(Root.RawData)}}}"}]},"validFor":{{{validFor}}}}""";

    /// <summary>A granted TimeStampResp whose token's message imprint is SHA-256(<paramref name="signature"/>).</summary>
    public byte[] Stamp(ReadOnlySpan<byte> signature, DateTimeOffset genTime, bool embedCertificate = true)
    {
        var info = new AsnWriter(AsnEncodingRules.DER);
        using (info.PushSequence())
        {
            info.WriteInteger(1);
            info.WriteObjectIdentifier("1.3.6.1.4.1.57264.99.1"); // a test policy
            using (info.PushSequence())
            {
                using (info.PushSequence())
                {
                    info.WriteObjectIdentifier(Sha256Oid);
                    info.WriteNull();
                }

                info.WriteOctetString(SHA256.HashData(signature));
            }

            info.WriteInteger(new System.Numerics.BigInteger(RandomNumberGenerator.GetBytes(8), isUnsigned: true));
            info.WriteGeneralizedTime(genTime, omitFractionalSeconds: true);
        }

        var cms = new SignedCms(new ContentInfo(new Oid(TstInfoOid), info.Encode()), detached: false);
        var signer = new CmsSigner(SubjectIdentifierType.IssuerAndSerialNumber, Leaf)
        {
            DigestAlgorithm = new Oid(Sha256Oid),
            IncludeOption = embedCertificate ? X509IncludeOption.EndCertOnly : X509IncludeOption.None,
        };

        // RFC 5816 SigningCertificateV2 { certs SEQUENCE OF ESSCertIDv2 { certHash (SHA-256 by default) } }.
        var ess = new AsnWriter(AsnEncodingRules.DER);
        using (ess.PushSequence())
        {
            using (ess.PushSequence())
            {
                using (ess.PushSequence())
                {
                    ess.WriteOctetString(SHA256.HashData(Leaf.RawData));
                }
            }
        }

        signer.SignedAttributes.Add(new AsnEncodedData("1.2.840.113549.1.9.16.2.47", ess.Encode()));
        cms.ComputeSignature(signer);

        var response = new AsnWriter(AsnEncodingRules.DER);
        using (response.PushSequence())
        {
            using (response.PushSequence())
            {
                response.WriteInteger(0); // granted
            }

            response.WriteEncodedValue(cms.Encode());
        }

        return response.Encode();
    }
}

/// <summary>A test Rekor v2 log: an Ed25519 key (BouncyCastle), its origin (the host of its base URL) and the note key id as log id.</summary>
internal sealed class TestRekorV2Log
{
    public const string DefaultOrigin = "log2030-1.rekor.test";
    private readonly Ed25519PrivateKeyParameters _private;

    public TestRekorV2Log(string origin = DefaultOrigin)
    {
        Origin = origin;
        var generator = new Ed25519KeyPairGenerator();
        generator.Init(new Ed25519KeyGenerationParameters(new SecureRandom()));
        var pair = generator.GenerateKeyPair();
        _private = (Ed25519PrivateKeyParameters)pair.Private;
        byte[] raw = ((Ed25519PublicKeyParameters)pair.Public).GetEncoded();
        Spki = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00, .. raw];
        LogId = SHA256.HashData([.. Encoding.UTF8.GetBytes(origin), 0x0A, 0x01, .. raw]);
    }

    public string Origin { get; }

    public byte[] Spki { get; }

    public byte[] LogId { get; }

    public byte[] Sign(byte[] data)
    {
        var signer = new Ed25519Signer();
        signer.Init(true, _private);
        signer.BlockUpdate(data, 0, data.Length);
        return signer.GenerateSignature();
    }

    /// <summary>The <c>tlogs[]</c> entry of a trusted root for this log, with the given key window.</summary>
    public string TlogJson(string validFor = "{\"start\":\"2029-01-01T00:00:00Z\"}") =>
        $$$"""{"baseUrl":"https://{{{Origin}}}","hashAlgorithm":"SHA2_256","publicKey":{"rawBytes":"{{{TestSigstore.B64(Spki)}}}","keyDetails":"PKIX_ED25519","validFor":{{{validFor}}}},"logId":{"keyId":"{{{TestSigstore.B64(LogId)}}}"}}""";
}
