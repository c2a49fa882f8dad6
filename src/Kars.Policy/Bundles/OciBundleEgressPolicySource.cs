using System.IO.Abstractions;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Kars.Policy.Egress;
using Microsoft.Extensions.Primitives;

namespace Kars.Policy.Bundles;

/// <summary>
/// A signed egress policy in an OCI image layout directory (DESIGN §3): the policy artifact (a kars
/// <c>EgressAllowlist</c> YAML or a native JSON policy) with its cosign signature, as <c>oras</c> and <c>cosign</c>
/// write it. Every load verifies the signature first, then compiles the verified bytes; nothing unverified is ever
/// parsed into a policy, let alone evaluated.
/// </summary>
/// <remarks>
/// <para>Loading, in order: open the layout (through the Kubernetes <c>..data</c> link when there is one, resolved once;
/// <c>index.json</c> is read once per load, so a load never mixes two versions, and digest-checked blobs are reused within a bound); pick the policy manifest (the one manifest whose <c>artifactType</c>, config
/// media type or layer media type is <see cref="KarsAllowlistMediaType"/> or <see cref="NativePolicyMediaType"/>,
/// unless a manifest digest is pinned); verify its cosign signature with <see cref="SigstoreVerifier.VerifyOciLayout"/>
/// (the legacy <c>.sig</c> tag or a referrer Sigstore bundle; a key or a keyless identity and the trusted root of the
/// verifier); read the manifest and its one policy layer, each checked against its digest; compile by media type.
/// Any failure throws <see cref="EgressPolicyLoadException"/> whose problems carry the
/// <see cref="EgressPolicyProblem.BundleFailure"/> reason; an <see cref="EgressPolicyMonitor"/> then keeps the
/// last-known-good snapshot (stale) or, with none, decides every target <c>NoPolicy</c>.</para>
/// <para>The snapshot's <see cref="EgressPolicySnapshot.Digest"/> is the SHA-256 of the policy document (the layer),
/// its generation the document's (<c>metadata.generation</c> or <c>generation</c>, 1 or more: a native document without one is
/// refused, as the rollback floor needs it). Feeds and approvals are not part
/// of a bundle: a native document that names blocklist feed files is refused (they would be unsigned).</para>
/// <para>The folder is watched as <see cref="DirectoryEgressPolicySource"/> watches one (polling every
/// <see cref="KarsEgressOptions.WatchInterval"/>, following symbolic links, including the <c>..data</c> swap).
/// Thread safety: safe for concurrent use.</para>
/// </remarks>
public sealed class OciBundleEgressPolicySource : IEgressPolicySource, IDisposable
{
    /// <summary>The media type of the kars canonical <c>EgressAllowlist</c> YAML v1.</summary>
    public const string KarsAllowlistMediaType = KarsAllowlistYaml.MediaType;

    /// <summary>The media type of the native JSON policy document (DESIGN §5).</summary>
    public const string NativePolicyMediaType = "application/vnd.kars.egress-policy.v1+json";

    /// <summary>The in-toto predicate type of <c>cosign sign</c>'s DSSE signatures (cosign v3 referrer bundles):
    /// <c>https://sigstore.dev/cosign/sign/v1</c>. The only predicate type this source accepts when its verifier allows any
    /// (see the constructor).</summary>
    public const string CosignSignPredicateType = "https://sigstore.dev/cosign/sign/v1";

    private const string ImageManifestMediaType = "application/vnd.oci.image.manifest.v1+json";
    private const string ImageIndexMediaType = "application/vnd.oci.image.index.v1+json";

    private readonly SigstoreVerifier _verifier;
    private readonly SignerPolicy _signer;
    private readonly string? _pinnedDigest;
    private readonly string? _expectedName;
    private readonly EgressCompileSettings _settings;
    private readonly IFileSystem _fileSystem;
    private readonly DirectoryEgressPolicySource _watcher;
    private readonly int _maxBytes;
    private readonly ConditionalWeakTable<CompiledPolicy, VerifiedPolicyBundle> _verified = [];

