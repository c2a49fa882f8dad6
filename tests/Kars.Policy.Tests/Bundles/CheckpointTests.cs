using System.Security.Cryptography;
using System.Text;
using Kars.Policy.Bundles;
using Org.BouncyCastle.Crypto.Generators;
using Org.BouncyCastle.Crypto.Parameters;
using Org.BouncyCastle.Crypto.Signers;
using Org.BouncyCastle.Security;

namespace Kars.Policy.Tests.Bundles;

/// <summary>Rekor v2 style signed-note checkpoints: Ed25519 log key, key hint from the log id, witness cosignatures in any order.</summary>
public sealed class CheckpointTests
{
    private const string Origin = "log2030-1.rekor.test";
    private readonly AsymmetricPair _log = NewEd25519();
    private readonly AsymmetricPair _witness = NewEd25519();
    private readonly byte[] _root = SHA256.HashData("root"u8);

    private LogInstance Log()
    {
        byte[] spki = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00, .. _log.Public];
        byte[] logId = SHA256.HashData([.. Encoding.UTF8.GetBytes(Origin), 0x0A, 0x01, .. _log.Public]);
        return new LogInstance("https://" + Origin, Origin, logId, SigningKey.FromSpki(spki, "test log key"), new TimeRange(DateTimeOffset.UnixEpoch, null));
    }

    private string Line(AsymmetricPair key, byte[] hint, string text) =>
        "\u2014 " + Origin + " " + Convert.ToBase64String([.. hint.AsSpan(0, 4), .. key.Sign(Encoding.UTF8.GetBytes(text))]) + "\n";

    private InclusionProof Proof => new(3, _root, 10, [], null);

    [Fact]
    public void The_log_signature_verifies_after_a_witness_cosignature()
    {
        var log = Log();
        string text = $"{Origin}\n10\n{Convert.ToBase64String(_root)}\n";
        string note = text + "\n" + Line(_witness, [1, 2, 3, 4], text) + Line(_log, log.LogId, text);

        FluentActions.Invoking(() => Transparency.VerifyCheckpoint(note, Proof, log)).Should().NotThrow();
    }

    [Fact]
    public void Only_witness_signatures_or_a_wrong_key_hint_fail()
    {
        var log = Log();
        string text = $"{Origin}\n10\n{Convert.ToBase64String(_root)}\n";

        var onlyWitness = () => Transparency.VerifyCheckpoint(text + "\n" + Line(_witness, [1, 2, 3, 4], text), Proof, log);
        var forgedUnderLogHint = () => Transparency.VerifyCheckpoint(text + "\n" + Line(_witness, log.LogId, text), Proof, log);

        onlyWitness.Should().Throw<BundleException>().Which.Reason.Should().Be(BundleFailureReason.TransparencyLogInvalid);
        forgedUnderLogHint.Should().Throw<BundleException>().Which.Reason.Should().Be(BundleFailureReason.TransparencyLogInvalid);
    }

    [Theory]
    [InlineData("10\n{root}\n")]
    [InlineData("{origin}\n{root}\n")]
    [InlineData("{origin}\n11\n{root}\n")]
    [InlineData("{origin}\n10\n")]
    public void A_checkpoint_without_origin_size_or_root_or_for_another_tree_fails(string template)
    {
        var log = Log();
        string text = template.Replace("{origin}", Origin, StringComparison.Ordinal).Replace("{root}", Convert.ToBase64String(_root), StringComparison.Ordinal);

        var verify = () => Transparency.VerifyCheckpoint(text + "\n" + Line(_log, log.LogId, text), Proof, log);

        verify.Should().Throw<BundleException>().Which.Reason.Should().Be(BundleFailureReason.TransparencyLogInvalid);
    }

    private static AsymmetricPair NewEd25519()
    {
        var generator = new Ed25519KeyPairGenerator();
        generator.Init(new Ed25519KeyGenerationParameters(new SecureRandom()));
        var pair = generator.GenerateKeyPair();
        return new AsymmetricPair(((Ed25519PublicKeyParameters)pair.Public).GetEncoded(), data =>
        {
            var signer = new Ed25519Signer();
            signer.Init(true, pair.Private);
            signer.BlockUpdate(data, 0, data.Length);
            return signer.GenerateSignature();
        });
    }

    private sealed record AsymmetricPair(byte[] Public, Func<byte[], byte[]> Sign);
}
