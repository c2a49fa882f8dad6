using System.Collections.Concurrent;
using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Org.BouncyCastle.Crypto.Parameters;
using Org.BouncyCastle.Crypto.Signers;

namespace Kars.Policy.Bundles;

/// <summary>The algorithm family of a verification key, read from its SubjectPublicKeyInfo.</summary>
internal enum KeyKind
{
    EcdsaP256,
    EcdsaP384,
    EcdsaP521,
    Rsa,
    Ed25519,
}

/// <summary>
/// A public key that verifies Sigstore signatures: ECDSA (P-256/384/521, ASN.1 DER signatures), RSA (PKCS#1 v1.5 or
/// PSS, SHA-256) or Ed25519 (BouncyCastle; the BCL has none).
/// </summary>
internal sealed class SigningKey
{
    private const string EcOid = "1.2.840.10045.2.1";
    private const string RsaOid = "1.2.840.113549.1.1.1";
    private const string Ed25519Oid = "1.3.101.112";

    /// <summary>Imported platform keys kept at most (per key) for reuse: trusted-root log keys and a policy's key are
    /// long-lived, and importing the SPKI again for every check cost about as much as the check itself.</summary>
    private const int MaxPooled = 4;

    // An imported ECDsa/RSA is used by one caller at a time (rent, verify, return), so no instance is shared between
    // threads; the bag itself is thread-safe.
    private readonly ConcurrentBag<AsymmetricAlgorithm> _pool = [];

    private SigningKey(byte[] spki, KeyKind kind, byte[]? rawEd25519)
    {
        Spki = spki;
        Kind = kind;
        RawEd25519 = rawEd25519;
        Id = "key:sha256:" + Convert.ToHexStringLower(SHA256.HashData(spki));
    }

    /// <summary>Gets the DER SubjectPublicKeyInfo.</summary>
    public byte[] Spki { get; }

    public KeyKind Kind { get; }

    /// <summary>Gets a label for results: <c>key:sha256:&lt;hex of the SPKI digest&gt;</c>.</summary>
    public string Id { get; }

    private byte[]? RawEd25519 { get; }

    /// <summary>Gets the hash the algorithm signs with by default (what cosign and the Sigstore clients use).</summary>
    public HashAlgorithmName DefaultHash => Kind switch
    {
        KeyKind.EcdsaP384 => HashAlgorithmName.SHA384,
        KeyKind.EcdsaP521 => HashAlgorithmName.SHA512,
        _ => HashAlgorithmName.SHA256,
    };

    public static SigningKey FromPem(string pem, string what)
    {
        if (!PemEncoding.TryFind(pem, out var fields))
        {
            throw BundleException.Malformed($"{what} is not a PEM document");
        }

        string label = pem[fields.Label];
        byte[] der;
        try
        {
            der = Convert.FromBase64String(pem[fields.Base64Data]);
        }
        catch (FormatException)
        {
            throw BundleException.Malformed($"{what} has bad base64");
        }

        return label switch
        {
            "PUBLIC KEY" => FromSpki(der, what),
            "CERTIFICATE" => FromCertificate(Certificates.Load(der, what), what),
            _ => throw BundleException.Malformed($"{what}: PEM label \"{label}\" is not PUBLIC KEY or CERTIFICATE"),
        };
    }

    public static SigningKey FromCertificate(X509Certificate2 certificate, string what) =>
        FromSpki(certificate.PublicKey.ExportSubjectPublicKeyInfo(), what);

