using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace Kars.Policy.Bundles;

/// <summary>X.509 checks of keyless verification: path validation at a verified time, SAN and issuer, embedded SCTs.</summary>
internal static class Certificates
{
    public const string CodeSigningEku = "1.3.6.1.5.5.7.3.3";
    public const string TimeStampingEku = "1.3.6.1.5.5.7.3.8";
    private const string SctListOid = "1.3.6.1.4.1.11129.2.4.2";
    private const string SanOid = "2.5.29.17";
    private const string IssuerV2Oid = "1.3.6.1.4.1.57264.1.8";
    private const string IssuerV1Oid = "1.3.6.1.4.1.57264.1.1";
    private const string OtherNameSanOid = "1.3.6.1.4.1.57264.1.7";
    private const long MaxCertificateBytes = 64 * 1024;

    public static X509Certificate2 Load(ReadOnlySpan<byte> der, string what)
    {
        if (der.IsEmpty || der.Length > MaxCertificateBytes)
        {
            throw BundleException.Malformed($"{what} is empty or too large");
        }

        try
        {
            // Exactly one DER certificate, nothing trailing.
            var reader = new AsnReader(der.ToArray(), AsnEncodingRules.DER);
            reader.ReadEncodedValue();
            reader.ThrowIfNotEmpty();
            return X509CertificateLoader.LoadCertificate(der);
        }
        catch (Exception ex) when (ex is CryptographicException or AsnContentException)
        {
            throw BundleException.Malformed($"{what} is not a DER X.509 certificate");
        }
    }

    public static X509Certificate2 LoadPem(string pem, string what)
    {
        if (!PemEncoding.TryFind(pem, out var fields) || pem[fields.Label] != "CERTIFICATE")
        {
            throw BundleException.Malformed($"{what} is not a PEM certificate");
        }

        byte[] der;
        try
        {
            der = Convert.FromBase64String(pem[fields.Base64Data]);
        }
        catch (FormatException)
        {
            throw BundleException.Malformed($"{what} has bad base64");
        }

        return Load(der, what);
    }

    /// <summary>
    /// Builds <paramref name="leaf"/> to the last certificate of <paramref name="authorityChain"/> (trusted, issuing order
    /// [intermediates…, root]) at time <paramref name="at"/>, using nothing else as a trust anchor or intermediate.
    /// </summary>
    /// <returns>The built chain from the leaf up, or <see langword="null"/> when it does not build.</returns>
    public static X509Certificate2[]? BuildChain(X509Certificate2 leaf, IReadOnlyList<X509Certificate2> authorityChain, DateTimeOffset at, string eku)
    {
        if (authorityChain.Count == 0)
        {
            return null;
        }

        var anchor = authorityChain[^1];
        using var chain = new X509Chain();
        var policy = chain.ChainPolicy;
        policy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        policy.CustomTrustStore.Add(anchor);
        for (int i = 0; i < authorityChain.Count - 1; i++)
        {
            policy.ExtraStore.Add(authorityChain[i]);
        }

        policy.RevocationMode = X509RevocationMode.NoCheck;
        policy.DisableCertificateDownloads = true;
        policy.VerificationTime = at.UtcDateTime;
        policy.VerificationTimeIgnored = false;
        policy.ApplicationPolicy.Add(new Oid(eku));
        try
        {
            // X509Chain treats a leaf without an EKU extension as valid for every purpose; a signing or timestamping
            // certificate must name the purpose explicitly (Fulcio and RFC 3161 TSA certificates always do).
            if (!HasExtendedKeyUsage(leaf, eku) || !chain.Build(leaf))
            {
                return null;
            }

            var elements = chain.ChainElements.Select(e => e.Certificate).ToArray();
            if (elements.Length < 2 || !elements[^1].RawDataMemory.Span.SequenceEqual(anchor.RawDataMemory.Span))
            {
                return null;
            }

            foreach (var element in elements)
            {
                // Inclusive validity at the verified time, independent of platform rounding.
                if (at < new DateTimeOffset(element.NotBefore.ToUniversalTime()) || at > new DateTimeOffset(element.NotAfter.ToUniversalTime()))
                {
                    return null;
                }
            }

            return elements;
        }
        catch (CryptographicException)
        {
            return null;
        }
    }

