using System.IO.Abstractions;
using System.Text.RegularExpressions;

namespace Kars.Policy.Bundles;

/// <summary>
/// Verifies cosign and Sigstore signatures offline against a <see cref="SigstoreTrustedRoot"/>: Sigstore bundles
/// v0.1–v0.3 (message signatures and DSSE), the legacy cosign blob signature and bundle files, and signatures of a
/// manifest in an OCI image layout (the legacy <c>sha256-&lt;hex&gt;.sig</c> tag and cosign v3's referrer bundles).
/// </summary>
/// <remarks>
/// The shape follows sigstore-go and sigstore-python: trusted material and options are fixed per verifier; each call
/// names what was signed and who must have signed it. Every check fails closed: the result carries one
/// <see cref="BundleFailureReason"/>; no exception escapes (except argument errors of the caller), and nothing that
/// fails to parse or verify is ever reported as verified. Thread-safe.
/// </remarks>
public sealed class SigstoreVerifier
{
    private readonly SigstoreTrustedRoot _root;
    private readonly SigstoreVerifierOptions _options;

    /// <summary>Initializes a new instance of the <see cref="SigstoreVerifier"/> class.</summary>
    /// <param name="trustedRoot">The trust material; nothing else is ever trusted.</param>
    /// <param name="options">Strictness options; the defaults are cosign's. Copied: later changes have no effect.</param>
    public SigstoreVerifier(SigstoreTrustedRoot trustedRoot, SigstoreVerifierOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(trustedRoot);
        _root = trustedRoot;
        options ??= new SigstoreVerifierOptions();
        _options = new SigstoreVerifierOptions
        {
            RequireTransparencyLog = options.RequireTransparencyLog,
            RequireSignedCertificateTimestamp = options.RequireSignedCertificateTimestamp,
            AllowedPredicateTypes = options.AllowedPredicateTypes is null ? null : [.. options.AllowedPredicateTypes],
            MaxDocumentBytes = Math.Clamp(options.MaxDocumentBytes, 1024, 256 * 1024 * 1024),
        };
    }

    /// <summary>Whether a DSSE statement of any predicate type is accepted (<see cref="SigstoreVerifierOptions.AllowedPredicateTypes"/> is <see langword="null"/>).</summary>
    internal bool AllowsAnyPredicateType => _options.AllowedPredicateTypes is null;

    /// <summary>This verifier's trust and options with <see cref="SigstoreVerifierOptions.AllowedPredicateTypes"/> set to <paramref name="predicateTypes"/>.</summary>
    internal SigstoreVerifier WithPredicateTypes(IReadOnlyCollection<string> predicateTypes) => new(_root, new SigstoreVerifierOptions
    {
        RequireTransparencyLog = _options.RequireTransparencyLog,
        RequireSignedCertificateTimestamp = _options.RequireSignedCertificateTimestamp,
        AllowedPredicateTypes = predicateTypes,
        MaxDocumentBytes = _options.MaxDocumentBytes,
    });

    /// <summary>Verifies a Sigstore bundle (v0.1–v0.3 JSON) for an artifact.</summary>
    /// <param name="bundleJson">The bundle file's bytes.</param>
    /// <param name="artifact">What was signed: its bytes, or its SHA-256 digest (for DSSE: a subject of the statement).</param>
    /// <param name="signer">Who must have signed.</param>
    /// <returns>The outcome.</returns>
    public BundleVerificationResult VerifyBundle(ReadOnlyMemory<byte> bundleJson, SigstoreArtifact artifact, SignerPolicy signer)
    {
        ArgumentNullException.ThrowIfNull(artifact);
        ArgumentNullException.ThrowIfNull(signer);
        return Guard(() =>
        {
            CheckSize(bundleJson.Length, "the bundle");
            return SigstoreBundleReader.Read(bundleJson).Verify(artifact, signer, _root, _options);
        });
    }

