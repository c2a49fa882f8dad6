using System.IO.Abstractions;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Kars.Policy.Bundles;

namespace Kars.Policy.Tests.Bundles;

/// <summary>
/// A signed policy bundle in an OCI image layout, written as <c>oras push</c> and <c>cosign sign</c> write one: the
/// policy manifest (artifactType = the policy media type, one layer of that type) tagged <c>policy</c>, and its
/// signature as a legacy <c>sha256-&lt;hex&gt;.sig</c> tag (key) or a Sigstore bundle referrer (keyless).
/// </summary>
internal sealed class PolicyLayout
{
    public const string Kars = OciBundleEgressPolicySource.KarsAllowlistMediaType;
    public const string Native = OciBundleEgressPolicySource.NativePolicyMediaType;

    private readonly List<(string Digest, string Json)> _index = [];
    private readonly Dictionary<string, byte[]> _manifests = [];

    public PolicyLayout(IFileSystem fileSystem, string root)
    {
        FileSystem = fileSystem;
        Root = root;
        FileSystem.Directory.CreateDirectory(FileSystem.Path.Combine(root, "blobs", "sha256"));
        FileSystem.File.WriteAllText(FileSystem.Path.Combine(root, "oci-layout"), "{\"imageLayoutVersion\":\"1.0.0\"}");
        Flush();
    }

    public IFileSystem FileSystem { get; }

    public string Root { get; }

    /// <summary>A canonical kars EgressAllowlist with the hosts (sorted) on port 443.</summary>
    public static string Yaml(long generation, params string[] hosts)
    {
        var text = new StringBuilder($"apiVersion: kars.dev/v1alpha1\nkind: EgressAllowlist\nmetadata:\n  generation: {generation}\nspec:\n  endpoints:\n");
        foreach (string host in hosts.Order(StringComparer.Ordinal))
        {
            text.Append($"    - host: {host}\n      port: 443\n");
        }

        return text.ToString();
    }

    /// <summary>The same allowlist with <c>metadata.name</c> (which comes first).</summary>
    public static string NamedYaml(string name, long generation, params string[] hosts) =>
        Yaml(generation, hosts).Replace("metadata:\n", $"metadata:\n  name: {name}\n", StringComparison.Ordinal);

    /// <summary>Pushes a policy artifact; with <paramref name="replace"/> the <c>policy</c> tag moves to it (the old manifest leaves the index).</summary>
    public (string Manifest, string Layer) AddPolicy(string document, string mediaType = Kars, bool replace = true, string refName = "policy")
    {
        if (replace)
        {
            _index.RemoveAll(e => e.Json.Contains($"\"org.opencontainers.image.ref.name\":\"{refName}\"", StringComparison.Ordinal));
        }

        var (config, configSize) = Put("{}"u8.ToArray());
        var (layer, layerSize) = Put(Encoding.UTF8.GetBytes(document));
        byte[] manifestBytes = Encoding.UTF8.GetBytes($$$"""{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"{{{mediaType}}}","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{{{config}}}","size":{{{configSize}}}},"layers":[{"mediaType":"{{{mediaType}}}","digest":"{{{layer}}}","size":{{{layerSize}}},"annotations":{"org.opencontainers.image.title":"allowlist.yaml"}}]}""");
        var (manifest, size) = Put(manifestBytes);
        _manifests[manifest] = manifestBytes;
        _index.Add((manifest, $$$"""{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{{{manifest}}}","size":{{{size}}},"annotations":{"org.opencontainers.image.ref.name":"{{{refName}}}"}}"""));
        Flush();
        return (manifest, layer);
    }