    /// <summary>The certificate carries an extended key usage extension that lists <paramref name="eku"/>.</summary>
    public static bool HasExtendedKeyUsage(X509Certificate2 certificate, string eku)
    {
        foreach (var extension in certificate.Extensions)
        {
            if (extension is X509EnhancedKeyUsageExtension usage)
            {
                foreach (var oid in usage.EnhancedKeyUsages)
                {
                    if (string.Equals(oid.Value, eku, StringComparison.Ordinal))
                    {
                        return true;
                    }
                }

                return false;
            }
        }

        return false;
    }

    /// <summary>The leaf must be usable for code signing: KeyUsage digitalSignature when the extension is present.</summary>
    public static bool HasDigitalSignatureUsage(X509Certificate2 leaf)
    {
        var usage = leaf.Extensions.OfType<X509KeyUsageExtension>().FirstOrDefault();
        return usage is null || usage.KeyUsages.HasFlag(X509KeyUsageFlags.DigitalSignature);
    }

    /// <summary>Every subject alternative name: rfc822Name, URI, DNS, and the Fulcio otherName (UTF8String).</summary>
    public static List<string> SubjectAlternativeNames(X509Certificate2 certificate)
    {
        var names = new List<string>();
        var extension = certificate.Extensions[SanOid];
        if (extension is null)
        {
            return names;
        }

        var reader = new AsnReader(extension.RawData, AsnEncodingRules.DER);
        var seq = reader.ReadSequence();
        reader.ThrowIfNotEmpty();
        while (seq.HasData)
        {
            var tag = seq.PeekTag();
            if (tag.TagClass != TagClass.ContextSpecific)
            {
                seq.ReadEncodedValue();
                continue;
            }

            switch (tag.TagValue)
            {
                case 1:
                case 2:
                case 6:
                    names.Add(seq.ReadCharacterString(UniversalTagNumber.IA5String, new Asn1Tag(TagClass.ContextSpecific, tag.TagValue)));
                    break;
                case 0:
                    var other = seq.ReadSequence(new Asn1Tag(TagClass.ContextSpecific, 0, isConstructed: true));
                    string typeId = other.ReadObjectIdentifier();
                    var explicitValue = other.ReadSequence(new Asn1Tag(TagClass.ContextSpecific, 0, isConstructed: true));
                    if (typeId == OtherNameSanOid && explicitValue.PeekTag().HasSameClassAndValue(new Asn1Tag(UniversalTagNumber.UTF8String)))
                    {
                        names.Add(explicitValue.ReadCharacterString(UniversalTagNumber.UTF8String));
                    }

                    break;
                default:
                    seq.ReadEncodedValue();
                    break;
            }
        }

        return names;
    }

    /// <summary>The OIDC issuer: extension 1.3.6.1.4.1.57264.1.8 (DER UTF8String), else .1.1 (raw bytes).</summary>
    public static string? OidcIssuer(X509Certificate2 certificate)
    {
        var v2 = certificate.Extensions[IssuerV2Oid];
        if (v2 is not null)
        {
            var reader = new AsnReader(v2.RawData, AsnEncodingRules.DER);
            string value = reader.ReadCharacterString(UniversalTagNumber.UTF8String);
            reader.ThrowIfNotEmpty();
            return value;
        }

        var v1 = certificate.Extensions[IssuerV1Oid];
        return v1 is null ? null : new UTF8Encoding(false, true).GetString(v1.RawData);
    }

    /// <summary>
    /// Requires at least one embedded SCT (RFC 6962 precertificate form) from a CT log of the trusted root, valid for
    /// the log's window, whose signature verifies.
    /// </summary>
    public static bool HasValidSct(X509Certificate2 leaf, X509Certificate2 issuer, IReadOnlyList<LogInstance> ctLogs)
    {
        var extension = leaf.Extensions[SctListOid];
        if (extension is null)
        {
            return false;
        }

        var outer = new AsnReader(extension.RawData, AsnEncodingRules.DER);
        byte[] list = outer.ReadOctetString();
        outer.ThrowIfNotEmpty();
        byte[] tbs = TbsWithoutExtension(leaf.RawData, SctListOid);
        byte[] issuerKeyHash = SHA256.HashData(issuer.PublicKey.ExportSubjectPublicKeyInfo());

        var span = new ReadOnlySpan<byte>(list);
        int total = ReadUInt16(ref span);
        if (total != span.Length)
        {
            return false;
        }

        while (!span.IsEmpty)
        {
            int length = ReadUInt16(ref span);
            var sct = Take(ref span, length);
            if (VerifySct(sct, tbs, issuerKeyHash, ctLogs))
            {
                return true;
            }
        }

        return false;
    }

