using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json.Nodes;
using Kars.Policy.Bundles;
using Xunit.Abstractions;

namespace Kars.Policy.Tests.Bundles.Fuzz;

/// <summary>
/// Hostile input for <see cref="SigstoreVerifier"/> and <see cref="SigstoreTrustedRoot"/> (issue 10: "any exception
/// inside verification becomes a failure, never a crash and never a pass"). Each test starts from a valid vector of
/// the existing test Sigstore instance (test CA, Rekor v1 and v2 logs, CT log, TSA, trusted root) and mutates it
/// byte by byte or by JSON structure. For every case: the public call returns (no exception), and a result that
/// verifies differs from the valid vector only where no signed byte is (an unknown member, the optional message-digest
/// hint, a key hint, the name on a checkpoint signature line, base64 or integer spellings of the same value).
/// </summary>
public sealed class VerifierFuzzTests(ITestOutputHelper output)
{
    // A hang guard only (FuzzRun.Bounded): the run fails when no case finishes for this long, never for being slow.
    private static readonly TimeSpan Guard = TimeSpan.FromMinutes(3);
    private static readonly DateTimeOffset GenTime = TestSigstore.LeafStart.AddMinutes(2);
    private readonly TestSigstore _sigstore = new();
    private readonly TestTsa _tsa = new();

    private static SignerPolicy Identity => SignerPolicy.ForIdentity(TestSigstore.Identity, TestSigstore.Issuer);

    public static TheoryData<string> BundleKinds => ["keyless-v1", "keyless-dsse", "rekor-v2-tsa", "key"];

    [Theory]
    [MemberData(nameof(BundleKinds))]
    public void A_mutated_Sigstore_bundle_never_throws_and_never_verifies_a_changed_signed_byte(string kind)
    {
        var (bundle, artifact, verifier, signer) = Vector(kind);
        verifier.VerifyBundle(bundle, artifact, signer).IsVerified.Should().BeTrue("the valid vector verifies");
        int seed = 1000 + kind.Length * 7919;

        int cases = FuzzRun.Bounded(() => FuzzRun.Cases(seed, 150, (i, random) =>
        {
            var (mutated, description) = new Mutator(random).Any(bundle);
            var result = Verify(() => verifier.VerifyBundle(mutated, artifact, signer), seed, i, description);
            if (result.IsVerified)
            {
                AssertOnlyUnsignedChanged(bundle, mutated, seed, i, description);
            }
            else
            {
                result.FailureReason.Should().NotBeNull();
            }
        }), Guard);
        output.WriteLine($"{kind}: {cases} mutated bundles");
    }

