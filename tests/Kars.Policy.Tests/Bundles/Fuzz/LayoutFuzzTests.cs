using System.IO.Abstractions.TestingHelpers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Kars.Policy.Bundles;
using Kars.Policy.Egress;
using Kars.Policy.Tests.Egress;
using Microsoft.Extensions.Time.Testing;
using Xunit.Abstractions;

namespace Kars.Policy.Tests.Bundles.Fuzz;

/// <summary>
/// Hostile OCI layouts for <see cref="OciBundleEgressPolicySource"/>, <see cref="SigstoreVerifier.VerifyOciLayout"/>
/// and <see cref="FileEgressPolicyLastKnownGoodStore"/>, on a mock file system: a valid signed layout (key-signed
/// <c>.sig</c> tag, or keyless referrer bundle) is mutated in its index, in place in any blob, or structurally in a
/// JSON blob that is then re-pointed (every descriptor that names it gets the new digest and size, up to
/// <c>index.json</c>). For every case: <see cref="OciBundleEgressPolicySource.Load"/> either returns the valid
/// policy (same digest and generation) or throws <see cref="EgressPolicyLoadException"/> with a
/// <see cref="BundleFailureReason"/>; a change to a signed byte (the policy manifest, its layer, the simple-signing
/// payload) never loads.
/// </summary>
public sealed class LayoutFuzzTests(ITestOutputHelper output) : IDisposable
{
    // A hang guard only (FuzzRun.Bounded): the run fails when no case finishes for this long, never for being slow.
    private static readonly TimeSpan Guard = TimeSpan.FromMinutes(3);
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly TestSigstore _sigstore = new();

    public void Dispose() => _key.Dispose();

    [Theory]
    [InlineData("key", "index")]
    [InlineData("key", "blob-in-place")]
    [InlineData("key", "blob-repointed")]
    [InlineData("keyless", "index")]
    [InlineData("keyless", "blob-in-place")]
    [InlineData("keyless", "blob-repointed")]
    public void A_mutated_layout_loads_the_signed_policy_or_fails_with_a_reason(string signing, string where)
    {
        var (valid, manifest, layer, signedBlobs) = SignedLayout(signing);
        var (verifier, signer) = Trust(signing);
        EgressPolicySnapshot expected;
        using (var source = new OciBundleEgressPolicySource("/policy", verifier, signer, null, null, valid, new FakeTimeProvider(EgressTestHelpers.Start)))
        {
            expected = source.Load();
        }

        int seed = 7000 + (signing.Length * 31) + where.Length;
        int baseline = signing == "key" ? 120 : 60;
        int cases = FuzzRun.Bounded(() => FuzzRun.Cases(seed, baseline, (i, random) =>
        {
            var fs = Copy(valid);
            var mutator = new Mutator(random);
            string description;
            string? changedSigned = null;
            if (where == "index")
            {
                (byte[] bytes, description) = mutator.Any(fs.File.ReadAllBytes("/policy/index.json"));
                fs.File.WriteAllBytes("/policy/index.json", bytes);
            }
            else
            {
                string[] blobs = [.. fs.Directory.GetFiles("/policy/blobs/sha256").Order(StringComparer.Ordinal)];
                string path = blobs[random.Next(blobs.Length)];
                string digest = "sha256:" + fs.Path.GetFileName(path);
                byte[] original = fs.File.ReadAllBytes(path);
                bool json = original.Length > 0 && original[0] == (byte)'{';
                (byte[] bytes, description) = where == "blob-repointed" && json ? mutator.Json(original) : mutator.Bytes(original);
                description = $"{Name(digest, manifest, layer)}: {description}";
                if (where == "blob-repointed" && !bytes.AsSpan().SequenceEqual(original))
                {
                    Repoint(fs, digest, bytes);
                    fs.File.Delete(path);
                }
                else
                {
                    fs.File.WriteAllBytes(path, bytes);
                }

                if (signedBlobs.Contains(digest) && !bytes.AsSpan().SequenceEqual(original))
                {
                    changedSigned = digest;
                }
            }

            using var source = new OciBundleEgressPolicySource("/policy", verifier, signer, null, null, fs, new FakeTimeProvider(EgressTestHelpers.Start));
            EgressPolicySnapshot? loaded = null;
            try
            {
                loaded = source.Load();
            }
            catch (EgressPolicyLoadException ex)
            {
                ex.Problems.Should().NotBeEmpty();
                ex.Problems[0].BundleFailure.Should().NotBeNull($"seed {seed} case {i} ({description}): every bundle failure names its reason");
            }
            catch (Exception ex)
            {
                throw new Xunit.Sdk.XunitException($"seed {seed} case {i} ({description}): Load threw {ex}");
            }

            var verified = Call(() => verifier.VerifyOciLayout(fs, "/policy", manifest, signer), seed, i, description);
            if (loaded is not null)
            {
                loaded.Digest.Should().Be(expected.Digest, $"seed {seed} case {i} ({description})");
                loaded.Generation.Should().Be(expected.Generation, $"seed {seed} case {i} ({description})");
                changedSigned.Should().BeNull($"seed {seed} case {i} ({description}) loaded although a signed blob changed");
            }

            if (changedSigned == manifest && where == "blob-in-place")
            {
                // (Re-pointed, the old manifest's signature still verifies that digest; only the load must then fail.)
                verified.IsVerified.Should().BeFalse($"seed {seed} case {i} ({description}) verified a changed manifest");
            }
        }), Guard);
        output.WriteLine($"{signing} {where}: {cases} mutated layouts");
    }