    /// <summary>Verifies <c>cosign sign-blob</c> output: a base64 DER signature over the blob, optionally with the legacy <c>--bundle</c> file (<c>rekorBundle</c>).</summary>
    /// <param name="blob">The signed blob.</param>
    /// <param name="base64Signature">The signature file's text (surrounding white space is ignored).</param>
    /// <param name="legacyBundle">The legacy cosign bundle file, or <see langword="null"/>.</param>
    /// <param name="signer">Who must have signed (a key; a certificate in the legacy bundle with an identity policy).</param>
    /// <returns>The outcome.</returns>
    public BundleVerificationResult VerifyCosignBlob(ReadOnlyMemory<byte> blob, string base64Signature, ReadOnlyMemory<byte>? legacyBundle, SignerPolicy signer)
    {
        ArgumentNullException.ThrowIfNull(base64Signature);
        ArgumentNullException.ThrowIfNull(signer);
        return Guard(() =>
        {
            CheckSize(base64Signature.Length, "the signature");
            CheckSize(legacyBundle?.Length ?? 0, "the cosign bundle");
            return CosignLegacy.VerifyBlob(SigstoreArtifact.FromBytes(blob), base64Signature, legacyBundle, signer, _root, _options);
        });
    }

    /// <summary>
    /// Verifies the cosign signature of the manifest <paramref name="manifestDigest"/> in an OCI image layout: a
    /// simple-signing layer under the tag <c>sha256-&lt;hex&gt;.sig</c>, or a Sigstore bundle attached as an OCI 1.1
    /// referrer (listed in <c>index.json</c> or under the referrers tag <c>sha256-&lt;hex&gt;</c>). The artifact is
    /// accepted when at least one signature passes every check.
    /// </summary>
    /// <param name="fileSystem">The file system the layout is on.</param>
    /// <param name="layoutPath">The layout directory.</param>
    /// <param name="manifestDigest">The pinned manifest digest, <c>sha256:&lt;hex&gt;</c>.</param>
    /// <param name="signer">Who must have signed.</param>
    /// <returns>The outcome; <see cref="BundleVerificationResult.ArtifactDigest"/> is the manifest digest.</returns>
    public BundleVerificationResult VerifyOciLayout(IFileSystem fileSystem, string layoutPath, string manifestDigest, SignerPolicy signer)
    {
        ArgumentNullException.ThrowIfNull(fileSystem);
        ArgumentNullException.ThrowIfNull(layoutPath);
        ArgumentNullException.ThrowIfNull(signer);
        return Guard(() =>
        {
            if (!OciDigest.TryParse(manifestDigest, out byte[]? target))
            {
                throw new BundleException(BundleFailureReason.InvalidReference, $"\"{manifestDigest}\" is not sha256:<64 lower-case hex digits>");
            }

            var layout = OciLayout.Open(fileSystem, layoutPath, _options.MaxDocumentBytes);
            return VerifyManifestSignatures(layout, target, signer);
        });
    }

    /// <summary>As <see cref="VerifyOciLayout"/>, over a layout the caller has already opened (read once per load: the
    /// caller goes on to read the verified manifest from the same read). This verifier's size cap applies.</summary>
    /// <param name="layout">The opened layout.</param>
    /// <param name="manifestSha256">The SHA-256 of the manifest whose signature is checked.</param>
    /// <param name="signer">Who must have signed.</param>
    /// <returns>The outcome; <see cref="BundleVerificationResult.ArtifactDigest"/> is the manifest digest.</returns>
    internal BundleVerificationResult VerifyOpenedLayout(OciLayout layout, byte[] manifestSha256, SignerPolicy signer) =>
        Guard(() => VerifyManifestSignatures(layout.WithMaxBytes(_options.MaxDocumentBytes), manifestSha256, signer));

    private VerifiedSignature VerifyManifestSignatures(OciLayout layout, byte[] target, SignerPolicy signer)
    {
        string hex = Convert.ToHexStringLower(target);

        // The signed manifest itself, when present, must hash to the pinned digest.
        var own = layout.Manifests.FirstOrDefault(m => m.Sha256.AsSpan().SequenceEqual(target));
        if (own is not null || layout.HasBlob(target))
        {
            layout.ReadBlob(target, own?.Size, $"manifest {OciDigest.Format(target)}");
        }

        BundleException? first = null;
        int candidates = 0;

        // Legacy: tag sha256-<hex>.sig, one simple-signing layer per signature.
        foreach (var tagged in layout.Manifests.Where(m => m.RefName == $"sha256-{hex}.sig"))
        {
            IReadOnlyList<OciDescriptor> signatureLayers;
            try
            {
                signatureLayers = layout.ReadManifest(tagged).Layers;
            }
            catch (BundleException ex)
            {
                // A broken .sig manifest is a failed candidate; a referrer bundle may still verify.
                candidates++;
                first ??= ex;
                continue;
            }

            foreach (var layer in signatureLayers.Where(l => l.MediaType == CosignLegacy.SimpleSigningMediaType))
            {
                candidates++;
                try
                {
                    byte[] payload = layout.ReadBlob(layer.Sha256, layer.Size, $"signature layer {layer.Digest}");
                    return CosignLegacy.VerifySimpleSigning(payload, layer.Annotations, target, signer, _root, _options);
                }
                catch (BundleException ex)
                {
                    first ??= ex;
                }
            }
        }

        // cosign v3: Sigstore bundles attached as referrers (subject = the manifest).
        foreach (var bundleLayer in Referrers(layout, target, hex))
        {
            candidates++;
            try
            {
                byte[] bundle = layout.ReadBlob(bundleLayer.Sha256, bundleLayer.Size, $"bundle layer {bundleLayer.Digest}");
                var artifact = SigstoreArtifact.TryFromDigest(OciDigest.Format(target), out var a) ? a : throw new InvalidOperationException();
                var verified = SigstoreBundleReader.Read(bundle).Verify(artifact, signer, _root, _options);
                return verified with { ArtifactDigest = OciDigest.Format(target) };
            }
            catch (BundleException ex)
            {
                first ??= ex;
            }
        }

        throw candidates == 0
            ? new BundleException(BundleFailureReason.Unsigned, $"no cosign signature for {OciDigest.Format(target)} in the layout (no sha256-{hex[..12]}….sig tag, no referrer bundle)")
            : first!;
    }