    /// <summary>Initializes a new source. Nothing is read until <see cref="Load"/> or the first poll.</summary>
    /// <param name="layoutPath">The OCI image layout directory (or a Kubernetes volume whose <c>..data</c> holds one).</param>
    /// <param name="verifier">The verifier: trusted root and strictness (for example
    /// <see cref="SigstoreVerifierOptions.RequireTransparencyLog"/>). When its
    /// <see cref="SigstoreVerifierOptions.AllowedPredicateTypes"/> is <see langword="null"/> (any), this source accepts
    /// only <see cref="CosignSignPredicateType"/> in a DSSE signature: an attestation of another type by the same signer
    /// over the policy manifest (a provenance, an SBOM, a scan result) says something about the artifact, not that
    /// the signer approves it as policy. Set the types explicitly to accept others.</param>
    /// <param name="signer">Who must have signed: a key, or a keyless identity and issuer.</param>
    /// <param name="manifestDigest">The manifest to load, <c>sha256:&lt;hex&gt;</c>; <see langword="null"/> to pick the one policy manifest of the layout.</param>
    /// <param name="options">Options (mode override, trusted private prefixes, overbroad rules as errors,
    /// <see cref="KarsEgressOptions.WatchInterval"/>, <see cref="KarsEgressOptions.MaxDocumentBytes"/>); <see langword="null"/> for the defaults. Copied.</param>
    /// <param name="fileSystem">The file system to read from; <see langword="null"/> for the real one.</param>
    /// <param name="timeProvider">The clock that schedules the folder checks; <see langword="null"/> for <see cref="TimeProvider.System"/>.</param>
    /// <param name="expectedName">The policy this host must run: the signed kars allowlist's <c>metadata.name</c> must equal it
    /// (ordinal), and a native JSON policy, which names nothing, is refused. A signature says who approved a policy, not
    /// which sandbox it is for: without a name (or a pinned <paramref name="manifestDigest"/>) whoever can write the
    /// layout may put there any policy the signer ever signed. Another name is <see cref="BundleFailureReason.IdentityMismatch"/>.
    /// <see langword="null"/> checks no name.</param>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option is invalid, <paramref name="manifestDigest"/> is not <c>sha256:</c> and 64
    /// lower-case hex digits, or <paramref name="expectedName"/> is empty.</exception>
    public OciBundleEgressPolicySource(
        string layoutPath,
        SigstoreVerifier verifier,
        SignerPolicy signer,
        string? manifestDigest = null,
        KarsEgressOptions? options = null,
        IFileSystem? fileSystem = null,
        TimeProvider? timeProvider = null,
        string? expectedName = null)
    {
        if (expectedName is not null)
        {
            ArgumentException.ThrowIfNullOrWhiteSpace(expectedName);
        }

        ArgumentNullException.ThrowIfNull(layoutPath);
        ArgumentNullException.ThrowIfNull(verifier);
        ArgumentNullException.ThrowIfNull(signer);
        if (manifestDigest is not null && !OciDigest.TryParse(manifestDigest, out _))
        {
            throw new ArgumentException($"\"{manifestDigest}\" is not sha256:<64 lower-case hex digits>", nameof(manifestDigest));
        }

        options ??= new KarsEgressOptions();
        Name = layoutPath;
        _verifier = verifier.AllowsAnyPredicateType ? verifier.WithPredicateTypes([CosignSignPredicateType]) : verifier;
        _signer = signer;
        _pinnedDigest = manifestDigest;
        _expectedName = expectedName;
        _settings = EgressCompileSettings.From(options);
        _fileSystem = fileSystem ?? new FileSystem();
        _maxBytes = (int)Math.Clamp(options.MaxDocumentBytes, 1024, 256L * 1024 * 1024);
        _watcher = new DirectoryEgressPolicySource(layoutPath, options, _fileSystem, timeProvider);
    }

    /// <summary>Gets the layout path the policy is read from.</summary>
    public string Name { get; }

    /// <inheritdoc />
    /// <exception cref="EgressPolicyLoadException">The bundle is missing, unsigned, fails verification, or does not
    /// compile; every problem carries its <see cref="EgressPolicyProblem.BundleFailure"/>.</exception>
    public EgressPolicySnapshot Load()
    {
        // The fingerprint is taken before the read: a change during the read makes the next poll fire again.
        _watcher.MarkLoaded();
        return LoadVerified(Name, _pinnedDigest).Snapshot;
    }

