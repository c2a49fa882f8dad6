using System.Text;
using Kars.Policy.Egress;

namespace Kars.Policy.Tests.Egress;

public class NameIndexTests
{
    private static NameIndex Build(params string[] names)
    {
        var builder = new NameIndex.Builder(names.Length);
        foreach (string name in names)
        {
            builder[builder.GetOrAdd(name)].BlockSource = 0;
        }

        return builder.Build();
    }

    [Fact]
    public void Find_FingerprintOfListedNameWithOtherText_NotTrusted()
    {
        var index = Build("evil.example.com");
        ulong fingerprint = NameIndex.FingerprintOf("evil.example.com");

        index.Find(fingerprint, "evil.example.com").Should().BeGreaterThanOrEqualTo(0);
        index.Find(fingerprint, "good.example.com").Should().Be(-1);
        index.Find(fingerprint, "evil.example.co").Should().Be(-1);
    }

    [Theory]
    [InlineData("a")]
    [InlineData("ab")]
    [InlineData("abc")]
    [InlineData("abcd")]
    [InlineData("abcde")]
    [InlineData("abcdefghi")]
    [InlineData("x.y")]
    [InlineData("very-long-label-with-many-characters-in-it.example-domain.co")]
    public void FingerprintOf_IncrementalSuffixHash_MatchesWholeNameHash(string name)
    {
        // The lookup hashes each suffix in one right-to-left pass; the builder hashes whole names. They must agree.
        ref char first = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(name.AsSpan());
        int pos = name.Length;
        ulong hash = NameIndex.StartHash;
        ulong last = 0;
        int start = name.Length;
        while (start > 0)
        {
            start = name.AsSpan(0, start - 1 < 0 ? 0 : start).LastIndexOf('.') + 1;
            hash = NameIndex.ConsumeWords(hash, ref first, ref pos, start);
            last = NameIndex.SuffixFingerprint(hash, ref first, pos, start, name.Length - start);
            last.Should().Be(NameIndex.FingerprintOf(name.AsSpan(start)), name[start..]);
            if (start > 0)
            {
                start--;
            }
        }

        last.Should().Be(NameIndex.FingerprintOf(name));
    }

    [Fact]
    public void Build_ManyNames_EveryNameFoundAndNoOtherName()
    {
        string[] names = [.. Enumerable.Range(0, 20_000).Select(i => $"n{i}.example{i % 7}.com")];
        var index = Build(names);

        index.Count.Should().Be(names.Length);
        foreach (string name in names)
        {
            index.Find(NameIndex.FingerprintOf(name), name).Should().BeGreaterThanOrEqualTo(0, name);
            index.NameOf(index.Find(NameIndex.FingerprintOf(name), name)).Should().Be(name);
        }

        for (int i = 20_000; i < 40_000; i++)
        {
            string other = $"n{i}.example{i % 7}.com";
            index.Find(NameIndex.FingerprintOf(other), other).Should().Be(-1);
        }
    }

    [Fact]
    public void Find_NamesSharingTheInlinePrefix_VerifiedToTheLastCharacter()
    {
        var index = Build("abcdefghijklmnop.one.com", "abcdefghijklmnop.two.com");

        index.Find(NameIndex.FingerprintOf("abcdefghijklmnop.one.com"), "abcdefghijklmnop.one.com").Should().BeGreaterThanOrEqualTo(0);
        index.Find(NameIndex.FingerprintOf("abcdefghijklmnop.one.com"), "abcdefghijklmnop.one.org").Should().Be(-1);
        index.Find(NameIndex.FingerprintOf("abcdefghijklmnop.two.com"), "abcdefghijklmnop.one.com").Should().Be(-1);
        index.NameOf(index.Find(NameIndex.FingerprintOf("abcdefghijklmnop.two.com"), "abcdefghijklmnop.two.com")).Should().Be("abcdefghijklmnop.two.com");
    }

    [Fact]
    public void GetOrAdd_SameNameTwice_OneEntry()
    {
        var builder = new NameIndex.Builder(4);

        int first = builder.GetOrAdd(Encoding.ASCII.GetBytes("a.example.com"));
        int second = builder.GetOrAdd("a.example.com");

        second.Should().Be(first);
        builder.Count.Should().Be(1);
    }
}

public class LongNameEvaluationTests
{
    [Theory]
    [InlineData(10)]
    [InlineData(40)]
    [InlineData(63)]
    public void Evaluate_NamesLongerThan64Characters_MatchWildcardsAndBlocklist(int labelLength)
    {
        var policy = EgressTestHelpers.Load(EgressTestHelpers.Doc("""{"host":"*.example.com"}""", "\"blocklist\":{\"domains\":[\"bad.example.com\"]}"));
        string label = new('a', labelLength);
        string longAllowed = $"{label}.{label}.{label}.example.com";
        string longBlocked = $"{label}.{label}.bad.example.com";

        policy.Evaluate(longAllowed, 443).Reason.Should().Be(EgressReason.Allowlisted);
        policy.Evaluate(longBlocked, 443).Reason.Should().Be(EgressReason.Blocklisted);
        policy.Evaluate($"{label}.{label}.other.com", 443).Reason.Should().Be(EgressReason.NotAllowlisted);
    }
}

public class ManyLabelEvaluationTests
{
    [Theory]
    [InlineData("a.b.c.d.e.f.g.h.i.j.example.com", EgressReason.Allowlisted)]
    [InlineData("a.b.c.d.e.f.example.com", EgressReason.Allowlisted)]
    [InlineData("a.b.c.d.e.f.g.h.i.j.bad.example.com", EgressReason.Blocklisted)]
    [InlineData("a.b.c.d.e.f.bad.example.com", EgressReason.Blocklisted)]
    [InlineData("a.b.c.d.e.f.g.h.i.j.example.org", EgressReason.NotAllowlisted)]
    public void Evaluate_ManyLabels_SameResultOnPipelinedAndFallbackPaths(string host, EgressReason reason)
    {
        var policy = EgressTestHelpers.Load(EgressTestHelpers.Doc("""{"host":"*.example.com"}""", "\"blocklist\":{\"domains\":[\"bad.example.com\"]}"));

        policy.Evaluate(host, 443).Reason.Should().Be(reason);
        policy.Evaluate(EgressTargetParser.FromCanonicalDnsName(host, 443)).Reason.Should().Be(reason);
    }
}