    /// <summary><c>cosign sign --key</c> (legacy tag): a simple-signing payload naming the manifest, signed with the key.
    /// With <paramref name="signOther"/> the signature is a valid one over other bytes (a forged signature).</summary>
    public string SignWithKey(string manifestDigest, ECDsa key, bool signOther = false)
    {
        byte[] payload = Encoding.UTF8.GetBytes($$$"""{"critical":{"identity":{"docker-reference":"registry.test/policy"},"image":{"docker-manifest-digest":"{{{manifestDigest}}}"},"type":"cosign container image signature"},"optional":null}""");
        byte[] signature = key.SignData(signOther ? [.. payload, 0x20] : payload, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
        var (payloadDigest, payloadSize) = Put(payload);
        var (config, configSize) = Put("{}"u8.ToArray());
        var (sig, size) = Put(Encoding.UTF8.GetBytes($$$"""{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{{{config}}}","size":{{{configSize}}}},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"{{{payloadDigest}}}","size":{{{payloadSize}}},"annotations":{"dev.cosignproject.cosign/signature":"{{{Convert.ToBase64String(signature)}}}"}}]}"""));
        _index.RemoveAll(e => e.Json.Contains($"sha256-{manifestDigest[7..]}.sig", StringComparison.Ordinal));
        _index.Add((sig, $$$"""{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{{{sig}}}","size":{{{size}}},"annotations":{"org.opencontainers.image.ref.name":"sha256-{{{manifestDigest[7..]}}}.sig"}}"""));
        Flush();
        return payloadDigest;
    }

    /// <summary><c>cosign sign</c> keyless (v3 default): a Sigstore bundle over the manifest, attached as an OCI 1.1 referrer.</summary>
    public void SignKeyless(string manifestDigest, TestSigstore sigstore, X509Certificate2? leaf = null, ECDsa? key = null)
    {
        var builder = new BundleBuilder(sigstore) { Artifact = _manifests[manifestDigest], Leaf = leaf, SigningKey = key };
        AttachBundle(manifestDigest, builder.Build());
    }

    /// <summary>Attaches a Sigstore bundle (any content, for example a DSSE attestation) to the manifest as an OCI 1.1 referrer.</summary>
    public void AttachBundle(string manifestDigest, string bundleJson)
    {
        var (bundleDigest, bundleSize) = Put(Encoding.UTF8.GetBytes(bundleJson));
        var (config, configSize) = Put("{}"u8.ToArray());
        var (referrer, size) = Put(Encoding.UTF8.GetBytes($$$"""{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json","config":{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{{{config}}}","size":{{{configSize}}}},"layers":[{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","digest":"{{{bundleDigest}}}","size":{{{bundleSize}}}}],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{{{manifestDigest}}}","size":{{{_manifests[manifestDigest].Length}}}}}"""));
        _index.Add((referrer, $$$"""{"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.dev.sigstore.bundle.v0.3+json","digest":"{{{referrer}}}","size":{{{size}}}}"""));
        Flush();
    }

    /// <summary>Adds an image manifest of any bytes (for example one that does not parse) to the index, with an artifact
    /// type that is not a policy's.</summary>
    public void AddUnrelatedManifest(byte[] bytes)
    {
        var (digest, size) = Put(bytes);
        _index.Add((digest, $$$"""{"mediaType":"application/vnd.oci.image.manifest.v1+json","artifactType":"application/vnd.example.other","digest":"{{{digest}}}","size":{{{size}}}}"""));
        Flush();
    }

    public string BlobPath(string digest) => FileSystem.Path.Combine(Root, "blobs", "sha256", digest[7..]);

    private (string Digest, int Size) Put(byte[] bytes)
    {
        string hex = Convert.ToHexStringLower(SHA256.HashData(bytes));
        FileSystem.File.WriteAllBytes(FileSystem.Path.Combine(Root, "blobs", "sha256", hex), bytes);
        return ("sha256:" + hex, bytes.Length);
    }

    private void Flush() =>
        FileSystem.File.WriteAllText(FileSystem.Path.Combine(Root, "index.json"), "{\"schemaVersion\":2,\"manifests\":[" + string.Join(",", _index.Select(e => e.Json)) + "]}");
}