    /// <inheritdoc />
    public IChangeToken GetChangeToken() => _watcher.GetChangeToken();

    /// <summary>Stops watching. Loading still works.</summary>
    public void Dispose() => _watcher.Dispose();

    /// <summary>The verified bundle a snapshot of this source was compiled from (for the last-known-good store).</summary>
    internal bool TryGetVerified(EgressPolicySnapshot snapshot, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out VerifiedPolicyBundle? bundle) =>
        _verified.TryGetValue(snapshot.Compiled, out bundle);

    /// <summary>Verifies, reads and compiles the policy of the layout at <paramref name="path"/> with this source's
    /// verifier, signer and settings (the last-known-good store re-verifies its copy through this).</summary>
    /// <exception cref="EgressPolicyLoadException">Any failure, with its reason.</exception>
    internal (EgressPolicySnapshot Snapshot, VerifiedPolicyBundle Bundle) LoadVerified(string path, string? pinnedDigest)
    {
        VerifiedPolicyBundle bundle;
        try
        {
            bundle = ReadVerified(ResolveRoot(path), pinnedDigest);
        }
        catch (BundleException ex)
        {
            throw Failure(ex.Reason, ex.Message);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw Failure(BundleFailureReason.NotFound, $"a file could not be read ({ex.GetType().Name}: {ex.Message})");
        }
        catch (Exception ex) when (ex is not OutOfMemoryException and not EgressPolicyLoadException)
        {
            // ArgumentException, JsonException, FormatException… and anything unforeseen: a failure, never a pass or a crash.
            throw Failure(BundleFailureReason.CanonicalFormViolation, $"malformed input ({ex.GetType().Name}: {ex.Message})");
        }

        EgressPolicySnapshot snapshot;
        try
        {
            snapshot = Compile(bundle);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException and not EgressPolicyLoadException)
        {
            throw Failure(BundleFailureReason.CanonicalFormViolation, $"the verified policy could not be compiled ({ex.GetType().Name}: {ex.Message})");
        }

        _verified.AddOrUpdate(snapshot.Compiled, bundle);
        return (snapshot, bundle);
    }

    private EgressPolicyLoadException Failure(BundleFailureReason reason, string message) =>
        new([new EgressPolicyProblem(EgressPolicyProblemKind.Invalid, Name, "$", $"{reason}: {message}", Suggestion(reason), reason)]);

    private static string? Suggestion(BundleFailureReason reason) => reason switch
    {
        BundleFailureReason.Unsigned => "sign the policy manifest with cosign (the .sig tag or a referrer bundle must be in the layout)",
        BundleFailureReason.IdentityMismatch => "check the signer policy: key, certificate identity and OIDC issuer",
        BundleFailureReason.InvalidReference => "pin the manifest digest",
        _ => null,
    };

    /// <summary>The layout root: <c>..data</c> resolved to its final target when the folder is a Kubernetes volume.</summary>
    private string ResolveRoot(string path)
    {
        string data = _fileSystem.Path.Combine(path, "..data");
        if (!_fileSystem.Directory.Exists(data))
        {
            return path;
        }

        var target = _fileSystem.DirectoryInfo.New(data).ResolveLinkTarget(returnFinalTarget: true);
        return target?.FullName ?? data;
    }

    private VerifiedPolicyBundle ReadVerified(string root, string? pinnedDigest)
    {
        var layout = OciLayout.Open(_fileSystem, root, _maxBytes);
        var (digest, sha256, indexEntry) = SelectManifest(layout, pinnedDigest);

        // Verify before anything of the artifact beyond its manifest is read, and never compile what did not verify.
        // The verifier reads the same open of the layout: one read of index.json per load, each blob read at most once.
        var verification = _verifier.VerifyOpenedLayout(layout, sha256, _signer);
        if (!verification.IsVerified)
        {
            throw new BundleException(verification.FailureReason!.Value, verification.Message);
        }

        byte[] manifestBytes = layout.ReadBlob(sha256, indexEntry?.Size, $"manifest {digest}");
        var manifest = PolicyManifest.Parse(manifestBytes, digest)
            ?? throw BundleException.Malformed($"manifest {digest} is not a policy artifact (no {KarsAllowlistMediaType} or {NativePolicyMediaType} artifact type or layer)");
        byte[] document = layout.ReadBlob(manifest.Layer.Sha256, manifest.Layer.Size, $"policy layer {manifest.Layer.Digest}");

        var blobs = new Dictionary<string, byte[]>(StringComparer.Ordinal)
        {
            [Convert.ToHexStringLower(sha256)] = manifestBytes,
            [Convert.ToHexStringLower(manifest.Layer.Sha256)] = document,
        };
        var entries = new List<OciDescriptor>
        {
            indexEntry ?? new OciDescriptor(ImageManifestMediaType, sha256, manifestBytes.Length, new Dictionary<string, string>(StringComparer.Ordinal), manifest.MediaType),
        };
        CollectSignatures(layout, sha256, entries, blobs);
        return new VerifiedPolicyBundle(document, manifest.MediaType, manifest.Layer.Digest, digest, verification.Signer!, verification.SignedAt, entries, blobs);
    }

