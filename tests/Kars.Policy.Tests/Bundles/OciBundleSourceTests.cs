using System.IO.Abstractions;
using System.IO.Abstractions.TestingHelpers;
using System.Security.Cryptography;
using System.Text;
using Kars.Policy.Bundles;
using Kars.Policy.Egress;
using Microsoft.Extensions.Time.Testing;

namespace Kars.Policy.Tests.Bundles;

/// <summary>Verify → compile → swap through the monitor (DESIGN §3), with own vectors: key-signed legacy tags and
/// keyless referrer bundles from the test Sigstore instance.</summary>
public sealed class OciBundleSourceTests : IDisposable
{
    private static readonly SigstoreVerifier NoTlog = new(SigstoreTrustedRoot.Empty, new SigstoreVerifierOptions { RequireTransparencyLog = false });
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly MockFileSystem _fs = new();
    private readonly PolicyLayout _layout;

    public OciBundleSourceTests() => _layout = new PolicyLayout(_fs, "/policy");

    private SignerPolicy KeySigner => SignerPolicy.ForPublicKey(_key.ExportSubjectPublicKeyInfoPem());

    public void Dispose() => _key.Dispose();

    private OciBundleEgressPolicySource Source(string? digest = null, SigstoreVerifier? verifier = null, SignerPolicy? signer = null) =>
        new("/policy", verifier ?? NoTlog, signer ?? KeySigner, digest, null, _fs, new FakeTimeProvider(Egress.EgressTestHelpers.Start));

    private string Publish(long generation, params string[] hosts)
    {
        var (manifest, _) = _layout.AddPolicy(PolicyLayout.Yaml(generation, hosts));
        _layout.SignWithKey(manifest, _key);
        return manifest;
    }

    private static BundleFailureReason? Reason(EgressPolicyState state) => state.Problems.Count > 0 ? state.Problems[0].BundleFailure : null;

    private static BundleFailureReason? LoadFailure(IEgressPolicySource source)
    {
        var act = () => source.Load();
        return act.Should().Throw<EgressPolicyLoadException>().Which.Problems[0].BundleFailure;
    }

    [Fact]
    public void A_key_signed_kars_bundle_loads_with_the_document_digest_and_generation()
    {
        Publish(3, "api.example.org", "pypi.example.org");
        using var source = Source();

        var snapshot = source.Load();

        byte[] document = Encoding.UTF8.GetBytes(PolicyLayout.Yaml(3, "api.example.org", "pypi.example.org"));
        snapshot.Digest.Should().Be("sha256:" + Convert.ToHexStringLower(SHA256.HashData(document)));
        snapshot.Generation.Should().Be(3);
        snapshot.Evaluate("https://a.api.example.org/x", null).Reason.Should().Be(EgressReason.Allowlisted, "a kars host covers its subdomains");
        snapshot.Evaluate("api.example.org", 8443, null).Reason.Should().Be(EgressReason.PortNotAllowed, "only the listed port");
        snapshot.Evaluate("evil.example.net", 443, null).Reason.Should().Be(EgressReason.NotAllowlisted);
    }