    private static List<OciDescriptor> Referrers(OciLayout layout, byte[] target, string hex)
    {
        var result = new List<OciDescriptor>();
        var manifests = new List<OciDescriptor>();
        foreach (var descriptor in layout.Manifests)
        {
            if (descriptor.RefName == $"sha256-{hex}" && descriptor.MediaType == "application/vnd.oci.image.index.v1+json")
            {
                try
                {
                    manifests.AddRange(layout.ReadIndexBlob(descriptor));
                }
                catch (BundleException)
                {
                    continue; // as an unparsable manifest below: it can only lose candidates
                }
            }
            else if (descriptor.ArtifactType is OciLayout.BundleMediaType || descriptor.MediaType == "application/vnd.oci.image.manifest.v1+json")
            {
                manifests.Add(descriptor);
            }
        }

        foreach (var descriptor in manifests)
        {
            if (descriptor.MediaType != "application/vnd.oci.image.manifest.v1+json" || !layout.HasBlob(descriptor.Sha256) || descriptor.Sha256.AsSpan().SequenceEqual(target))
            {
                continue; // blobs the check does not need may be absent
            }

            IReadOnlyList<OciDescriptor> layers;
            OciDescriptor? subject;
            string? artifactType;
            try
            {
                (layers, subject, artifactType) = layout.ReadManifest(descriptor);
            }
            catch (BundleException)
            {
                // An unrelated manifest that does not parse must not make a correctly signed policy unverifiable;
                // skipping it can only lose a candidate signature (then Unsigned), never add one.
                continue;
            }

            if (subject is null || !subject.Sha256.AsSpan().SequenceEqual(target))
            {
                continue;
            }

            result.AddRange(layers.Where(l => l.MediaType == OciLayout.BundleMediaType || (artifactType == OciLayout.BundleMediaType && l.MediaType.StartsWith("application/vnd.dev.sigstore.bundle", StringComparison.Ordinal))));
        }

        return result;
    }

    private void CheckSize(int length, string what)
    {
        if (length > _options.MaxDocumentBytes)
        {
            throw BundleException.Malformed($"{what} is larger than {_options.MaxDocumentBytes} bytes");
        }
    }

    private static BundleVerificationResult Guard(Func<VerifiedSignature> check)
    {
        try
        {
            var verified = check();
            return BundleVerificationResult.Verified(verified.ArtifactDigest, verified.Signer, verified.SignedAt);
        }
        catch (BundleException ex)
        {
            return BundleVerificationResult.Failed(ex.Reason, ex.Message);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return BundleVerificationResult.Failed(BundleFailureReason.NotFound, $"a file could not be read ({ex.GetType().Name})");
        }
        catch (RegexMatchTimeoutException)
        {
            return BundleVerificationResult.Failed(BundleFailureReason.IdentityMismatch, "the identity pattern timed out");
        }
        catch (Exception ex) when (ex is not (OutOfMemoryException or StackOverflowException))
        {
            // Any other exception is malformed input the parsers did not name: a failure, never a crash or a pass.
            return BundleVerificationResult.Failed(BundleFailureReason.CanonicalFormViolation, $"malformed input ({ex.GetType().Name}: {ex.Message})");
        }
    }
}