    /// <summary>The pinned manifest, or the one manifest of the layout that is a policy artifact.</summary>
    private static (string Digest, byte[] Sha256, OciDescriptor? IndexEntry) SelectManifest(OciLayout layout, string? pinnedDigest)
    {
        if (pinnedDigest is not null)
        {
            if (!OciDigest.TryParse(pinnedDigest, out byte[]? pinned))
            {
                throw new BundleException(BundleFailureReason.InvalidReference, $"\"{pinnedDigest}\" is not sha256:<64 lower-case hex digits>");
            }

            var listed = layout.Manifests.FirstOrDefault(m => m.Sha256.AsSpan().SequenceEqual(pinned));
            if (listed is null && !layout.HasBlob(pinned))
            {
                throw new BundleException(BundleFailureReason.NotFound, $"manifest {pinnedDigest} is not in the layout");
            }

            return (pinnedDigest, pinned, listed);
        }

        var found = new List<OciDescriptor>();
        foreach (var descriptor in layout.Manifests)
        {
            if (descriptor.MediaType != ImageManifestMediaType || descriptor.ArtifactType is { } type && !IsPolicyType(type))
            {
                continue; // signatures, referrer bundles, indexes and other images
            }

            if (descriptor.ArtifactType is null && !layout.HasBlob(descriptor.Sha256))
            {
                continue;
            }

            byte[] bytes = layout.ReadBlob(descriptor.Sha256, descriptor.Size, $"manifest {descriptor.Digest}");
            if (PolicyManifest.Parse(bytes, descriptor.Digest) is not null)
            {
                found.Add(descriptor);
            }
        }

        var distinct = found.DistinctBy(d => d.Digest, StringComparer.Ordinal).ToList();
        return distinct.Count switch
        {
            1 => (distinct[0].Digest, distinct[0].Sha256, distinct[0]),
            0 => throw new BundleException(BundleFailureReason.NotFound, $"the layout holds no policy manifest ({KarsAllowlistMediaType} or {NativePolicyMediaType})"),
            _ => throw new BundleException(BundleFailureReason.InvalidReference, $"the layout holds {distinct.Count} policy manifests ({string.Join(", ", distinct.Select(d => d.Digest))}); pin one by its digest"),
        };
    }

    /// <summary>Copies every signature the verifier may have used (the <c>.sig</c> tag, referrer manifests and the
    /// referrers-tag index, with their layers) so the last-known-good store can verify its copy again on load.
    /// Every blob is read through the digest check; blobs absent from the layout, and manifests or referrer indexes that do
    /// not read (they do not parse, or fail their digest), are skipped, as the verifier skips them: they cannot hold a
    /// signature it used, and the store verifies its copy again when it loads it.</summary>
    private static void CollectSignatures(OciLayout layout, byte[] target, List<OciDescriptor> entries, Dictionary<string, byte[]> blobs)
    {
        string hex = Convert.ToHexStringLower(target);
        foreach (var descriptor in layout.Manifests)
        {
            if (descriptor.Sha256.AsSpan().SequenceEqual(target) || !layout.HasBlob(descriptor.Sha256))
            {
                continue;
            }

            if (descriptor.RefName == $"sha256-{hex}" && descriptor.MediaType == ImageIndexMediaType)
            {
                IReadOnlyList<OciDescriptor> referrers;
                try
                {
                    referrers = layout.ReadIndexBlob(descriptor);
                }
                catch (BundleException)
                {
                    continue;
                }

                blobs[Convert.ToHexStringLower(descriptor.Sha256)] = layout.ReadBlob(descriptor.Sha256, descriptor.Size, $"index {descriptor.Digest}");
                entries.Add(descriptor);
                foreach (var inner in referrers)
                {
                    CopyManifest(layout, inner, target, requireSubject: true, blobs);
                }

                continue;
            }

            if (descriptor.MediaType != ImageManifestMediaType)
            {
                continue;
            }

            bool isSigTag = descriptor.RefName == $"sha256-{hex}.sig";
            if (CopyManifest(layout, descriptor, target, requireSubject: !isSigTag, blobs))
            {
                entries.Add(descriptor);
            }
        }
    }

