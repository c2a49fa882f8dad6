using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.Pkcs;
using System.Security.Cryptography.X509Certificates;

namespace Kars.Policy.Bundles;

/// <summary>RFC 3161 signed timestamps over a signature, checked against the trusted root's timestamp authorities.</summary>
internal static class Timestamps
{
    /// <summary>Verifies a DER TimeStampResp (or a bare token) over <paramref name="signature"/>; returns the verified genTime.</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Reliability", "CA2000:Dispose objects before losing scope", Justification = "The signer may be one of the trusted root's candidate certificates (same instance); disposing it would break the root.")]
    public static DateTimeOffset Verify(byte[] response, ReadOnlySpan<byte> signature, SigstoreTrustedRoot root)
    {
        byte[] token = TokenBytes(response);
        if (!Rfc3161TimestampToken.TryDecode(token, out var decoded, out int consumed) || consumed != token.Length)
        {
            throw BundleException.Malformed("the RFC 3161 timestamp token does not decode");
        }

        var info = decoded.TokenInfo;
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
                throw new BundleException(BundleFailureReason.UntrustedRoot, "the RFC 3161 timestamp does not cover this signature or its signature does not verify");
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