    private static bool VerifySct(ReadOnlySpan<byte> sct, byte[] tbs, byte[] issuerKeyHash, IReadOnlyList<LogInstance> ctLogs)
    {
        if (Take(ref sct, 1)[0] != 0)
        {
            return false;
        }

        var logId = Take(ref sct, 32);
        var timestampBytes = Take(ref sct, 8);
        ulong timestampMs = System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(timestampBytes);
        int extLength = ReadUInt16(ref sct);
        var extensions = Take(ref sct, extLength);
        byte hashAlgorithm = Take(ref sct, 1)[0];
        byte signatureAlgorithm = Take(ref sct, 1)[0];
        int sigLength = ReadUInt16(ref sct);
        var signature = Take(ref sct, sigLength);
        if (!sct.IsEmpty || hashAlgorithm != 4 || timestampMs > 253402300799999UL)
        {
            return false; // only SHA-256
        }

        LogInstance? log = null;
        foreach (var candidate in ctLogs)
        {
            if (candidate.LogId.AsSpan().SequenceEqual(logId))
            {
                log = candidate;
                break;
            }
        }

        if (log is null || !log.ValidFor.Contains(DateTimeOffset.FromUnixTimeMilliseconds((long)timestampMs)))
        {
            return false;
        }

        bool ecdsa = log.Key.Kind is KeyKind.EcdsaP256 or KeyKind.EcdsaP384 or KeyKind.EcdsaP521;
        if ((signatureAlgorithm == 3) != ecdsa)
        {
            return false;
        }

        var signed = new List<byte>(tbs.Length + 64) { 0, 0 };
        signed.AddRange(timestampBytes.ToArray());
        signed.AddRange([0, 1]);
        signed.AddRange(issuerKeyHash);
        signed.AddRange([(byte)(tbs.Length >> 16), (byte)(tbs.Length >> 8), (byte)tbs.Length]);
        signed.AddRange(tbs);
        signed.AddRange([(byte)(extLength >> 8), (byte)extLength]);
        signed.AddRange(extensions.ToArray());
        return log.Key.VerifyData(signed.ToArray(), signature, HashAlgorithmName.SHA256);
    }

    /// <summary>Re-encodes a certificate's TBSCertificate without the extension <paramref name="oid"/> (the precertificate TBS).</summary>
    internal static byte[] TbsWithoutExtension(ReadOnlyMemory<byte> certificate, string oid)
    {
        var reader = new AsnReader(certificate, AsnEncodingRules.DER);
        var cert = reader.ReadSequence();
        var tbs = cert.ReadSequence();
        var writer = new AsnWriter(AsnEncodingRules.DER);
        using (writer.PushSequence())
        {
            var extensionsTag = new Asn1Tag(TagClass.ContextSpecific, 3, isConstructed: true);
            while (tbs.HasData)
            {
                if (tbs.PeekTag().HasSameClassAndValue(extensionsTag))
                {
                    var explicitExtensions = tbs.ReadSequence(extensionsTag);
                    var extensions = explicitExtensions.ReadSequence();
                    using (writer.PushSequence(extensionsTag))
                    using (writer.PushSequence())
                    {
                        while (extensions.HasData)
                        {
                            var raw = extensions.ReadEncodedValue();
                            var ext = new AsnReader(raw, AsnEncodingRules.DER).ReadSequence();
                            if (ext.ReadObjectIdentifier() != oid)
                            {
                                writer.WriteEncodedValue(raw.Span);
                            }
                        }
                    }
                }
                else
                {
                    writer.WriteEncodedValue(tbs.ReadEncodedValue().Span);
                }
            }
        }

        return writer.Encode();
    }

    private static int ReadUInt16(ref ReadOnlySpan<byte> span)
    {
        var b = Take(ref span, 2);
        return (b[0] << 8) | b[1];
    }

    private static ReadOnlySpan<byte> Take(ref ReadOnlySpan<byte> span, int count)
    {
        if (count < 0 || count > span.Length)
        {
            throw BundleException.Malformed("truncated SCT list");
        }

        var head = span[..count];
        span = span[count..];
        return head;
    }
}