    private static bool CopyManifest(OciLayout layout, OciDescriptor descriptor, byte[] target, bool requireSubject, Dictionary<string, byte[]> blobs)
    {
        if (descriptor.MediaType != ImageManifestMediaType || !layout.HasBlob(descriptor.Sha256))
        {
            return false;
        }

        IReadOnlyList<OciDescriptor> layers;
        OciDescriptor? subject;
        try
        {
            (layers, subject, _) = layout.ReadManifest(descriptor);
        }
        catch (BundleException)
        {
            return false;
        }

        if (requireSubject && (subject is null || !subject.Sha256.AsSpan().SequenceEqual(target)))
        {
            return false;
        }

        blobs[Convert.ToHexStringLower(descriptor.Sha256)] = layout.ReadBlob(descriptor.Sha256, descriptor.Size, $"manifest {descriptor.Digest}");
        foreach (var layer in layers)
        {
            if (layout.HasBlob(layer.Sha256))
            {
                blobs[Convert.ToHexStringLower(layer.Sha256)] = layout.ReadBlob(layer.Sha256, layer.Size, $"layer {layer.Digest}");
            }
        }

        return true;
    }

    private EgressPolicySnapshot Compile(VerifiedPolicyBundle bundle)
    {
        if (bundle.MediaType == KarsAllowlistMediaType)
        {
            var parsed = KarsAllowlistYaml.Parse(bundle.Document);
            if (!parsed.IsValid)
            {
                throw new EgressPolicyLoadException(
                    [.. parsed.Violations.Select(v => new EgressPolicyProblem(
                        EgressPolicyProblemKind.Invalid,
                        Name,
                        v.Line > 0 ? $"line {v.Line.ToString(System.Globalization.CultureInfo.InvariantCulture)}" : "$",
                        $"{BundleFailureReason.CanonicalFormViolation}: {v.Message}",
                        null,
                        BundleFailureReason.CanonicalFormViolation))]);
            }

            if (_expectedName is not null && !string.Equals(parsed.Name, _expectedName, StringComparison.Ordinal))
            {
                throw Failure(BundleFailureReason.IdentityMismatch, parsed.Name is null
                    ? $"the signed policy names no metadata.name; this host runs \"{_expectedName}\""
                    : $"the signed policy is \"{parsed.Name}\"; this host runs \"{_expectedName}\"");
            }

            var model = KarsAllowlistYaml.ToPolicyModel(parsed, bundle.ContentDigest, Name);
            if (_settings.OverbroadIsError && model.Warnings.Count > 0)
            {
                throw new EgressPolicyLoadException([.. model.Warnings.Select(w => AsBundleProblem(w))]);
            }

            return EgressPolicySnapshot.FromCompiled(CompiledPolicy.Compile(model, [], _settings.PrivateAllow), _settings);
        }

        if (_expectedName is not null)
        {
            throw Failure(BundleFailureReason.IdentityMismatch, $"a native JSON policy names no policy; this host runs \"{_expectedName}\" (publish it as a kars allowlist with metadata.name)");
        }

        if (KarsPolicyReader.LooksLikeKarsAllowlist(bundle.Document))
        {
            throw Failure(BundleFailureReason.CanonicalFormViolation, $"the layer's media type is {NativePolicyMediaType} but the document is a kars allowlist.json");
        }

        EgressPolicySnapshot snapshot;
        try
        {
            // No feeds are supplied: a bundled document that names feed files is refused (they would be unsigned).
            snapshot = EgressPolicySnapshot.Compile(bundle.Document, feeds: null, Name, _settings);
        }
        catch (EgressPolicyLoadException ex)
        {
            throw new EgressPolicyLoadException([.. ex.Problems.Select(AsBundleProblem)]);
        }

        if (snapshot.Generation < 1)
        {
            // The rollback floor needs a generation: without one every signed native policy would be generation 0.
            throw Failure(BundleFailureReason.CanonicalFormViolation, "a signed native policy must carry a \"generation\" of 1 or more (the rollback floor)");
        }

        return snapshot;
    }