    public static SigningKey FromSpki(byte[] spki, string what)
    {
        string oid;
        string? curve = null;
        byte[]? raw = null;
        try
        {
            var reader = new AsnReader(spki, AsnEncodingRules.DER);
            var info = reader.ReadSequence();
            reader.ThrowIfNotEmpty();
            var algorithm = info.ReadSequence();
            oid = algorithm.ReadObjectIdentifier();
            if (algorithm.HasData && algorithm.PeekTag().HasSameClassAndValue(Asn1Tag.ObjectIdentifier))
            {
                curve = algorithm.ReadObjectIdentifier();
            }

            byte[] bits = info.ReadBitString(out int unused);
            info.ThrowIfNotEmpty();
            if (oid == Ed25519Oid)
            {
                if (unused != 0 || bits.Length != 32 || algorithm.HasData)
                {
                    throw BundleException.Malformed($"{what}: an Ed25519 key must be 32 bytes");
                }

                raw = bits;
            }
        }
        catch (AsnContentException)
        {
            throw BundleException.Malformed($"{what} is not a DER SubjectPublicKeyInfo");
        }

        KeyKind kind = oid switch
        {
            EcOid => curve switch
            {
                "1.2.840.10045.3.1.7" => KeyKind.EcdsaP256,
                "1.3.132.0.34" => KeyKind.EcdsaP384,
                "1.3.132.0.35" => KeyKind.EcdsaP521,
                _ => throw BundleException.Malformed($"{what}: unsupported elliptic curve {curve}"),
            },
            RsaOid => KeyKind.Rsa,
            Ed25519Oid => KeyKind.Ed25519,
            _ => throw BundleException.Malformed($"{what}: unsupported key algorithm {oid}"),
        };

        // Import once so that a key the platform cannot read fails here, as malformed input.
        try
        {
            switch (kind)
            {
                case KeyKind.Rsa:
                    using (var rsa = RSA.Create())
                    {
                        rsa.ImportSubjectPublicKeyInfo(spki, out _);
                        if (rsa.KeySize < 2048)
                        {
                            throw BundleException.Malformed($"{what}: RSA keys shorter than 2048 bits are refused");
                        }
                    }

                    break;
                case KeyKind.Ed25519:
                    break;
                default:
                    using (var ec = ECDsa.Create())
                    {
                        ec.ImportSubjectPublicKeyInfo(spki, out _);
                    }

                    break;
            }
        }
        catch (CryptographicException)
        {
            throw BundleException.Malformed($"{what} is not a usable public key");
        }

        return new SigningKey(spki, kind, raw);
    }

    /// <summary>Verifies <paramref name="signature"/> over <paramref name="data"/> with the key's default hash.</summary>
    public bool VerifyData(ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature) => VerifyData(data, signature, DefaultHash);

    public bool VerifyData(ReadOnlySpan<byte> data, ReadOnlySpan<byte> signature, HashAlgorithmName hash)
    {
        try
        {
            switch (Kind)
            {
                case KeyKind.Ed25519:
                    var signer = new Ed25519Signer();
                    signer.Init(false, new Ed25519PublicKeyParameters(RawEd25519!, 0));
                    signer.BlockUpdate(data);
                    return signer.VerifySignature(signature.ToArray());
                case KeyKind.Rsa:
                    {
                        var rsa = (RSA)Rent();
                        try
                        {
                            return rsa.VerifyData(data, signature, hash, RSASignaturePadding.Pkcs1)
                                || rsa.VerifyData(data, signature, hash, RSASignaturePadding.Pss);
                        }
                        finally
                        {
                            Return(rsa);
                        }
                    }

                default:
                    {
                        var ec = (ECDsa)Rent();
                        try
                        {
                            return ec.VerifyData(data, signature, hash, DSASignatureFormat.Rfc3279DerSequence);
                        }
                        finally
                        {
                            Return(ec);
                        }
                    }
            }
        }
        catch (CryptographicException)
        {
            return false;
        }
    }

    /// <summary>Verifies a signature over a precomputed digest; Ed25519 (which signs the message itself) never verifies here.</summary>
    public bool VerifyDigest(ReadOnlySpan<byte> digest, HashAlgorithmName hash, ReadOnlySpan<byte> signature)
    {
        try
        {
            switch (Kind)
            {
                case KeyKind.Ed25519:
                    return false;
                case KeyKind.Rsa:
                    {
                        var rsa = (RSA)Rent();
                        try
                        {
                            return rsa.VerifyHash(digest, signature, hash, RSASignaturePadding.Pkcs1)
                                || rsa.VerifyHash(digest, signature, hash, RSASignaturePadding.Pss);
                        }
                        finally
                        {
                            Return(rsa);
                        }
                    }

                default:
                    {
                        var ec = (ECDsa)Rent();
                        try
                        {
                            return ec.VerifyHash(digest, signature, DSASignatureFormat.Rfc3279DerSequence);
                        }
                        finally
                        {
                            Return(ec);
                        }
                    }
            }
        }
        catch (CryptographicException)
        {
            return false;
        }
    }

    public bool SameKey(byte[] spki) => Spki.AsSpan().SequenceEqual(spki);

    /// <summary>An imported ECDsa or RSA key for this SPKI, from the pool or newly imported (not for Ed25519).</summary>
    private AsymmetricAlgorithm Rent()
    {
        if (_pool.TryTake(out var pooled))
        {
            return pooled;
        }

        AsymmetricAlgorithm created = Kind == KeyKind.Rsa ? RSA.Create() : ECDsa.Create();
        try
        {
            created.ImportSubjectPublicKeyInfo(Spki, out _);
            return created;
        }
        catch
        {
            created.Dispose();
            throw;
        }
    }

    private void Return(AsymmetricAlgorithm key)
    {
        if (_pool.Count < MaxPooled)
        {
            _pool.Add(key);
        }
        else
        {
            key.Dispose();
        }
    }
}
