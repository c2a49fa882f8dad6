using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.Pkcs;
using System.Security.Cryptography.X509Certificates;

namespace Kars.Policy.Bundles;

/// <summary>RFC 3161 signed timestamps over a signature, checked against the trusted root's timestamp authorities.</summary>
internal static class Timestamps
{
    private const string TstInfoOid = "1.2.840.113549.1.9.16.1.4";

    /// <summary>Verifies a DER TimeStampResp (or a bare token) over <paramref name="signature"/>; returns the verified genTime.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2000:Dispose objects before losing scope", Justification = "The signer may be one of the trusted root's candidate certificates (same instance); disposing it would break the root.")]
    public static DateTimeOffset Verify(byte[] response, ReadOnlySpan<byte> signature, SigstoreTrustedRoot root)
    {
        byte[] token = TokenBytes(response);

        // Structure first (CMS SignedData over a TSTInfo), so that malformed input and a token that fails its own
        // checks get different reasons.
        var cms = new SignedCms();
        try
        {
            cms.Decode(token);
        }
        catch (CryptographicException)
        {
            throw BundleException.Malformed("the RFC 3161 timestamp token is not a CMS SignedData");
        }

        if (cms.ContentInfo.ContentType.Value != TstInfoOid
            || !Rfc3161TimestampTokenInfo.TryDecode(cms.ContentInfo.Content, out var info, out int infoLength)
            || infoLength != cms.ContentInfo.Content.Length)
        {
            throw BundleException.Malformed("the RFC 3161 timestamp token does not carry a TSTInfo");
        }

        // The message imprint first, so that a token over another signature is reported as such (not as a bad token).
        HashAlgorithmName imprintHash = info.HashAlgorithmId.Value switch
        {
            "2.16.840.1.101.3.4.2.1" => HashAlgorithmName.SHA256,
            "2.16.840.1.101.3.4.2.2" => HashAlgorithmName.SHA384,
            "2.16.840.1.101.3.4.2.3" => HashAlgorithmName.SHA512,
            _ => throw new BundleException(BundleFailureReason.UntrustedRoot, $"the RFC 3161 timestamp's imprint algorithm {info.HashAlgorithmId.Value} is not SHA-2"),
        };
        byte[] expectedImprint = imprintHash == HashAlgorithmName.SHA256 ? SHA256.HashData(signature)
            : imprintHash == HashAlgorithmName.SHA384 ? SHA384.HashData(signature)
            : SHA512.HashData(signature);
        if (!info.GetMessageHash().Span.SequenceEqual(expectedImprint))
        {
            throw new BundleException(BundleFailureReason.DigestMismatch, "the RFC 3161 timestamp's message imprint is not the digest of this signature (the timestamp is for other data)");
        }

        // The BCL's decoder also checks the CMS signature when the TSA certificate is embedded, the ESS
        // signing-certificate binding, and that the embedded certificate is valid at genTime.
        if (!Rfc3161TimestampToken.TryDecode(token, out var decoded, out int consumed) || consumed != token.Length)
        {
            throw new BundleException(BundleFailureReason.UntrustedRoot, "the RFC 3161 timestamp's CMS signature or signing-certificate binding does not verify, or its embedded TSA certificate is not valid at genTime");
        }

        var candidates = new X509Certificate2Collection();
        foreach (var authority in root.TimestampAuthorities)
        {
            candidates.Add(authority.Chain[0]);
        }

        X509Certificate2? signer;
        try
        {
            if (!decoded.VerifySignatureForData(signature, out signer, candidates) || signer is null)
            {
                throw new BundleException(BundleFailureReason.UntrustedRoot, "the RFC 3161 timestamp's CMS signature does not verify, or its signer certificate is neither embedded nor a timestamp authority of the trusted root");
            }
        }
        catch (CryptographicException)
        {
            throw new BundleException(BundleFailureReason.UntrustedRoot, "the RFC 3161 timestamp's signature does not verify");
        }

        var genTime = info.Timestamp;
        foreach (var authority in root.TimestampAuthorities)
        {
            if (authority.ValidFor.Contains(genTime) && Certificates.BuildChain(signer, authority.Chain, genTime, Certificates.TimeStampingEku) is not null)
            {
                return genTime;
            }
        }

        throw new BundleException(BundleFailureReason.UntrustedRoot, $"the RFC 3161 timestamp of {genTime:O} is not from a timestamp authority of the trusted root valid at that time");
    }

    private static byte[] TokenBytes(byte[] response)
    {
        try
        {
            var reader = new AsnReader(response, AsnEncodingRules.DER);
            var top = reader.ReadSequence();
            reader.ThrowIfNotEmpty();
            if (top.PeekTag().HasSameClassAndValue(Asn1Tag.ObjectIdentifier))
            {
                return response; // a bare ContentInfo token
            }

            var status = top.ReadSequence();
            if (!status.TryReadInt32(out int code) || code is not (0 or 1))
            {
                throw BundleException.Malformed("the RFC 3161 response does not grant a timestamp");
            }

            byte[] token = top.ReadEncodedValue().ToArray();
            top.ThrowIfNotEmpty();
            return token;
        }
        catch (AsnContentException)
        {
            throw BundleException.Malformed("the RFC 3161 timestamp is not DER");
        }
    }
}