    private static EgressPolicyProblem AsBundleProblem(EgressPolicyProblem problem) =>
        new(problem.Kind, problem.Source, problem.Path, $"{BundleFailureReason.CanonicalFormViolation}: {problem.Message}", problem.Suggestion, BundleFailureReason.CanonicalFormViolation);

    private static bool IsPolicyType(string mediaType) => mediaType is KarsAllowlistMediaType or NativePolicyMediaType;

    /// <summary>A policy artifact manifest: its policy media type and its one policy layer.</summary>
    private sealed record PolicyManifest(string MediaType, OciDescriptor Layer)
    {
        /// <summary>Reads an image manifest; <see langword="null"/> when it is not a policy artifact.</summary>
        /// <exception cref="BundleException">The manifest is malformed, or a policy manifest has not exactly one policy layer.</exception>
        public static PolicyManifest? Parse(byte[] bytes, string digest)
        {
            string what = $"manifest {digest}";
            using var document = Json.Parse(bytes, what);
            var top = document.RootElement;
            if (top.ValueKind != JsonValueKind.Object)
            {
                throw BundleException.Malformed($"{what} is not a JSON object");
            }

            string? artifactType = Json.OptionalString(top, "artifactType", what);
            string? configType = Json.OptionalObject(top, "config", what) is { } config ? Json.OptionalString(config, "mediaType", what) : null;
            var layers = new List<OciDescriptor>();
            if (top.TryGetProperty("layers", out var array))
            {
                if (array.ValueKind != JsonValueKind.Array || array.GetArrayLength() > 4096)
                {
                    throw BundleException.Malformed($"{what}: layers must be an array");
                }

                foreach (var layer in array.EnumerateArray())
                {
                    string layerDigest = Json.String(layer, "digest", what + " layer");
                    if (!OciDigest.TryParse(layerDigest, out byte[]? sha256))
                    {
                        throw new BundleException(BundleFailureReason.InvalidReference, $"{what}: layer digest \"{layerDigest}\" is not a sha256 digest");
                    }

                    layers.Add(new OciDescriptor(Json.String(layer, "mediaType", what + " layer"), sha256, Json.NonNegativeInt64(layer, "size", what + " layer"), new Dictionary<string, string>(StringComparer.Ordinal), null));
                }
            }

            // The artifact type: artifactType (OCI 1.1), else a policy config media type (OCI 1.0 artifacts), else the layers'.
            string? type = artifactType is not null && IsPolicyType(artifactType) ? artifactType
                : artifactType is null && configType is not null && IsPolicyType(configType) ? configType
                : artifactType is null ? layers.Select(l => l.MediaType).FirstOrDefault(IsPolicyType)
                : null;
            if (type is null)
            {
                return null;
            }

            var policyLayers = layers.Where(l => IsPolicyType(l.MediaType)).ToList();
            if (policyLayers.Count != 1 || policyLayers[0].MediaType != type)
            {
                throw BundleException.Malformed($"{what}: a {type} artifact must have exactly one layer of that media type (found {policyLayers.Count} policy layers)");
            }

            return new PolicyManifest(type, policyLayers[0]);
        }
    }
}

/// <summary>What a verified load read: the policy document and everything needed to verify it again (the manifest,
/// the signature manifests and their layers, and the index entries that name them).</summary>
internal sealed record VerifiedPolicyBundle(
    byte[] Document,
    string MediaType,
    string ContentDigest,
    string ManifestDigest,
    string Signer,
    DateTimeOffset? SignedAt,
    IReadOnlyList<OciDescriptor> IndexEntries,
    IReadOnlyDictionary<string, byte[]> Blobs);