    /// <summary>The signer is trusted, the document is hostile: the canonical YAML and native JSON parsers see mutated
    /// documents that carry a valid signature. The load compiles them or fails with a reason; it never throws anything else.</summary>
    [Theory]
    [InlineData(PolicyLayout.Kars)]
    [InlineData(PolicyLayout.Native)]
    public void A_signed_hostile_policy_document_compiles_or_fails_with_a_reason(string mediaType)
    {
        string document = mediaType == PolicyLayout.Kars
            ? PolicyLayout.Yaml(3, "api.example.org", "pypi.example.org", "a.b.example.net")
            : """{"schemaVersion":1,"generation":7,"mode":"Strict","allow":[{"host":"*.example.org","ports":[443]},{"host":"api.example.net"}],"deny":[{"host":"bad.example.org"}]}""";
        var (verifier, signer) = Trust("key");
        int seed = 8000 + mediaType.Length;

        int cases = FuzzRun.Bounded(() => FuzzRun.Cases(seed, 150, (i, random) =>
        {
            var mutator = new Mutator(random);
            string mutated;
            string description;
            if (mediaType == PolicyLayout.Kars)
            {
                (mutated, description) = random.Next(3) == 0
                    ? (Encoding.UTF8.GetString(mutator.Bytes(Encoding.UTF8.GetBytes(document)).Bytes), "bytes")
                    : (mutator.Text(mutator.Text(document)), "lines");
            }
            else
            {
                var (bytes, what) = mutator.Any(Encoding.UTF8.GetBytes(document));
                (mutated, description) = (Encoding.UTF8.GetString(bytes), what);
            }

            var fs = new MockFileSystem();
            var layout = new PolicyLayout(fs, "/policy");
            var (manifest, _) = layout.AddPolicy(mutated, mediaType);
            layout.SignWithKey(manifest, _key);
            using var source = new OciBundleEgressPolicySource("/policy", verifier, signer, null, null, fs, new FakeTimeProvider(EgressTestHelpers.Start));
            try
            {
                var snapshot = source.Load();
                snapshot.Evaluate("api.example.org", 443, null).Should().NotBeNull();
            }
            catch (EgressPolicyLoadException ex)
            {
                ex.Problems.Should().NotBeEmpty($"seed {seed} case {i} ({description})");
                ex.Problems.Should().OnlyContain(p => p.BundleFailure != null, $"seed {seed} case {i} ({description}): a bundle problem names its reason");
            }
            catch (Exception ex)
            {
                throw new Xunit.Sdk.XunitException($"seed {seed} case {i} ({description}): Load threw {ex}\n--- document ---\n{mutated}");
            }
        }), Guard);
        output.WriteLine($"{mediaType}: {cases} signed hostile documents");
    }

