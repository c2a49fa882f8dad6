using System.IO.Abstractions;
using System.Security.Cryptography;
using Kars.Policy.Bundles;
using Kars.Policy.Egress;
using Kars.Policy.Tests.Egress;
using Kars.Policy.Tests.Shared.Files;
using Microsoft.Extensions.Time.Testing;

namespace Kars.Policy.Tests.Bundles.Fuzz;

/// <summary>
/// The OCI layout reader and the last-known-good store on the real file system, with hostile files in place of a
/// layout's files: a symbolic link out of the layout (to a copy of the same bytes, to <c>/etc/passwd</c>, to
/// <c>/dev/zero</c> or <c>/dev/urandom</c>), a FIFO, a directory, a 10 GiB or 100 MB sparse file, a missing file, an
/// unreadable file (a no-op when the tests run as root), garbage bytes, deeply nested JSON: every kind of
/// <see cref="HostileFiles"/> (tests/Shared, also used by the CLI's process tests). Each load must return the valid policy or fail with its typed error, and
/// must return at all: the time guard is a safety net that turns a blocked read into a failure, not the assertion.
/// </summary>
[System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
public sealed class HostileFileSystemTests : IDisposable
{
    // A hang guard only (FuzzRun.Bounded): one load takes milliseconds; a blocked open never returns at all.
    private static readonly TimeSpan Guard = TimeSpan.FromMinutes(2);
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "kars-hostile-" + Guid.NewGuid().ToString("N"));
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly IFileSystem _fs = new FileSystem();
    private readonly HostileFiles _hostile;

    public HostileFileSystemTests() => _hostile = new HostileFiles(_folder);

    public static TheoryData<string, string> Cases()
    {
        var data = new TheoryData<string, string>();
        foreach (string target in new[] { "index.json", "oci-layout", "manifest", "layer", "signature-manifest", "payload" })
        {
            foreach (string hostile in HostileFiles.Kinds)
            {
                data.Add(target, hostile);
            }
        }

        return data;
    }

    public void Dispose()
    {
        _key.Dispose();
        _hostile.Dispose();
        Directory.Delete(_folder, recursive: true);
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void A_hostile_file_in_the_layout_is_refused_with_a_reason_and_never_blocks(string target, string hostile)
    {
        var (root, manifest, files, expected) = SignedLayout("layout");
        _hostile.Replace(files[target], hostile);
        var (verifier, signer) = Trust();

        var outcome = FuzzRun.Bounded(
            () =>
            {
                using var source = new OciBundleEgressPolicySource(root, verifier, signer, null, null, _fs, new FakeTimeProvider(EgressTestHelpers.Start));
                try
                {
                    return source.Load().Digest;
                }
                catch (EgressPolicyLoadException ex)
                {
                    ex.Problems[0].BundleFailure.Should().NotBeNull(ex.Message);
                    return "refused: " + ex.Problems[0].Message;
                }
            },
            Guard,
            _hostile.ReleaseFifos);
        var verified = FuzzRun.Bounded(() => verifier.VerifyOciLayout(_fs, root, manifest, signer), Guard, _hostile.ReleaseFifos);

        if (!outcome.StartsWith("refused", StringComparison.Ordinal))
        {
            outcome.Should().Be(expected, "only the signed policy ever loads");
            hostile.Should().Be("unreadable", "only a file whose mode change is ignored (root) may still load");
        }

        if (verified.IsVerified && hostile != "unreadable")
        {
            target.Should().BeOneOf(["layer"], "the signature check does not read the policy layer; the load does (hostile: {0})", hostile);
        }
    }

    /// <summary>A 100 MB <c>index.json</c> (sparse) is refused from its size, before it is read.</summary>
    [Fact]
    public void A_100_MB_index_is_refused_without_being_read()
    {
        var (root, manifest, files, _) = SignedLayout("layout");
        using (var stream = File.Open(files["index.json"], FileMode.Open))
        {
            stream.SetLength(100L * 1024 * 1024);
        }

        var (verifier, signer) = Trust();
        var (allocated, reason) = FuzzRun.Bounded(
            () =>
            {
                long before = GC.GetAllocatedBytesForCurrentThread();
                var result = verifier.VerifyOciLayout(_fs, root, manifest, signer);
                return (GC.GetAllocatedBytesForCurrentThread() - before, result.FailureReason);
            },
            Guard);

        reason.Should().Be(BundleFailureReason.CanonicalFormViolation);
        allocated.Should().BeLessThan(8L * 1024 * 1024, "the index is refused from its size, not read whole");
    }

    /// <summary>The persisted last-known-good, with a hostile file in its state directory: the store returns the saved
    /// policy, or refuses the copy (<see cref="InvalidDataException"/>), and never blocks.</summary>
    [Theory]
    [InlineData("index.json", "fifo")]
    [InlineData("index.json", "link-dev-zero")]
    [InlineData("index.json", "directory")]
    [InlineData("index.json", "sparse-10GiB")]
    [InlineData("index.json", "link-to-fifo")]
    [InlineData("oci-layout", "fifo")]
    [InlineData("oci-layout", "link-dev-urandom")]
    [InlineData("layer", "fifo")]
    [InlineData("layer", "link-dev-zero")]
    [InlineData("layer", "link-etc-passwd")]
    [InlineData("layer", "sparse-10GiB")]
    [InlineData("layer", "link-to-fifo")]
    [InlineData("manifest", "fifo")]
    [InlineData("manifest", "directory")]
    [InlineData("manifest", "missing")]
    [InlineData("payload", "fifo")]
    [InlineData("payload", "link-outside-same-bytes")]
    public void A_hostile_file_in_the_last_known_good_state_is_refused_and_never_blocks(string target, string hostile)
    {
        var (root, _, files, expected) = SignedLayout("layout");
        string state = Path.Combine(_folder, "state");
        var (verifier, signer) = Trust();
        var time = new FakeTimeProvider(EgressTestHelpers.Start);
        using (var source = new OciBundleEgressPolicySource(root, verifier, signer, null, null, _fs, time))
        {
            new FileEgressPolicyLastKnownGoodStore(state, source, _fs, time).Save(source.Load());
        }

        Directory.Delete(root, recursive: true);
        string path = target switch
        {
            "index.json" or "oci-layout" => Path.Combine(state, target),
            _ => Path.Combine(state, "blobs", "sha256", Path.GetFileName(files[target])),
        };
        _hostile.Replace(path, hostile);

        string outcome = FuzzRun.Bounded(
            () =>
            {
                using var source = new OciBundleEgressPolicySource(root, verifier, signer, null, null, _fs, time);
                try
                {
                    return new FileEgressPolicyLastKnownGoodStore(state, source, _fs, time).Load()?.Digest ?? "none";
                }
                catch (InvalidDataException ex)
                {
                    return "refused: " + ex.Message;
                }
            },
            Guard,
            _hostile.ReleaseFifos);

        if (!outcome.StartsWith("refused", StringComparison.Ordinal))
        {
            outcome.Should().Be(expected);
            hostile.Should().Be("link-outside-same-bytes", "a link is refused in the layout; only the same bytes may load");
        }
    }

    /// <summary>A FIFO or a link planted at the temporary names the store writes through (<c>index.json.tmp</c>,
    /// <c>oci-layout.tmp</c>, a blob's <c>.tmp</c>) neither blocks a save nor redirects its write out of the state directory.</summary>
    [Theory]
    [InlineData("fifo")]
    [InlineData("link-outside")]
    public void A_planted_temporary_file_never_blocks_a_save_or_redirects_it(string hostile)
    {
        var (root, _, files, expected) = SignedLayout("layout");
        string state = Path.Combine(_folder, "state");
        Directory.CreateDirectory(Path.Combine(state, "blobs", "sha256"));
        string victim = Path.Combine(_folder, "victim");
        File.WriteAllText(victim, "not yours");
        foreach (string temp in new[] { Path.Combine(state, "index.json.tmp"), Path.Combine(state, "oci-layout.tmp"), Path.Combine(state, "blobs", "sha256", Path.GetFileName(files["layer"]) + ".tmp") })
        {
            if (hostile == "fifo")
            {
                _hostile.MakeFifo(temp);
            }
            else
            {
                File.CreateSymbolicLink(temp, victim);
            }
        }

        var (verifier, signer) = Trust();
        var time = new FakeTimeProvider(EgressTestHelpers.Start);
        FuzzRun.Bounded(
            () =>
            {
                using var source = new OciBundleEgressPolicySource(root, verifier, signer, null, null, _fs, time);
                new FileEgressPolicyLastKnownGoodStore(state, source, _fs, time).Save(source.Load());
                return true;
            },
            Guard,
            _hostile.ReleaseFifos);

        File.ReadAllText(victim).Should().Be("not yours", "a link at a temporary name is replaced, never written through");
        using var restarted = new OciBundleEgressPolicySource(root, verifier, signer, null, null, _fs, time);
        new FileEgressPolicyLastKnownGoodStore(state, restarted, _fs, time).Load()!.Digest.Should().Be(expected);
    }

    private (SigstoreVerifier Verifier, SignerPolicy Signer) Trust() =>
        (new SigstoreVerifier(SigstoreTrustedRoot.Empty, new SigstoreVerifierOptions { RequireTransparencyLog = false }), SignerPolicy.ForPublicKey(_key.ExportSubjectPublicKeyInfoPem()));

    private (string Root, string Manifest, Dictionary<string, string> Files, string Expected) SignedLayout(string name)
    {
        string root = Path.Combine(_folder, name);
        var layout = new PolicyLayout(_fs, root);
        var (manifest, layer) = layout.AddPolicy(PolicyLayout.Yaml(2, "api.example.org"));
        string payload = layout.SignWithKey(manifest, _key);
        string index = File.ReadAllText(Path.Combine(root, "index.json"));
        string signatureManifest = "sha256:" + index[(index.LastIndexOf("sha256:", index.IndexOf(".sig", StringComparison.Ordinal), StringComparison.Ordinal) + 7)..][..64];
        string expected;
        using (var source = new OciBundleEgressPolicySource(root, Trust().Verifier, Trust().Signer, null, null, _fs, new FakeTimeProvider(EgressTestHelpers.Start)))
        {
            expected = source.Load().Digest;
        }

        var files = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["index.json"] = Path.Combine(root, "index.json"),
            ["oci-layout"] = Path.Combine(root, "oci-layout"),
            ["manifest"] = layout.BlobPath(manifest),
            ["layer"] = layout.BlobPath(layer),
            ["payload"] = layout.BlobPath(payload),
            ["signature-manifest"] = layout.BlobPath(signatureManifest),
        };
        files.Values.Should().OnlyContain(f => File.Exists(f));
        return (root, manifest, files, expected);
    }
}
