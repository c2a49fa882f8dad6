using System.Security.Cryptography;
using System.Text;
using Kars.Policy.Egress;
using Microsoft.Extensions.Time.Testing;
using NodaTime;
using static Kars.Policy.Tests.Egress.EgressTestHelpers;

namespace Kars.Policy.Tests.Egress;

public class EgressPolicySnapshotTests
{
    private static ReadOnlyMemory<byte> Bytes(string text) => Encoding.UTF8.GetBytes(text);

    [Fact]
    public void Create_NativeDocumentInMemory_CompilesWithDigestGenerationModeAndWarnings()
    {
        string json = Doc("""{"host":"api.github.com"}""");

        var snapshot = EgressPolicySnapshot.Create(Bytes(json));

        snapshot.Generation.Should().Be(3);
        snapshot.Mode.Should().Be(EgressMode.Strict);
        snapshot.Warnings.Should().BeEmpty();
        snapshot.Digest.Should().Be("sha256:" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(json))));
        var decision = snapshot.Evaluate("api.github.com", 443, null);
        decision.Reason.Should().Be(EgressReason.Allowlisted);
        decision.PolicyDigest.Should().Be(snapshot.Digest);
        decision.PolicyGeneration.Should().Be(3);
    }

    [Fact]
    public void Create_KarsAllowlistInMemory_CoversSubdomainsWithKarsDigest()
    {
        var snapshot = EgressPolicySnapshot.Create(Bytes("""{"schemaVersion":1,"endpoints":[{"host":"github.com","port":443}]}"""));

        snapshot.Generation.Should().Be(0);
        snapshot.Evaluate("api.github.com", 443, null).Reason.Should().Be(EgressReason.Allowlisted);
    }

    [Fact]
    public void Create_FeedContentsHandedIn_BlockByTheDocumentsFeedName()
    {
        string json = Doc("""{"host":"*.example.com"}""", """ "blocklist":{"files":["feeds/bad.txt"]} """);
        var feeds = new Dictionary<string, ReadOnlyMemory<byte>> { ["feeds/bad.txt"] = Bytes("evil.example.com\n") };

        var snapshot = EgressPolicySnapshot.Create(Bytes(json), feeds);

        var decision = snapshot.Evaluate("x.evil.example.com", 443, null);
        decision.Reason.Should().Be(EgressReason.Blocklisted);
        decision.Rule.Should().Be("blocklist feeds/bad.txt: evil.example.com");
        snapshot.Evaluate("ok.example.com", 443, null).Reason.Should().Be(EgressReason.Allowlisted);
    }

    [Fact]
    public void Create_FeedNamedButNotSupplied_FailsWithAProblemNamingIt()
    {
        string json = Doc("""{"host":"*.example.com"}""", """ "blocklist":{"files":["feeds/bad.txt"]} """);

        var act = () => EgressPolicySnapshot.Create(Bytes(json));

        act.Should().Throw<EgressPolicyLoadException>()
            .Which.Problems.Should().ContainSingle(p => p.Source == "feeds/bad.txt" && p.Kind == EgressPolicyProblemKind.Invalid);
    }

    [Fact]
    public void Create_InvalidDocument_ThrowsWithEveryProblem()
    {
        var act = () => EgressPolicySnapshot.Create(Bytes("""{"schemaVersion":1,"allow":[{"host":"*"},{"host":"API.example.com"}]}"""));

        act.Should().Throw<EgressPolicyLoadException>().Which.Problems.Should().HaveCount(2);
    }

    [Fact]
    public void Load_Stream_SameSnapshotAsBytes()
    {
        string json = Doc("""{"host":"api.github.com"}""");
        using var stream = new MemoryStream(Encoding.UTF8.GetBytes(json));

        var snapshot = EgressPolicySnapshot.Load(stream);

        snapshot.Digest.Should().Be(EgressPolicySnapshot.Create(Bytes(json)).Digest);
        stream.CanRead.Should().BeTrue("the caller owns the stream");
    }

    [Fact]
    public void Load_EndlessStream_RefusedWithoutExhaustingMemory()
    {
        using var stream = new EndlessStream();

        var act = () => EgressPolicySnapshot.Load(stream);

        act.Should().Throw<EgressPolicyLoadException>().Which.Problems.Should().ContainSingle().Which.Message.Should().Contain("larger than");
        stream.Position.Should().BeLessThan(32L * 1024 * 1024);
    }

    [Fact]
    public void Create_ModeOverride_AppliesToEveryDecision()
    {
        var snapshot = EgressPolicySnapshot.Create(Bytes(Doc("""{"host":"api.github.com"}""")), options: new KarsEgressOptions { Mode = EgressMode.Learn });

        snapshot.Mode.Should().Be(EgressMode.Learn);
        snapshot.Evaluate("new.example.org", 443, null).Reason.Should().Be(EgressReason.Learned);
        snapshot.Evaluate("api.github.com", 443, null).Mode.Should().Be(EgressMode.Learn);
    }

    [Fact]
    public void Evaluate_LearnMode_EveryOverloadReportsItsSandboxToTheRecorder()
    {
        var time = new FakeTimeProvider(Start);
        var recorder = new LearnedHostRecorder(timeProvider: time);
        var snapshot = EgressPolicySnapshot.Create(Bytes(Doc("""{"host":"api.github.com"}""")), learnedHosts: recorder, options: new KarsEgressOptions { Mode = EgressMode.Learn });
        EgressTargetParser.TryParse("t.example.org", out var target, out _).Should().BeTrue();

        snapshot.Evaluate(target, "s-target");
        snapshot.Evaluate(new Uri("https://u.example.org/x"), "s-uri");
        snapshot.Evaluate("https://s.example.org/", "s-string");
        snapshot.Evaluate("h.example.org", 443, "s-host");
        snapshot.Evaluate("203.0.113.9", "s-ip").Reason.Should().Be(EgressReason.NotAllowlisted);

        snapshot.LearnedHosts.Should().BeSameAs(recorder);
        recorder.GetLearnedHosts().Select(h => (h.Sandbox, h.Host)).Should().BeEquivalentTo(
        [
            ("s-host", "h.example.org"),
            ("s-string", "s.example.org"),
            ("s-target", "t.example.org"),
            ("s-uri", "u.example.org"),
        ]);
        recorder.GetLearnedHosts()[0].FirstSeen.Should().Be(Instant.FromDateTimeOffset(Start));
    }

    [Fact]
    public void Evaluate_StrictMode_RecordsNothing()
    {
        var recorder = new LearnedHostRecorder();
        var snapshot = EgressPolicySnapshot.Create(Bytes(Doc("""{"host":"api.github.com"}""")), learnedHosts: recorder);

        snapshot.Evaluate("new.example.org", 443, "s").Reason.Should().Be(EgressReason.NotAllowlisted);

        recorder.Count.Should().Be(0);
    }

    [Fact]
    public void Evaluate_NullOrUnusableInput_DeniesAsInvalidTarget()
    {
        var snapshot = EgressPolicySnapshot.Create(Bytes(Doc("""{"host":"api.github.com"}""")));

        snapshot.Evaluate((Uri)null!, null).Reason.Should().Be(EgressReason.InvalidTarget);
        snapshot.Evaluate((string)null!, null).Reason.Should().Be(EgressReason.InvalidTarget);
        snapshot.Evaluate(default(EgressTarget), null).Reason.Should().Be(EgressReason.InvalidTarget);
        snapshot.Evaluate("api.github.com", 0, null).Reason.Should().Be(EgressReason.InvalidTarget);
    }

    [Fact]
    public void Recorder_IpTarget_IsNeverRecorded()
    {
        var recorder = new LearnedHostRecorder();
        EgressTargetParser.TryParse("203.0.113.9", out var target, out _).Should().BeTrue();

        recorder.Record(target, "s");
        recorder.Record(default, "s");

        recorder.Count.Should().Be(0);
    }

    [Fact]
    public void Recorder_NegativeCapacity_Throws()
    {
        var act = () => new LearnedHostRecorder(new KarsEgressOptions { LearnedCapacity = -1 });

        act.Should().Throw<ArgumentOutOfRangeException>();
    }

    private sealed class EndlessStream : Stream
    {
        private long _position;

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => _position; set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count)
        {
            buffer.AsSpan(offset, count).Fill((byte)' ');
            _position += count;
            return count;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