    [Theory]
    [InlineData(false, false)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void A_load_reads_the_layout_once_and_each_blob_at_most_once(bool keyless, bool pinned)
    {
        // One read per load: index.json is never read a second time by the verifier, so a layout that changes during a
        // load cannot have its manifest picked from one version and its signature checked in another.
        var sigstore = keyless ? new TestSigstore() : null;
        var (manifest, layer) = _layout.AddPolicy(PolicyLayout.Yaml(4, "api.example.org"));
        if (sigstore is null)
        {
            _layout.SignWithKey(manifest, _key);
        }
        else
        {
            _layout.SignKeyless(manifest, sigstore);
        }

        var counting = new CountingFileSystem(_fs);
        using var source = new OciBundleEgressPolicySource(
            "/policy",
            sigstore is null ? NoTlog : new SigstoreVerifier(sigstore.TrustedRoot()),
            sigstore is null ? KeySigner : SignerPolicy.ForIdentity(TestSigstore.Identity, TestSigstore.Issuer),
            pinned ? manifest : null,
            null,
            counting,
            new FakeTimeProvider(Egress.EgressTestHelpers.Start));
        string Full(string path) => _fs.Path.GetFullPath(path);

        for (int load = 1; load <= 2; load++)
        {
            counting.Opens.Clear();

            source.Load().Generation.Should().Be(4);

            counting.Opens.Should().Contain(Full("/policy/index.json"), 1).And.Contain(Full("/policy/oci-layout"), 1);
            counting.Opens.Should().Contain(Full(_layout.BlobPath(manifest)), 1, "the policy manifest is read once, not at selection, verification and reading").And.Contain(Full(_layout.BlobPath(layer)), 1);
            counting.Opens.Where(o => o.Value != 1).Should().BeEmpty("load {0} reads every file at most once", load);
        }
    }

    [Fact]
    public void The_verifiers_size_cap_still_applies_to_the_index_it_no_longer_reads_itself()
    {
        string manifest = Publish(2, "api.example.org");
        for (int i = 0; i < 8; i++)
        {
            _layout.AddPolicy(PolicyLayout.Yaml(2, $"other{i}.example.org"), replace: false, refName: $"other-{i}");
        }

        _fs.FileInfo.New("/policy/index.json").Length.Should().BeGreaterThan(1024);
        var small = new SigstoreVerifier(SigstoreTrustedRoot.Empty, new SigstoreVerifierOptions { RequireTransparencyLog = false, MaxDocumentBytes = 1024 });
        using var capped = Source(manifest, verifier: small);
        using var uncapped = Source(manifest);

        LoadFailure(capped).Should().Be(BundleFailureReason.CanonicalFormViolation, "the verifier refuses an index.json above its cap, as when it opened the layout itself");
        uncapped.Load().Generation.Should().Be(2);
    }

    [Fact]
    public void A_keyless_referrer_bundle_loads_and_another_identity_is_IdentityMismatch()
    {
        var sigstore = new TestSigstore();
        var (manifest, _) = _layout.AddPolicy(PolicyLayout.Yaml(1, "api.example.org"));
        _layout.SignKeyless(manifest, sigstore);
        var verifier = new SigstoreVerifier(sigstore.TrustedRoot());

        using (var source = Source(verifier: verifier, signer: SignerPolicy.ForIdentity(TestSigstore.Identity, TestSigstore.Issuer)))
        {
            source.Load().Generation.Should().Be(1);
        }

        using var wrong = Source(verifier: verifier, signer: SignerPolicy.ForIdentity("https://github.com/someone/else/.github/workflows/sign.yml@refs/heads/main", TestSigstore.Issuer));
        LoadFailure(wrong).Should().Be(BundleFailureReason.IdentityMismatch);
        using var wrongIssuer = Source(verifier: verifier, signer: SignerPolicy.ForIdentity(TestSigstore.Identity, "https://accounts.example.test"));
        LoadFailure(wrongIssuer).Should().Be(BundleFailureReason.IdentityMismatch);
        using var keyPolicy = Source(verifier: verifier);
        LoadFailure(keyPolicy).Should().NotBeNull("a key policy never accepts a certificate-signed bundle");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void An_unrelated_manifest_that_does_not_parse_does_not_fail_the_load(bool keyless)
    {
        // The verifier skips such a manifest (it can only lose a candidate signature); copying the signatures for the
        // last-known-good store must skip it too, or the source refuses a correctly signed policy the verifier accepted.
        var sigstore = new TestSigstore();
        var (manifest, _) = _layout.AddPolicy(PolicyLayout.Yaml(4, "api.example.org"));
        if (keyless)
        {
            _layout.SignKeyless(manifest, sigstore);
        }
        else
        {
            _layout.SignWithKey(manifest, _key);
        }

        _layout.AddUnrelatedManifest("not json"u8.ToArray());
        _layout.AddUnrelatedManifest("{\"schemaVersion\":2,\"layers\":"u8.ToArray());
        using var source = keyless
            ? Source(verifier: new SigstoreVerifier(sigstore.TrustedRoot()), signer: SignerPolicy.ForIdentity(TestSigstore.Identity, TestSigstore.Issuer))
            : Source();

        var snapshot = source.Load();

        snapshot.Generation.Should().Be(4);
        snapshot.Evaluate("api.example.org", 443, null).Reason.Should().Be(EgressReason.Allowlisted);
    }

    [Fact]
    public void A_native_json_bundle_loads_by_its_media_type()
    {
        var (manifest, _) = _layout.AddPolicy("""{"schemaVersion":1,"generation":7,"allow":[{"host":"*.example.org","ports":[443]}]}""", PolicyLayout.Native);
        _layout.SignWithKey(manifest, _key);
        using var source = Source();

        var snapshot = source.Load();

        snapshot.Generation.Should().Be(7);
        snapshot.Evaluate("a.example.org", 443, null).Reason.Should().Be(EgressReason.Allowlisted);
    }

    [Theory]
    [InlineData("""{"schemaVersion":1,"allow":[{"host":"*.example.org","ports":[443]}]}""")]
    [InlineData("""{"schemaVersion":1,"generation":0,"allow":[{"host":"*.example.org","ports":[443]}]}""")]
    public void A_signed_native_bundle_without_a_generation_is_CanonicalFormViolation(string document)
    {
        // Generation 0 would be a floor every older generation-less signed policy passes (no rollback protection).
        var (manifest, _) = _layout.AddPolicy(document, PolicyLayout.Native);
        _layout.SignWithKey(manifest, _key);
        using var source = Source();

        LoadFailure(source).Should().Be(BundleFailureReason.CanonicalFormViolation);
    }

    [Theory]
    [InlineData("sandbox-a", null)]
    [InlineData("sandbox-b", BundleFailureReason.IdentityMismatch)]
    [InlineData(null, BundleFailureReason.IdentityMismatch)]
    [InlineData("native", BundleFailureReason.IdentityMismatch)]
    public void An_expected_name_admits_only_the_signed_policy_of_that_name(string? published, BundleFailureReason? expected)
    {
        // Every one of these is validly signed by the accepted key: only the name tells them apart.
        string document = published switch
        {
            null => PolicyLayout.Yaml(3, "api.example.org"),
            "native" => """{"schemaVersion":1,"generation":3,"allow":[{"host":"api.example.org","ports":[443]}]}""",
            _ => PolicyLayout.NamedYaml(published, 3, "api.example.org"),
        };
        var (manifest, _) = _layout.AddPolicy(document, published == "native" ? PolicyLayout.Native : PolicyLayout.Kars);
        _layout.SignWithKey(manifest, _key);
        using var named = new OciBundleEgressPolicySource("/policy", NoTlog, KeySigner, fileSystem: _fs, expectedName: "sandbox-a");
        using var unnamed = Source();

        if (expected is null)
        {
            named.Load().Evaluate("api.example.org", 443, null).Reason.Should().Be(EgressReason.Allowlisted);
        }
        else
        {
            LoadFailure(named).Should().Be(expected);
        }

        unnamed.Load().Generation.Should().Be(3, "without an expected name any signed policy loads");
    }

    [Fact]
    public void Unverified_bytes_are_never_parsed_an_unsigned_invalid_document_is_Unsigned_not_a_parse_error()
    {
        _layout.AddPolicy("this is not a canonical document\n");
        using var source = Source();

        LoadFailure(source).Should().Be(BundleFailureReason.Unsigned);
    }

    [Fact]
    public void A_signed_document_that_breaks_the_canonical_form_is_CanonicalFormViolation()
    {
        var (manifest, _) = _layout.AddPolicy(PolicyLayout.Yaml(1, "api.example.org").Replace("api.example.org", "*.example.org", StringComparison.Ordinal));
        _layout.SignWithKey(manifest, _key);
        using var source = Source();

        LoadFailure(source).Should().Be(BundleFailureReason.CanonicalFormViolation);
    }

    [Fact]
    public void Two_policy_manifests_need_a_pinned_digest_and_a_pin_picks_one()
    {
        var (first, _) = _layout.AddPolicy(PolicyLayout.Yaml(1, "a.example.org"), replace: false, refName: "a");
        var (second, _) = _layout.AddPolicy(PolicyLayout.Yaml(2, "b.example.org"), replace: false, refName: "b");
        _layout.SignWithKey(first, _key);
        _layout.SignWithKey(second, _key);

        using var unpinned = Source();
        LoadFailure(unpinned).Should().Be(BundleFailureReason.InvalidReference);
        using var pinned = Source(first);
        pinned.Load().Generation.Should().Be(1);
        using var absent = Source("sha256:" + new string('0', 64));
        LoadFailure(absent).Should().Be(BundleFailureReason.NotFound);
        FluentActions.Invoking(() => Source("sha256:ABC")).Should().Throw<ArgumentException>();
    }

    [Fact]
    public void A_verified_swap_replaces_the_snapshot_and_a_tampered_layer_keeps_the_last_good_one_stale()
    {
        Publish(1, "a.example.org");
        using var source = Source();
        using var monitor = new EgressPolicyMonitor(source, null, new FakeTimeProvider(Egress.EgressTestHelpers.Start));
        monitor.State.Generation.Should().Be(1);

        var (manifest, layer) = _layout.AddPolicy(PolicyLayout.Yaml(2, "b.example.org"));
        _layout.SignWithKey(manifest, _key);
        monitor.Reload().Should().BeTrue();
        monitor.State.Generation.Should().Be(2);
        monitor.Evaluate("b.example.org", 443, null).Reason.Should().Be(EgressReason.Allowlisted);

        // Same size, other content: the layer no longer hashes to its descriptor.
        byte[] evil = Encoding.UTF8.GetBytes(PolicyLayout.Yaml(2, "e.example.org"));
        _fs.File.WriteAllBytes(_layout.BlobPath(layer), evil);
        monitor.Reload().Should().BeFalse();

        monitor.State.IsStale.Should().BeTrue();
        Reason(monitor.State).Should().Be(BundleFailureReason.DigestMismatch);
        monitor.Evaluate("b.example.org", 443, null).Reason.Should().Be(EgressReason.Allowlisted, "the last-known-good stays in force");
        monitor.Evaluate("e.example.org", 443, null).Reason.Should().Be(EgressReason.NotAllowlisted, "the tampered bytes are never evaluated");
    }

    [Fact]
    public void A_tampered_manifest_is_DigestMismatch()
    {
        string manifest = Publish(1, "a.example.org");
        using var source = Source();
        source.Load();

        string text = _fs.File.ReadAllText(_layout.BlobPath(manifest));
        _fs.File.WriteAllText(_layout.BlobPath(manifest), text.Replace("allowlist.yaml", "allowlist.yam!", StringComparison.Ordinal));

        LoadFailure(source).Should().Be(BundleFailureReason.DigestMismatch);
    }

    [Fact]
    public void A_forged_signature_or_another_key_is_SignatureInvalid_and_with_no_last_good_every_target_is_NoPolicy()
    {
        var (manifest, _) = _layout.AddPolicy(PolicyLayout.Yaml(1, "a.example.org"));
        _layout.SignWithKey(manifest, _key, signOther: true);
        using var source = Source();
        using var monitor = new EgressPolicyMonitor(source, null, new FakeTimeProvider(Egress.EgressTestHelpers.Start));

        monitor.State.IsLoaded.Should().BeFalse();
        Reason(monitor.State).Should().Be(BundleFailureReason.SignatureInvalid);
        monitor.Evaluate("a.example.org", 443, null).Reason.Should().Be(EgressReason.NoPolicy);
        monitor.Evaluate("a.example.org", 443, null).IsAllowed.Should().BeFalse();

        using var other = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        _layout.SignWithKey(manifest, other);
        monitor.Reload().Should().BeFalse();
        Reason(monitor.State).Should().Be(BundleFailureReason.SignatureInvalid);
    }

    [Fact]
    public void A_lower_generation_is_RollbackRejected_live()
    {
        Publish(5, "a.example.org");
        using var source = Source();
        using var monitor = new EgressPolicyMonitor(source, null, new FakeTimeProvider(Egress.EgressTestHelpers.Start));
        monitor.State.Generation.Should().Be(5);

        Publish(4, "b.example.org");
        monitor.Reload().Should().BeFalse();

        monitor.State.Generation.Should().Be(5);
        monitor.State.IsStale.Should().BeTrue();
        monitor.State.Problems[0].Kind.Should().Be(EgressPolicyProblemKind.RollbackRejected);
        Reason(monitor.State).Should().Be(BundleFailureReason.RollbackRejected);
    }

    [Fact]
    public void After_a_restart_the_persisted_last_known_good_serves_when_the_source_fails_and_refuses_a_rollback()
    {
        var time = PersistGenerationFive();

        _fs.File.Exists("/state/index.json").Should().BeTrue();

        // Restart 1: the source offers an older, validly signed policy.
        Publish(4, "b.example.org");
        using (var source = Source())
        using (var monitor = new EgressPolicyMonitor(source, null, time, lastKnownGood: new FileEgressPolicyLastKnownGoodStore("/state", source, _fs, time)))
        {
            monitor.State.Generation.Should().Be(5, "the persisted generation is the rollback floor across restarts");
            Reason(monitor.State).Should().Be(BundleFailureReason.RollbackRejected);
            monitor.Evaluate("a.example.org", 443, null).Reason.Should().Be(EgressReason.Allowlisted);
            monitor.Evaluate("b.example.org", 443, null).Reason.Should().Be(EgressReason.NotAllowlisted);
        }

        // Restart 2: the layout is gone; the persisted copy serves (stale), neither failing open nor dropping all egress.
        _fs.Directory.Delete("/policy", recursive: true);
        using (var source = Source())
        using (var monitor = new EgressPolicyMonitor(source, null, time, lastKnownGood: new FileEgressPolicyLastKnownGoodStore("/state", source, _fs, time)))
        {
            monitor.State.Generation.Should().Be(5);
            monitor.State.IsStale.Should().BeTrue();
            Reason(monitor.State).Should().Be(BundleFailureReason.NotFound);
            monitor.Evaluate("a.example.org", 443, null).Reason.Should().Be(EgressReason.Allowlisted);
            monitor.Evaluate("c.example.org", 443, null).Reason.Should().Be(EgressReason.NotAllowlisted);
        }
    }

    [Fact]
    public void A_newer_bundle_replaces_the_persisted_copy_and_old_blobs_are_removed()
    {
        Publish(1, "a.example.org");
        var time = new FakeTimeProvider(Egress.EgressTestHelpers.Start);
        using var source = Source();
        var store = new FileEgressPolicyLastKnownGoodStore("/state", source, _fs, time);
        using var monitor = new EgressPolicyMonitor(source, null, time, lastKnownGood: store);
        monitor.State.Generation.Should().Be(1);
        int before = _fs.Directory.GetFiles("/state/blobs/sha256").Length;

        Publish(2, "b.example.org");
        monitor.Reload().Should().BeTrue();

        using var restarted = Source();
        new FileEgressPolicyLastKnownGoodStore("/state", restarted, _fs, time).Load()!.Generation.Should().Be(2);
        _fs.Directory.GetFiles("/state/blobs/sha256").Length.Should().Be(before);
        _fs.Directory.GetFiles("/state", "*.tmp", SearchOption.AllDirectories).Should().BeEmpty();
    }

    [Theory]
    [InlineData("blob")]
    [InlineData("generation")]
    [InlineData("garbage")]
    [InlineData("other-signer")]
    public void A_corrupt_or_tampered_persisted_copy_is_refused_and_never_trusted(string damage)
    {
        var time = PersistGenerationFive();

        using var otherKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        SignerPolicy? signer = null;
        switch (damage)
        {
            case "blob":
                string layer = _fs.Directory.GetFiles("/state/blobs/sha256").Single(f => _fs.File.ReadAllText(f).StartsWith("apiVersion", StringComparison.Ordinal));
                _fs.File.WriteAllText(layer, PolicyLayout.Yaml(9, "evil.example.org"));
                break;
            case "generation":
                _fs.File.WriteAllText("/state/index.json", _fs.File.ReadAllText("/state/index.json").Replace("\"dev.kars.policy.lkg.generation\":\"5\"", "\"dev.kars.policy.lkg.generation\":\"9\"", StringComparison.Ordinal));
                break;
            case "garbage":
                _fs.File.WriteAllText("/state/index.json", "{\"manifests\":[");
                break;
            default:
                signer = SignerPolicy.ForPublicKey(otherKey.ExportSubjectPublicKeyInfoPem());
                break;
        }

        _fs.Directory.Delete("/policy", recursive: true);
        using var restarted = Source(signer: signer);
        var store = new FileEgressPolicyLastKnownGoodStore("/state", restarted, _fs, time);
        store.Invoking(s => s.Load()).Should().Throw<InvalidDataException>().WithMessage("*refused*");

        using var monitor2 = new EgressPolicyMonitor(restarted, null, time, lastKnownGood: store);
        monitor2.State.IsLoaded.Should().BeFalse("a refused copy is never used; with the source failing too, nothing is in force");
        monitor2.Evaluate("a.example.org", 443, null).Reason.Should().Be(EgressReason.NoPolicy);
        monitor2.Evaluate("evil.example.org", 443, null).Reason.Should().Be(EgressReason.NoPolicy);
    }

    [Theory]
    [InlineData("blob")]
    [InlineData("other-signer")]
    public void A_persisted_copy_that_cannot_be_used_still_keeps_its_generation_as_the_rollback_floor(string damage)
    {
        var time = PersistGenerationFive();

        using var rotatedKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        SignerPolicy? signer = null;
        if (damage == "blob")
        {
            string layer = _fs.Directory.GetFiles("/state/blobs/sha256").Single(f => _fs.File.ReadAllText(f).StartsWith("apiVersion", StringComparison.Ordinal));
            _fs.File.WriteAllText(layer, "corrupted\n");
        }
        else
        {
            // A key rotation: the copy signed by the old key no longer verifies under the new signer policy.
            signer = SignerPolicy.ForPublicKey(rotatedKey.ExportSubjectPublicKeyInfoPem());
        }

        var key = damage == "blob" ? _key : rotatedKey;
        void PublishWith(long generation, string host)
        {
            var (manifest, _) = _layout.AddPolicy(PolicyLayout.Yaml(generation, host));
            _layout.SignWithKey(manifest, key);
        }

        // Restart: the copy is refused, and the source offers an older (then a same-generation) validly signed policy.
        PublishWith(4, "old.example.org");
        using var restarted = Source(signer: signer);
        var store = new FileEgressPolicyLastKnownGoodStore("/state", restarted, _fs, time);
        store.Invoking(s => s.Load()).Should().Throw<InvalidDataException>();
        using var monitor2 = new EgressPolicyMonitor(restarted, null, time, lastKnownGood: store);
        monitor2.State.IsLoaded.Should().BeFalse("generation 4 is below the recorded generation 5");
        Reason(monitor2.State).Should().Be(BundleFailureReason.RollbackRejected);
        monitor2.Evaluate("old.example.org", 443, null).Reason.Should().Be(EgressReason.NoPolicy);

        PublishWith(5, "other.example.org");
        monitor2.Reload().Should().BeFalse("another policy under the recorded generation is refused too");
        Reason(monitor2.State).Should().Be(BundleFailureReason.RollbackRejected);
        new FileEgressPolicyLastKnownGoodStore("/state", restarted, _fs, time).TryGetRecordedGeneration(out long recorded, out _).Should().BeTrue();
        recorded.Should().Be(5, "nothing below the floor was saved");

        PublishWith(6, "new.example.org");
        monitor2.Reload().Should().BeTrue();
        monitor2.Evaluate("new.example.org", 443, null).Reason.Should().Be(EgressReason.Allowlisted);
    }

    /// <summary>Publishes generation 5 and runs a monitor over it once, so the state directory holds it.</summary>
    private FakeTimeProvider PersistGenerationFive()
    {
        Publish(5, "a.example.org");
        var time = new FakeTimeProvider(Egress.EgressTestHelpers.Start);
        using var source = Source();
        using var monitor = new EgressPolicyMonitor(source, null, time, lastKnownGood: new FileEgressPolicyLastKnownGoodStore("/state", source, _fs, time));
        monitor.State.Generation.Should().Be(5);
        return time;
    }

    [Fact]
    public void Saving_a_snapshot_from_another_source_is_refused()
    {
        Publish(1, "a.example.org");
        using var source = Source();
        var store = new FileEgressPolicyLastKnownGoodStore("/state", source, _fs);
        var foreign = EgressPolicySnapshot.Create("""{"schemaVersion":1,"generation":1,"allow":[{"host":"a.example.org"}]}"""u8.ToArray());

        store.Invoking(s => s.Save(foreign)).Should().Throw<InvalidOperationException>();
        store.Load().Should().BeNull("nothing was persisted");
    }
}

/// <summary>The Kubernetes <c>..data</c> swap of a volume holding the layout, on the real file system with real links.</summary>
public sealed class OciBundleSourceSymlinkTests : IDisposable
{
    private readonly string _mount = Path.Combine(Path.GetTempPath(), "kars-bundle-" + Guid.NewGuid().ToString("N"));
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private int _version;

    public OciBundleSourceSymlinkTests() => Directory.CreateDirectory(_mount);

    public void Dispose()
    {
        _key.Dispose();
        Directory.Delete(_mount, recursive: true);
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
#pragma warning disable SA1300, IDE1006 // the libc name
    private static extern int rename(string oldPath, string newPath);
#pragma warning restore SA1300, IDE1006

    private void Publish(long generation, string host)
    {
        string previous = Directory.Exists(Path.Combine(_mount, "..data")) ? new DirectoryInfo(Path.Combine(_mount, "..data")).LinkTarget! : string.Empty;
        string version = $"..2026_11_30_18_00_00.{++_version}";
        var layout = new PolicyLayout(new FileSystem(), Path.Combine(_mount, version));
        var (manifest, _) = layout.AddPolicy(PolicyLayout.Yaml(generation, host));
        layout.SignWithKey(manifest, _key);
        string temp = Path.Combine(_mount, "..data_tmp");
        Directory.CreateSymbolicLink(temp, version);
        rename(temp, Path.Combine(_mount, "..data")).Should().Be(0);
        foreach (string key in new[] { "oci-layout", "index.json", "blobs" })
        {
            if (!Path.Exists(Path.Combine(_mount, key)))
            {
                File.CreateSymbolicLink(Path.Combine(_mount, key), Path.Combine("..data", key));
            }
        }

        if (previous.Length > 0)
        {
            Directory.Delete(Path.Combine(_mount, previous), recursive: true);
        }
    }

    [Fact]
    public void A_data_link_swap_to_a_new_signed_layout_is_in_force_within_two_seconds()
    {
        Publish(1, "a.example.org");
        var time = new FakeTimeProvider(Egress.EgressTestHelpers.Start);
        using var source = new OciBundleEgressPolicySource(
            _mount,
            new SigstoreVerifier(SigstoreTrustedRoot.Empty, new SigstoreVerifierOptions { RequireTransparencyLog = false }),
            SignerPolicy.ForPublicKey(_key.ExportSubjectPublicKeyInfoPem()),
            timeProvider: time);
        using var monitor = new EgressPolicyMonitor(source, null, time);
        monitor.Evaluate("a.example.org", 443, null).Reason.Should().Be(EgressReason.Allowlisted);

        Publish(2, "b.example.org");
        var elapsed = TimeSpan.Zero;
        while (monitor.State.Generation != 2 && elapsed < TimeSpan.FromSeconds(5))
        {
            time.Advance(TimeSpan.FromMilliseconds(50));
            elapsed += TimeSpan.FromMilliseconds(50);
        }

        monitor.State.Generation.Should().Be(2);
        elapsed.Should().BeLessThanOrEqualTo(TimeSpan.FromSeconds(2));
        monitor.State.IsStale.Should().BeFalse();
        monitor.Evaluate("b.example.org", 443, null).Reason.Should().Be(EgressReason.Allowlisted);
        monitor.Evaluate("a.example.org", 443, null).Reason.Should().Be(EgressReason.NotAllowlisted);
    }
}