    [Fact]
    public void A_mutated_signing_certificate_never_verifies()
    {
        var builder = new BundleBuilder(_sigstore);
        byte[] bundle = Encoding.UTF8.GetBytes(builder.Build());
        string leaf = Convert.ToBase64String(builder.Leaf!.RawData);
        var verifier = new SigstoreVerifier(_sigstore.TrustedRoot());
        var artifact = SigstoreArtifact.FromBytes(builder.Artifact);

        int cases = FuzzRun.Bounded(() => FuzzRun.Cases(2000, 120, (i, random) =>
        {
            var (der, description) = new Mutator(random).Bytes(builder.Leaf.RawData);
            byte[] mutated = Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(bundle).Replace(leaf, Convert.ToBase64String(der), StringComparison.Ordinal));
            var result = Verify(() => verifier.VerifyBundle(mutated, artifact, Identity), 2000, i, description);
            if (!der.AsSpan().SequenceEqual(builder.Leaf.RawData))
            {
                result.IsVerified.Should().BeFalse($"seed 2000 case {i} ({description}) changed the certificate");
            }
        }), Guard);
        output.WriteLine($"{cases} mutated certificates");
    }

    /// <summary>Certificates the test CA really signs, with hostile SAN, OIDC-issuer and SCT extensions: the parsers of
    /// those extensions see bytes that pass the chain check.</summary>
    [Theory]
    [InlineData("2.5.29.17")]
    [InlineData("1.3.6.1.4.1.57264.1.8")]
    [InlineData("1.3.6.1.4.1.57264.1.1")]
    [InlineData(TestSigstore.SctOid)]
    public void A_CA_signed_certificate_with_hostile_extensions_never_throws_and_verifies_only_the_exact_identity(string oid)
    {
        var (valid, _) = _sigstore.IssueLeaf();
        byte[] original = oid == "1.3.6.1.4.1.57264.1.1"
            ? Encoding.UTF8.GetBytes(TestSigstore.Issuer)
            : valid.Extensions[oid]!.RawData;
        var verifier = new SigstoreVerifier(_sigstore.TrustedRoot(), new SigstoreVerifierOptions { RequireSignedCertificateTimestamp = oid == TestSigstore.SctOid });
        int seed = 3000 + oid.Length;

        int cases = FuzzRun.Bounded(() => FuzzRun.Cases(seed, 40, (i, random) =>
        {
            var (raw, description) = new Mutator(random).Bytes(original);
            var (leaf, key) = IssueWithExtension(oid, raw, valid);
            var builder = new BundleBuilder(_sigstore) { Leaf = leaf, SigningKey = key };
            byte[] bundle = Encoding.UTF8.GetBytes(builder.Build());
            var result = Verify(() => verifier.VerifyBundle(bundle, SigstoreArtifact.FromBytes(builder.Artifact), Identity), seed, i, description);
            if (result.IsVerified)
            {
                result.Signer.Should().Be(TestSigstore.Identity, $"seed {seed} case {i} ({description})");
                OidcIssuerOf(leaf).Should().Be(TestSigstore.Issuer, $"seed {seed} case {i} ({description}): only the exact issuer verifies");
            }
        }), Guard);
        output.WriteLine($"{oid}: {cases} CA-signed hostile certificates");
    }

    [Fact]
    public void A_mutated_RFC3161_timestamp_never_throws_and_verifies_only_with_the_same_token()
    {
        byte[]? stamped = null;
        var builder = new BundleBuilder(_sigstore) { IncludeSet = false, Timestamp = sig => stamped = _tsa.Stamp(sig, GenTime) };
        string valid = builder.Build();
        var verifier = new SigstoreVerifier(_sigstore.TrustedRoot(timestampAuthorities: _tsa.AuthorityJson()));
        var artifact = SigstoreArtifact.FromBytes(builder.Artifact);
        verifier.VerifyBundle(Encoding.UTF8.GetBytes(valid), artifact, Identity).IsVerified.Should().BeTrue();
        string token = Convert.ToBase64String(stamped!);

        int cases = FuzzRun.Bounded(() => FuzzRun.Cases(4000, 120, (i, random) =>
        {
            var (response, description) = new Mutator(random).Bytes(stamped!);
            byte[] bundle = Encoding.UTF8.GetBytes(valid.Replace(token, Convert.ToBase64String(response), StringComparison.Ordinal));
            var result = Verify(() => verifier.VerifyBundle(bundle, artifact, Identity), 4000, i, description);
            if (result.IsVerified)
            {
                SignedPart(response).Should().Equal(SignedPart(stamped!), $"seed 4000 case {i} ({description}): only unsigned bytes (the response status, CMS version numbers, the certificate set) may change");
            }
        }), Guard);
        output.WriteLine($"{cases} mutated timestamps");
    }

    [Fact]
    public void A_mutated_legacy_cosign_signature_or_bundle_never_throws_and_never_verifies_a_changed_signed_byte()
    {
        var (leaf, key) = _sigstore.IssueLeaf();
        byte[] blob = Encoding.UTF8.GetBytes("egress allowlist v1\n");
        byte[] signature = key.SignData(blob, HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
        string signatureText = Convert.ToBase64String(signature) + "\n";
        byte[] legacy = LegacyBundle(leaf, signature, blob);
        var verifier = new SigstoreVerifier(_sigstore.TrustedRoot());
        verifier.VerifyCosignBlob(blob, signatureText, legacy, Identity).IsVerified.Should().BeTrue();

        int cases = FuzzRun.Bounded(() => FuzzRun.Cases(5000, 150, (i, random) =>
        {
            var mutator = new Mutator(random);
            if (i % 3 == 0)
            {
                string text = random.Next(2) == 0 ? mutator.Text(signatureText) : Encoding.UTF8.GetString(mutator.Bytes(Encoding.UTF8.GetBytes(signatureText)).Bytes);
                var result = Verify(() => verifier.VerifyCosignBlob(blob, text, legacy, Identity), 5000, i, "signature text");
                if (result.IsVerified)
                {
                    Convert.FromBase64String(text.Trim()).Should().Equal(signature, $"seed 5000 case {i}: only surrounding white space may change");
                }

                return;
            }

            var (mutated, description) = mutator.Any(legacy);
            var outcome = Verify(() => verifier.VerifyCosignBlob(blob, signatureText, mutated, Identity), 5000, i, description);
            if (outcome.IsVerified)
            {
                AssertOnlyUnsignedChanged(legacy, mutated, 5000, i, description);
            }
        }), Guard);
        output.WriteLine($"{cases} mutated legacy signatures and bundles");
    }

    [Fact]
    public void A_mutated_trusted_root_never_throws_and_never_trusts_changed_key_material()
    {
        var builder = new BundleBuilder(_sigstore);
        byte[] bundle = Encoding.UTF8.GetBytes(builder.Build());
        byte[] root = Encoding.UTF8.GetBytes(_sigstore.TrustedRootJson());
        var artifact = SigstoreArtifact.FromBytes(builder.Artifact);

        int cases = FuzzRun.Bounded(() => FuzzRun.Cases(6000, 150, (i, random) =>
        {
            var (mutated, description) = new Mutator(random).Any(root);
            bool parsed;
            SigstoreTrustedRoot? trusted = null;
            try
            {
                parsed = SigstoreTrustedRoot.TryParse(mutated, out trusted, out string? error);
                if (!parsed)
                {
                    error.Should().NotBeNullOrEmpty();
                }
            }
            catch (Exception ex)
            {
                throw new Xunit.Sdk.XunitException($"seed 6000 case {i} ({description}): TryParse threw {ex}");
            }

            if (!parsed)
            {
                return;
            }

            var result = Verify(() => new SigstoreVerifier(trusted!).VerifyBundle(bundle, artifact, Identity), 6000, i, description);
            if (result.IsVerified)
            {
                var changed = JsonDiff.Differences(root, mutated);
                changed.Should().NotBeNull($"seed 6000 case {i} ({description}): a root no strict reader accepts was used");
                changed!.Where(p => !IsTrustConfiguration(p) && !RepeatsAnElement(root, mutated, p) && !IsUnknownMemberAdded(root, p) && !SameKeyAndName(root, mutated, p)).Should().BeEmpty($"seed 6000 case {i} ({description}): changed key material must not verify");
            }
        }), Guard);
        output.WriteLine($"{cases} mutated trusted roots");
    }

    /// <summary>Targeted structure cases (issue 10 evidence list): log indexes and tree sizes that are negative or overflow,
    /// inclusion proofs of the wrong length, checkpoints with extra lines; each must fail with its reason, never throw.</summary>
    [Theory]
    [InlineData("logIndex=-1", BundleFailureReason.CanonicalFormViolation)]
    [InlineData("logIndex=\"-1\"", BundleFailureReason.CanonicalFormViolation)]
    [InlineData("logIndex=9223372036854775808", BundleFailureReason.CanonicalFormViolation)]
    [InlineData("logIndex=\"99999999999999999999\"", BundleFailureReason.CanonicalFormViolation)]
    [InlineData("logIndex=1e3", BundleFailureReason.CanonicalFormViolation)]
    [InlineData("proofIndex=5", BundleFailureReason.TransparencyLogInvalid)]
    [InlineData("proofIndex=9223372036854775807", BundleFailureReason.TransparencyLogInvalid)]
    [InlineData("treeSize=0", BundleFailureReason.TransparencyLogInvalid)]
    [InlineData("treeSize=9223372036854775807", BundleFailureReason.TransparencyLogInvalid)]
    [InlineData("treeSize=-5", BundleFailureReason.CanonicalFormViolation)]
    [InlineData("hashes-1", BundleFailureReason.TransparencyLogInvalid)]
    [InlineData("hashes+1", BundleFailureReason.TransparencyLogInvalid)]
    [InlineData("hashes=65", BundleFailureReason.CanonicalFormViolation)]
    [InlineData("hash31", BundleFailureReason.TransparencyLogInvalid)]
    [InlineData("checkpoint-extra-line-in-note", BundleFailureReason.TransparencyLogInvalid)]
    [InlineData("checkpoint-no-final-newline", BundleFailureReason.TransparencyLogInvalid)]
    [InlineData("checkpoint-size-leading-zero", BundleFailureReason.TransparencyLogInvalid)]
    [InlineData("checkpoint-size-overflow", BundleFailureReason.TransparencyLogInvalid)]
    [InlineData("integratedTime=253402300800", BundleFailureReason.TransparencyLogInvalid)]
    [InlineData("integratedTime=9223372036854775807", BundleFailureReason.TransparencyLogInvalid)]
    [InlineData("tlogEntries*9", BundleFailureReason.CanonicalFormViolation)]
    [InlineData("tlogEntries*2", BundleFailureReason.TransparencyLogInvalid)]
    [InlineData("dsse-two-signatures", BundleFailureReason.CanonicalFormViolation)]
    public void A_hostile_log_entry_field_fails_with_its_reason(string change, BundleFailureReason reason)
    {
        var builder = new BundleBuilder(_sigstore);
        var node = JsonNode.Parse(builder.Build())!;
        var entry = node["verificationMaterial"]!["tlogEntries"]![0]!;
        var proof = entry["inclusionProof"]!;
        string envelope = proof["checkpoint"]!["envelope"]!.GetValue<string>();
        string[] noteLines = envelope.Split('\n');
        switch (change.Split('=')[0])
        {
            case "logIndex":
                entry["logIndex"] = JsonNode.Parse(change.Split('=')[1]);
                break;
            case "proofIndex":
                proof["logIndex"] = change.Split('=')[1];
                break;
            case "treeSize":
                proof["treeSize"] = change.Split('=')[1];
                break;
            case "hashes-1":
                proof["hashes"]!.AsArray().RemoveAt(0);
                break;
            case "hashes+1":
                proof["hashes"]!.AsArray().Add(Convert.ToBase64String(new byte[32]));
                break;
            case "hashes":
                proof["hashes"] = new JsonArray([.. Enumerable.Range(0, 65).Select(_ => (JsonNode)Convert.ToBase64String(new byte[32]))]);
                break;
            case "hash31":
                proof["hashes"]![0] = Convert.ToBase64String(new byte[31]);
                break;
            case "checkpoint-extra-line-in-note":
                proof["checkpoint"]!["envelope"] = string.Join('\n', noteLines[..3]) + "\nextension line\n" + string.Join('\n', noteLines[3..]);
                break;
            case "checkpoint-no-final-newline":
                proof["checkpoint"]!["envelope"] = envelope.TrimEnd('\n');
                break;
            case "checkpoint-size-leading-zero":
                proof["checkpoint"]!["envelope"] = envelope.Replace("\n5\n", "\n05\n", StringComparison.Ordinal);
                break;
            case "checkpoint-size-overflow":
                proof["checkpoint"]!["envelope"] = envelope.Replace("\n5\n", "\n99999999999999999999\n", StringComparison.Ordinal);
                break;
            case "integratedTime":
                entry["integratedTime"] = change.Split('=')[1];
                break;
            case "tlogEntries*9":
                node["verificationMaterial"]!["tlogEntries"] = new JsonArray([.. Enumerable.Range(0, 9).Select(_ => entry.DeepClone())]);
                break;
            case "tlogEntries*2":
                node["verificationMaterial"]!["tlogEntries"]!.AsArray().Add(entry.DeepClone());
                break;
            default:
                node = JsonNode.Parse(KeyAndLayoutTests.DsseBundle(_sigstore, builder.Leaf!, builder.SigningKey!, Encoding.UTF8.GetBytes("{}")))!;
                var signatures = node["dsseEnvelope"]!["signatures"]!.AsArray();
                signatures.Add(signatures[0]!.DeepClone());
                break;
        }

        var result = Verify(
            () => new SigstoreVerifier(_sigstore.TrustedRoot()).VerifyBundle(Encoding.UTF8.GetBytes(node.ToJsonString()), SigstoreArtifact.FromBytes(builder.Artifact), Identity),
            0,
            0,
            change);

        result.IsVerified.Should().BeFalse();
        result.FailureReason.Should().Be(reason, result.Message);
    }

    private (byte[] Bundle, SigstoreArtifact Artifact, SigstoreVerifier Verifier, SignerPolicy Signer) Vector(string kind)
    {
        switch (kind)
        {
            case "keyless-v1":
                {
                    var builder = new BundleBuilder(_sigstore);
                    return (Encoding.UTF8.GetBytes(builder.Build()), SigstoreArtifact.FromBytes(builder.Artifact), new SigstoreVerifier(_sigstore.TrustedRoot()), Identity);
                }

            case "keyless-dsse":
                {
                    var (leaf, key) = _sigstore.IssueLeaf();
                    const string digest = "sha256:4e388ab32b10dc8dbc7e28144f552830adc74787c1e2c0824032078a79f227fb";
                    string statement = $$$"""{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"registry.test/policy","digest":{"sha256":"{{{digest[7..]}}}"}}],"predicateType":"https://sigstore.dev/cosign/sign/v1","predicate":{}}""";
                    string bundle = KeyAndLayoutTests.DsseBundle(_sigstore, leaf, key, Encoding.UTF8.GetBytes(statement));
                    SigstoreArtifact.TryFromDigest(digest, out var artifact).Should().BeTrue();
                    return (Encoding.UTF8.GetBytes(bundle), artifact!, new SigstoreVerifier(_sigstore.TrustedRoot()), Identity);
                }

            case "rekor-v2-tsa":
                {
                    var log = new TestRekorV2Log();
                    var builder = new BundleBuilder(_sigstore) { RekorV2 = log, Timestamp = sig => _tsa.Stamp(sig, GenTime) };
                    var root = _sigstore.TrustedRoot(extraTlogs: log.TlogJson(), timestampAuthorities: _tsa.AuthorityJson());
                    return (Encoding.UTF8.GetBytes(builder.Build()), SigstoreArtifact.FromBytes(builder.Artifact), new SigstoreVerifier(root), Identity);
                }

            default:
                {
                    var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
                    var builder = new BundleBuilder(_sigstore) { SigningKey = key, PublicKeyPem = key.ExportSubjectPublicKeyInfoPem() };
                    return (Encoding.UTF8.GetBytes(builder.Build()), SigstoreArtifact.FromBytes(builder.Artifact), new SigstoreVerifier(_sigstore.TrustedRoot()), SignerPolicy.ForPublicKey(key.ExportSubjectPublicKeyInfoPem()));
                }
        }
    }

    /// <summary>Runs one public call: it must return, whatever the input.</summary>
    private static BundleVerificationResult Verify(Func<BundleVerificationResult> call, int seed, int i, string description)
    {
        try
        {
            var result = call();
            (result.IsVerified == (result.FailureReason is null)).Should().BeTrue();
            return result;
        }
        catch (Exception ex) when (ex is not Xunit.Sdk.XunitException)
        {
            throw new Xunit.Sdk.XunitException($"seed {seed} case {i} ({description}): the verifier threw {ex}");
        }
    }

    /// <summary>A verified mutation may differ from the vector only where nothing is signed.</summary>
    private static void AssertOnlyUnsignedChanged(byte[] original, byte[] mutated, int seed, int i, string description)
    {
        var changed = JsonDiff.Differences(original, mutated);
        changed.Should().NotBeNull($"seed {seed} case {i} ({description}) verified a document no strict JSON reader accepts");
        var signed = changed!.Where(path => !IsUnsigned(path, original, mutated)).ToList();
        signed.Should().BeEmpty($"seed {seed} case {i} ({description}) verified with changed signed content");
    }

    private static bool IsUnsigned(string path, byte[] original, byte[] mutated)
    {
        if (path.StartsWith("$.verificationMaterial.publicKey.hint", StringComparison.Ordinal))
        {
            return true;
        }

        // An added member whose name the vector never uses is unknown to the reader, which ignores it.
        if (IsUnknownMemberAdded(original, path) || RepeatsAnElement(original, mutated, path))
        {
            return true; // an unknown member is ignored; a repeated timestamp or entry is verified like the first
        }

        // A timestamp token may differ outside what the TSA signed.
        if (path.EndsWith(".signedTimestamp", StringComparison.Ordinal))
        {
            static byte[]? Token(byte[] bundle) => JsonNode.Parse(bundle)?["verificationMaterial"]?["timestampVerificationData"]?["rfc3161Timestamps"]?[0]?["signedTimestamp"]?.GetValue<string>() is { } b64
                ? Convert.FromBase64String(b64)
                : null;
            return Token(original) is { } before && Token(mutated) is { } after && SignedPart(before).Length > 0 && SignedPart(before).AsSpan().SequenceEqual(SignedPart(after));
        }

        // Optional members that are only compared when present: absent or null is the same.
        if (path.StartsWith("$.messageSignature.messageDigest", StringComparison.Ordinal) || path.StartsWith("$.base64Signature", StringComparison.Ordinal))
        {
            string name = path.StartsWith("$.base64Signature", StringComparison.Ordinal) ? "base64Signature" : "messageDigest";
            var node = JsonNode.Parse(mutated)!;
            var holder = name == "messageDigest" ? node["messageSignature"] : node;
            return holder is JsonObject o && (!o.ContainsKey(name) || o[name] is null);
        }

        // A log entry's own logIndex is signed only by a signed entry timestamp; without one (Rekor v2) the inclusion
        // proof's index is what is verified, and the entry's is used for nothing.
        if (System.Text.RegularExpressions.Regex.IsMatch(path, @"^\$\.verificationMaterial\.tlogEntries\[(\d+)\]\.logIndex$"))
        {
            int entry = int.Parse(path.Split('[', ']')[1], System.Globalization.CultureInfo.InvariantCulture);
            return JsonNode.Parse(original)!["verificationMaterial"]!["tlogEntries"]![entry]!["inclusionPromise"] is null;
        }

        if (path.EndsWith(".checkpoint.envelope", StringComparison.Ordinal))
        {
            // The note text is signed; the signature lines are not (a witness line or the signer name may change) as
            // long as the log's own signature line is still there, byte for byte.
            string before = Envelope(original)!;
            string? after = Envelope(mutated);
            int split = before.IndexOf("\n\n", StringComparison.Ordinal);
            string logLine = before[(split + 2)..].Split('\n')[0];
            string logSignature = logLine[(logLine.LastIndexOf(' ') + 1)..];
            return after is not null
                && after.StartsWith(before[..(split + 2)], StringComparison.Ordinal)
                && after[(split + 2)..].Split('\n').Any(l => l.EndsWith(" " + logSignature, StringComparison.Ordinal));
        }

        if (path == "$.cert")
        {
            // A legacy bundle's certificate is base64 of a PEM: another PEM spelling of the same DER is the same certificate.
            return Der(original) is { } a && Der(mutated) is { } b && a.AsSpan().SequenceEqual(b);
        }

        return false;
    }

    /// <summary>A changed certificate of a trusted root that keeps its subject and public key: for a trust anchor the
    /// other bytes (its own signature, its validity) are configuration, not key material; a chain is built to the key.</summary>
    private static bool SameKeyAndName(byte[] original, byte[] mutated, string path)
    {
        if (!path.EndsWith(".rawBytes", StringComparison.Ordinal) || !path.Contains("certChain", StringComparison.Ordinal))
        {
            return false;
        }

        try
        {
            using var before = X509CertificateLoader.LoadCertificate(Convert.FromBase64String(Navigate(JsonNode.Parse(original), path)!.GetValue<string>()));
            using var after = X509CertificateLoader.LoadCertificate(Convert.FromBase64String(Navigate(JsonNode.Parse(mutated), path)!.GetValue<string>()));
            return before.SubjectName.RawData.AsSpan().SequenceEqual(after.SubjectName.RawData)
                && before.PublicKey.ExportSubjectPublicKeyInfo().AsSpan().SequenceEqual(after.PublicKey.ExportSubjectPublicKeyInfo());
        }
        catch (Exception ex) when (ex is CryptographicException or FormatException or InvalidOperationException)
        {
            return false;
        }
    }

    private static bool IsUnknownMemberAdded(byte[] original, string path) =>
        path.EndsWith(" (added)", StringComparison.Ordinal) && !path.EndsWith("] (added)", StringComparison.Ordinal)
        && !Names(JsonNode.Parse(original)).Contains(path[(path.LastIndexOf('.') + 1)..^" (added)".Length]);

    private static HashSet<string> Names(JsonNode? node)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        void Walk(JsonNode? n)
        {
            switch (n)
            {
                case JsonObject o:
                    foreach (var (key, child) in o)
                    {
                        names.Add(key);
                        Walk(child);
                    }

                    break;
                case JsonArray a:
                    foreach (var child in a)
                    {
                        Walk(child);
                    }

                    break;
            }
        }

        Walk(node);
        return names;
    }

    /// <summary>Whether an array element the mutation added (<c>…[n] (added)</c>) repeats an element the array already had.</summary>
    private static bool RepeatsAnElement(byte[] original, byte[] mutated, string path)
    {
        if (!path.EndsWith("] (added)", StringComparison.Ordinal))
        {
            return false;
        }

        string at = path[..^" (added)".Length];
        int open = at.LastIndexOf('[');
        var before = Navigate(JsonNode.Parse(original), at[..open]) as JsonArray;
        var after = Navigate(JsonNode.Parse(mutated), at[..open]) as JsonArray;
        int index = int.Parse(at[(open + 1)..^1], System.Globalization.CultureInfo.InvariantCulture);
        return before is not null && after is not null && index < after.Count && before.Any(e => JsonNode.DeepEquals(e, after[index]));
    }

    private static JsonNode? Navigate(JsonNode? node, string path)
    {
        foreach (string part in path[1..].Split('.', StringSplitOptions.RemoveEmptyEntries))
        {
            string name = part.Contains('[', StringComparison.Ordinal) ? part[..part.IndexOf('[', StringComparison.Ordinal)] : part;
            node = name.Length > 0 ? node?[name] : node;
            foreach (string index in part.Split('[').Skip(1))
            {
                node = node?[int.Parse(index.TrimEnd(']'), System.Globalization.CultureInfo.InvariantCulture)];
            }
        }

        return node;
    }

    private static string? Envelope(byte[] bundle) =>
        JsonNode.Parse(bundle)?["verificationMaterial"]?["tlogEntries"]?[0]?["inclusionProof"]?["checkpoint"]?["envelope"]?.GetValue<string>();

    private static byte[]? Der(byte[] legacy)
    {
        try
        {
            string pem = Encoding.UTF8.GetString(Convert.FromBase64String(JsonNode.Parse(legacy)!["cert"]!.GetValue<string>()));
            return PemEncoding.TryFind(pem, out var fields) ? Convert.FromBase64String(pem[fields.Base64Data]) : null;
        }
        catch (Exception ex) when (ex is FormatException or InvalidOperationException or System.Text.Json.JsonException)
        {
            return null;
        }
    }

    /// <summary>Parts of a trusted root that configure trust but are no key material (a changed window or base URL
    /// may legitimately still verify the vector).</summary>
    private static bool IsTrustConfiguration(string path) =>
        (path.EndsWith(" (added)", StringComparison.Ordinal) && path.Contains(Mutator.UnknownMember, StringComparison.Ordinal))
        || path.Contains(".validFor", StringComparison.Ordinal)
        || path.Contains(".baseUrl", StringComparison.Ordinal)
        || path.Contains(".hashAlgorithm", StringComparison.Ordinal)
        || path.Contains(".keyDetails", StringComparison.Ordinal)
        || path.Contains(".subject", StringComparison.Ordinal)
        || path.Contains(".uri", StringComparison.Ordinal)
        || path.StartsWith("$.timestampAuthorities", StringComparison.Ordinal)
        || (path.StartsWith("$.ctlogs", StringComparison.Ordinal) && !path.Contains("rawBytes", StringComparison.Ordinal) && !path.Contains("keyId", StringComparison.Ordinal));

    /// <summary>The test's own reading of a TimeStampResp: its token (the signed part), or the input when it is a bare token.</summary>
    private static byte[] TimeStampToken(byte[] response)
    {
        try
        {
            var top = new AsnReader(response, AsnEncodingRules.DER).ReadSequence();
            if (top.PeekTag().HasSameClassAndValue(Asn1Tag.ObjectIdentifier))
            {
                return response;
            }

            top.ReadSequence();
            return top.ReadEncodedValue().ToArray();
        }
        catch (AsnContentException)
        {
            return [];
        }
    }

    /// <summary>What the TSA signed: the TSTInfo, the signed attributes and the signature value (empty when the test
    /// cannot decode the token).</summary>
    private static byte[] SignedPart(byte[] response)
    {
        try
        {
            var cms = new System.Security.Cryptography.Pkcs.SignedCms();
            cms.Decode(TimeStampToken(response));
            var signer = cms.SignerInfos[0];
            var attributes = signer.SignedAttributes.Cast<System.Security.Cryptography.CryptographicAttributeObject>()
                .SelectMany(a => a.Values.Cast<AsnEncodedData>().SelectMany(v => v.RawData));
            return [.. cms.ContentInfo.Content, .. attributes, .. signer.GetSignature()];
        }
        catch (CryptographicException)
        {
            return [];
        }
    }

    private static string? OidcIssuerOf(X509Certificate2 leaf)
    {
        var v2 = leaf.Extensions["1.3.6.1.4.1.57264.1.8"];
        if (v2 is not null)
        {
            try
            {
                var reader = new AsnReader(v2.RawData, AsnEncodingRules.DER);
                string value = reader.ReadCharacterString(UniversalTagNumber.UTF8String);
                return reader.HasData ? null : value;
            }
            catch (AsnContentException)
            {
                return null;
            }
        }

        var v1 = leaf.Extensions["1.3.6.1.4.1.57264.1.1"];
        return v1 is null ? null : Encoding.UTF8.GetString(v1.RawData);
    }

    /// <summary>A leaf like <see cref="TestSigstore.IssueLeaf"/>'s, signed by the test CA, with one extension's raw bytes replaced.</summary>
    private (X509Certificate2 Leaf, ECDsa Key) IssueWithExtension(string oid, byte[] raw, X509Certificate2 template)
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=sigstore-leaf", key, HashAlgorithmName.SHA256);
        foreach (var extension in template.Extensions)
        {
            if (extension.Oid!.Value == oid || oid == "1.3.6.1.4.1.57264.1.1" && extension.Oid.Value == "1.3.6.1.4.1.57264.1.8")
            {
                continue;
            }

            request.CertificateExtensions.Add(extension);
        }

        request.CertificateExtensions.Add(new X509Extension(oid, raw, false));
        byte[] serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7f;
        using var issued = request.Create(_sigstore.Ca, TestSigstore.LeafStart, TestSigstore.LeafStart.AddMinutes(10), serial);
        return (issued.CopyWithPrivateKey(key), key);
    }

    /// <summary>A legacy <c>cosign sign-blob --bundle</c> file for a keyless signature: cert (base64 PEM) and the Rekor
    /// bundle (a signed entry timestamp over a hashedrekord body).</summary>
    private byte[] LegacyBundle(X509Certificate2 leaf, byte[] signature, byte[] blob)
    {
        string pem = leaf.ExportCertificatePem();
        string body = $$$"""{"apiVersion":"0.0.1","kind":"hashedrekord","spec":{"data":{"hash":{"algorithm":"sha256","value":"{{{Convert.ToHexStringLower(SHA256.HashData(blob))}}}"}},"signature":{"content":"{{{TestSigstore.B64(signature)}}}","publicKey":{"content":"{{{TestSigstore.B64(Encoding.UTF8.GetBytes(pem))}}}"}""" + "}}}";
        string encodedBody = TestSigstore.B64(Encoding.UTF8.GetBytes(body));
        long integrated = TestSigstore.LeafStart.AddMinutes(1).ToUnixTimeSeconds();
        string logId = Convert.ToHexStringLower(_sigstore.RekorLogId);
        string setPayload = $$$"""{"body":"{{{encodedBody}}}","integratedTime":{{{integrated}}},"logID":"{{{logId}}}","logIndex":77}""";
        byte[] set = _sigstore.RekorKey.SignData(Encoding.UTF8.GetBytes(setPayload), HashAlgorithmName.SHA256, DSASignatureFormat.Rfc3279DerSequence);
        return Encoding.UTF8.GetBytes($$$"""{"base64Signature":"{{{TestSigstore.B64(signature)}}}","cert":"{{{TestSigstore.B64(Encoding.UTF8.GetBytes(pem))}}}","rekorBundle":{"SignedEntryTimestamp":"{{{TestSigstore.B64(set)}}}","Payload":{"body":"{{{encodedBody}}}","integratedTime":{{{integrated}}},"logIndex":77,"logID":"{{{logId}}}"}""" + "}}");
    }
}