    /// <summary>The persisted last-known-good is mutated (its index, or a blob in place): a new store either returns
    /// the saved policy, or refuses the copy with <see cref="InvalidDataException"/>; nothing else.</summary>
    [Fact]
    public void A_mutated_last_known_good_copy_is_the_saved_policy_or_refused()
    {
        var (valid, _, _, _) = SignedLayout("key");
        var (verifier, signer) = Trust("key");
        var time = new FakeTimeProvider(EgressTestHelpers.Start);
        EgressPolicySnapshot saved;
        using (var source = new OciBundleEgressPolicySource("/policy", verifier, signer, null, null, valid, time))
        {
            saved = source.Load();
            new FileEgressPolicyLastKnownGoodStore("/state", source, valid, time).Save(saved);
        }

        int cases = FuzzRun.Bounded(() => FuzzRun.Cases(9000, 150, (i, random) =>
        {
            var fs = Copy(valid);
            fs.Directory.Delete("/policy", recursive: true);
            string[] files = [.. fs.Directory.GetFiles("/state", "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal)];
            string path = i % 2 == 0 ? "/state/index.json" : files[random.Next(files.Length)];
            var mutator = new Mutator(random);
            byte[] original = fs.File.ReadAllBytes(path);
            var (bytes, description) = original.Length > 0 && original[0] == (byte)'{' ? mutator.Any(original) : mutator.Bytes(original);
            fs.File.WriteAllBytes(path, bytes);
            description = $"{path}: {description}";

            using var source = new OciBundleEgressPolicySource("/policy", verifier, signer, null, null, fs, time);
            var store = new FileEgressPolicyLastKnownGoodStore("/state", source, fs, time);
            try
            {
                var loaded = store.Load();
                if (loaded is not null)
                {
                    loaded.Digest.Should().Be(saved.Digest, description);
                    loaded.Generation.Should().Be(saved.Generation, description);
                }
            }
            catch (InvalidDataException)
            {
            }
            catch (Exception ex)
            {
                throw new Xunit.Sdk.XunitException($"seed 9000 case {i} ({description}): the store's Load threw {ex}");
            }

            // The monitor over that store and a missing source never crashes either.
            using var monitor = new EgressPolicyMonitor(source, null, time, lastKnownGood: store);
            if (monitor.State.IsLoaded)
            {
                monitor.State.Digest.Should().Be(saved.Digest, description);
            }
        }), Guard);
        output.WriteLine($"{cases} mutated last-known-good copies");
    }

    private static BundleVerificationResult Call(Func<BundleVerificationResult> call, int seed, int i, string description)
    {
        try
        {
            return call();
        }
        catch (Exception ex)
        {
            throw new Xunit.Sdk.XunitException($"seed {seed} case {i} ({description}): VerifyOciLayout threw {ex}");
        }
    }

    private (SigstoreVerifier Verifier, SignerPolicy Signer) Trust(string signing) => signing == "key"
        ? (new SigstoreVerifier(SigstoreTrustedRoot.Empty, new SigstoreVerifierOptions { RequireTransparencyLog = false }), SignerPolicy.ForPublicKey(_key.ExportSubjectPublicKeyInfoPem()))
        : (new SigstoreVerifier(_sigstore.TrustedRoot()), SignerPolicy.ForIdentity(TestSigstore.Identity, TestSigstore.Issuer));

    /// <summary>A valid signed layout at <c>/policy</c>, the policy manifest and layer digests, and the blobs whose
    /// bytes are signed (directly or by digest): the manifest, its layer, and the simple-signing payload.</summary>
    private (MockFileSystem Fs, string Manifest, string Layer, HashSet<string> Signed) SignedLayout(string signing)
    {
        var fs = new MockFileSystem();
        var layout = new PolicyLayout(fs, "/policy");
        var (manifest, layer) = layout.AddPolicy(PolicyLayout.Yaml(4, "api.example.org", "pypi.example.org"));
        var signed = new HashSet<string>(StringComparer.Ordinal) { manifest, layer };
        if (signing == "key")
        {
            signed.Add(layout.SignWithKey(manifest, _key));
        }
        else
        {
            layout.SignKeyless(manifest, _sigstore);
        }

        return (fs, manifest, layer, signed);
    }

    private static string Name(string digest, string manifest, string layer) =>
        digest == manifest ? "policy manifest" : digest == layer ? "policy layer" : "blob " + digest[7..19];

    private static MockFileSystem Copy(MockFileSystem from)
    {
        var to = new MockFileSystem();
        foreach (string path in from.AllFiles)
        {
            to.AddFile(path, new MockFileData(from.File.ReadAllBytes(path)));
        }

        return to;
    }

    /// <summary>Writes <paramref name="bytes"/> as a new blob and points every descriptor that named <paramref name="oldDigest"/>
    /// at it (digest and size), rewriting those containers in turn, up to <c>index.json</c>. Signed payloads name the
    /// manifest under other keys, so they are never rewritten.</summary>
    private static void Repoint(MockFileSystem fs, string oldDigest, byte[] bytes)
    {
        string newDigest = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(bytes));
        fs.File.WriteAllBytes("/policy/blobs/sha256/" + newDigest[7..], bytes);
        foreach (string path in fs.Directory.GetFiles("/policy/blobs/sha256").Append("/policy/index.json").ToList())
        {
            byte[] content = fs.File.ReadAllBytes(path);
            if (!Encoding.UTF8.GetString(content).Contains(oldDigest, StringComparison.Ordinal))
            {
                continue;
            }

            JsonNode? node;
            try
            {
                node = JsonNode.Parse(content);
            }
            catch (System.Text.Json.JsonException)
            {
                continue;
            }

            if (!Rewrite(node, oldDigest, newDigest, bytes.Length))
            {
                continue;
            }

            byte[] rewritten = Encoding.UTF8.GetBytes(node!.ToJsonString());
            if (path.EndsWith("index.json", StringComparison.Ordinal))
            {
                fs.File.WriteAllBytes(path, rewritten);
            }
            else if (path[^64..] != newDigest[7..])
            {
                Repoint(fs, "sha256:" + path[^64..], rewritten);
            }
        }
    }

    private static bool Rewrite(JsonNode? node, string oldDigest, string newDigest, long size)
    {
        bool changed = false;
        switch (node)
        {
            case JsonObject o:
                if (o["digest"] is JsonValue d && d.GetValueKind() == System.Text.Json.JsonValueKind.String && d.GetValue<string>() == oldDigest)
                {
                    o["digest"] = newDigest;
                    o["size"] = size;
                    changed = true;
                }

                foreach (var (_, child) in o.ToList())
                {
                    changed |= Rewrite(child, oldDigest, newDigest, size);
                }

                break;
            case JsonArray a:
                foreach (var child in a)
                {
                    changed |= Rewrite(child, oldDigest, newDigest, size);
                }

                break;
        }

        return changed;
    }
}
