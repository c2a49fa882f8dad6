using System.Text;
using CsCheck;
using Kars.Policy.Egress;

namespace Kars.Policy.Tests.Egress;

public class NameIndexTests
{
    private static NameIndex Build(params string[] names)
    {
        var builder = new NameIndex.Builder(names.Length);
        foreach (string name in names)
        {
            builder.MarkBlocked(builder.GetOrAdd(name), 0);
        }

        return builder.Build(out _);
    }

    [Fact]
    public void Find_FingerprintOfListedNameWithOtherText_NotTrusted()
    {
        var index = Build("evil.example.com");
        ulong fingerprint = NameIndex.FingerprintOf("evil.example.com");

        index.Probe(fingerprint, "evil.example.com").Should().BeGreaterThanOrEqualTo(0);
        index.Probe(fingerprint, "good.example.com").Should().Be(-1);
        index.Probe(fingerprint, "evil.example.co").Should().Be(-1);
    }

    [Theory]
    [InlineData("a")]
    [InlineData("ab")]
    [InlineData("abc")]
    [InlineData("abcd")]
    [InlineData("abcde")]
    [InlineData("abcdefghi")]
    [InlineData("x.y")]
    [InlineData("ab.cd")]
    [InlineData("a.bc.def.ghij.k")]
    [InlineData("abc.de.f")]
    [InlineData("abcd.e")]
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
    public void SuffixFingerprint_RandomNames_MatchesAReferenceThatReadsOneCharacterAtATime()
    {
        // The suffix walk reads the 0-3 characters left over before a label start as one masked word (no branch on their
        // number); the reference below hashes the same words and leftovers the plain way. Every suffix of every name,
        // every leftover count and every position of the word must agree, or an indexed name would not be found.
        Gen.String[Gen.Char["ab.z9-_"], 1, 80].Where(n => !n.StartsWith('.') && !n.EndsWith('.')).Sample(name =>
        {
            ref char first = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(name.AsSpan());
            int pos = name.Length;
            ulong hash = NameIndex.StartHash;
            for (int start = name.Length - 1; start >= 0; start--)
            {
                if (start > 0 && name[start - 1] != '.')
                {
                    continue;
                }

                hash = NameIndex.ConsumeWords(hash, ref first, ref pos, start);
                ulong walked = NameIndex.SuffixFingerprint(hash, ref first, pos, start, name.Length - start);
                walked.Should().Be(ReferenceFingerprint(name.AsSpan(start)), "suffix {0} of {1}", name[start..], name);
                walked.Should().Be(NameIndex.FingerprintOf(name.AsSpan(start)));
            }
        });
    }

    /// <summary>The fingerprint as documented: whole four-character words right to left from the end, then the 0-3
    /// characters before them little-endian, each read one character at a time.</summary>
    private static ulong ReferenceFingerprint(ReadOnlySpan<char> name)
    {
        ulong hash = NameIndex.StartHash;
        int pos = name.Length;
        while (pos - 4 >= 0)
        {
            pos -= 4;
            ulong word = name[pos] | ((ulong)name[pos + 1] << 16) | ((ulong)name[pos + 2] << 32) | ((ulong)name[pos + 3] << 48);
            hash = (hash ^ word) * 0x165667B19E3779F9UL;
        }

        ulong partial = 0;
        for (int i = 0; i < pos; i++)
        {
            partial |= (ulong)name[i] << (16 * i);
        }

        ulong x = ((hash ^ partial) * 0xD6E8FEB86659FD93UL) ^ (ulong)(uint)name.Length;
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdUL;
        x ^= x >> 33;
        return x;
    }

    [Fact]
    public void Build_ManyNames_EveryNameFoundAndNoOtherName()
    {
        string[] names = [.. Enumerable.Range(0, 20_000).Select(i => $"n{i}.example{i % 7}.com")];
        var index = Build(names);

        index.Count.Should().Be(names.Length);
        foreach (string name in names)
        {
            index.Probe(NameIndex.FingerprintOf(name), name).Should().BeGreaterThanOrEqualTo(0, name);
            index.NameOf(index.Probe(NameIndex.FingerprintOf(name), name)).Should().Be(name);
        }

        for (int i = 20_000; i < 40_000; i++)
        {
            string other = $"n{i}.example{i % 7}.com";
            index.Probe(NameIndex.FingerprintOf(other), other).Should().Be(-1);
        }
    }

    [Fact]
    public void Find_NamesSharingTheInlinePrefix_VerifiedToTheLastCharacter()
    {
        var index = Build("abcdefghijklmnop.one.com", "abcdefghijklmnop.two.com");

        index.Probe(NameIndex.FingerprintOf("abcdefghijklmnop.one.com"), "abcdefghijklmnop.one.com").Should().BeGreaterThanOrEqualTo(0);
        index.Probe(NameIndex.FingerprintOf("abcdefghijklmnop.one.com"), "abcdefghijklmnop.one.org").Should().Be(-1);
        index.Probe(NameIndex.FingerprintOf("abcdefghijklmnop.two.com"), "abcdefghijklmnop.one.com").Should().Be(-1);
        index.NameOf(index.Probe(NameIndex.FingerprintOf("abcdefghijklmnop.two.com"), "abcdefghijklmnop.two.com")).Should().Be("abcdefghijklmnop.two.com");
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

    [Fact]
    public void Build_FarMoreNamesThanExpected_TableGrowsAndFindsEveryName()
    {
        var builder = new NameIndex.Builder(2);
        string[] names = [.. Enumerable.Range(0, 5_000).Select(i => $"grow{i}.example-with-a-long-tail{i % 13}.org")];
        foreach (string name in names)
        {
            builder.MarkBlocked(builder.GetOrAdd(name), 1);
        }

        builder.GetOrAdd(names[17]).Should().Be(builder.GetOrAdd(names[17]));
        var index = builder.Build(out _);

        index.Count.Should().Be(names.Length);
        foreach (string name in names)
        {
            int handle = index.Probe(NameIndex.FingerprintOf(name), name);
            handle.Should().BeGreaterThanOrEqualTo(0, name);
            index.IsBlocked(handle).Should().BeTrue();
            index.BlockSource(handle).Should().Be(1);
            index.NameOf(handle).Should().Be(name);
        }
    }

    [Fact]
    public void Build_RulesBlocksAndExceptions_KeptPerName()
    {
        var builder = new NameIndex.Builder(3);
        builder.Rules(builder.GetOrAdd("a.example.com")).AllowExact = 7;
        builder.MarkBlocked(builder.GetOrAdd("b.example.com"), 2);
        builder.MarkBlocked(builder.GetOrAdd("b.example.com"), 3);
        builder.MarkException(builder.GetOrAdd("c.example.com"));
        var index = builder.Build(out _);

        int a = index.Probe(NameIndex.FingerprintOf("a.example.com"), "a.example.com");
        int b = index.Probe(NameIndex.FingerprintOf("b.example.com"), "b.example.com");
        int c = index.Probe(NameIndex.FingerprintOf("c.example.com"), "c.example.com");
        index.Rules(a).AllowExact.Should().Be(7);
        index.IsBlocked(a).Should().BeFalse();
        index.IsBlocked(b).Should().BeTrue();
        index.BlockSource(b).Should().Be(2, "the first source to list a name is kept");
        index.Rules(b).AllowExact.Should().Be(-1);
        index.IsException(c).Should().BeTrue();
        index.IsBlocked(c).Should().BeFalse();
    }

    [Fact]
    public void Build_RuleCombinations_ReadBackExactly()
    {
        // A single allow rule is kept in the name's slot, anything else in the rule-reference table: every combination
        // reads back as written, including rule numbers at the edge of what a slot holds.
        var cases = new List<(string Name, NameIndex.RuleRef Rules)>();
        int[] numbers = [0, 1, 12_345, (1 << 28) - 1, 1 << 28, int.MaxValue];
        int n = 0;
        foreach (int number in numbers)
        {
            for (int shape = 0; shape < 16; shape++)
            {
                var rules = NameIndex.RuleRef.None;
                if ((shape & 1) != 0)
                {
                    rules.AllowExact = number;
                }

                if ((shape & 2) != 0)
                {
                    rules.AllowWildcard = number ^ 1;
                }

                if ((shape & 4) != 0)
                {
                    rules.AllowSubtree = number ^ 2;
                }

                if ((shape & 8) != 0)
                {
                    rules.ApprovalHead = number ^ 3;
                }

                cases.Add(($"n{n++}.example.com", rules));
            }
        }

        var builder = new NameIndex.Builder(cases.Count);
        foreach (var (name, rules) in cases)
        {
            int handle = builder.GetOrAdd(name);
            if (rules.AllowExact >= 0 || rules.AllowWildcard >= 0 || rules.AllowSubtree >= 0 || rules.ApprovalHead >= 0)
            {
                builder.Rules(handle) = rules;
            }
        }

        var index = builder.Build(out _);

        foreach (var (name, rules) in cases)
        {
            var read = index.Rules(index.Probe(NameIndex.FingerprintOf(name), name));
            read.AllowExact.Should().Be(rules.AllowExact, name);
            read.AllowWildcard.Should().Be(rules.AllowWildcard, name);
            read.AllowSubtree.Should().Be(rules.AllowSubtree, name);
            read.ApprovalHead.Should().Be(rules.ApprovalHead, name);
        }

        // Only the names that cannot keep their rule in the slot (no single allow rule below 2^28, or an approval) take
        // a 16-byte entry of the rule-reference table; the names are short, so there are no tails.
        int tableEntries = cases.Count(c => c.Rules.ApprovalHead >= 0
            || new[] { c.Rules.AllowExact, c.Rules.AllowWildcard, c.Rules.AllowSubtree }.Count(r => r >= 0) != 1
            || Math.Max(c.Rules.AllowExact, Math.Max(c.Rules.AllowWildcard, c.Rules.AllowSubtree)) >= 1 << 28);
        tableEntries -= cases.Count(c => c.Rules.AllowExact < 0 && c.Rules.AllowWildcard < 0 && c.Rules.AllowSubtree < 0 && c.Rules.ApprovalHead < 0);
        index.SizeInBytes.Should().Be((index.HandleCapacity * 32L) + (16L * tableEntries));
    }

    [Fact]
    public void Build_LargeSet_IndexSmallerThanTheNamesAsStrings()
    {
        // 100,000 names: the table is sized for the names (load about 0.8), not rounded up to a power of two, and the
        // filter takes about 9 bits per name.
        string[] names = [.. Enumerable.Range(0, 100_000).Select(i => $"n{i:x}.example.com")];
        var index = Build(names);

        index.HandleCapacity.Should().BeLessThan(names.Length * 13 / 10);
        index.SizeInBytes.Should().BeLessThan(names.Length * 45L, "32-byte slots at a load of about 0.8 and the rule references (the filter is the compiled policy's)");
    }
}

public class BlocklistFeedParsingTests
{
    [Fact]
    public void Parse_MixedFormats_EnumeratesCanonicalNamesInOrder()
    {
        string text = "# comment\r\n! abp comment\nExample.COM\r\n0.0.0.0 ads.example.net tracker.example.org # trailing\n||abp.example.io^\n*.wild.example.de\nnot a host\n\n";
        var feed = BlocklistFeed.Parse("f", Encoding.UTF8.GetBytes(text), 100);

        var names = new List<string>();
        foreach (var name in feed)
        {
            names.Add(Encoding.ASCII.GetString(name));
        }

        names.Should().Equal("example.com", "ads.example.net", "tracker.example.org", "abp.example.io", "wild.example.de");
        feed.Count.Should().Be(5);
        feed.Skipped.Should().Be(1);
        feed.NameBytes.Should().Be(names.Sum(n => n.Length));
    }

    [Fact]
    public void Parse_InternationalNamesLongerInPunycode_BufferGrows()
    {
        // Each UTF-8 line (6 bytes with its line feed) becomes an 11-byte punycode name: the output outgrows the input.
        string text = string.Concat(Enumerable.Range(0, 50).Select(i => $"ü{i % 10}.de\n"));
        var feed = BlocklistFeed.Parse("f", Encoding.UTF8.GetBytes(text), 100);

        var names = new List<string>();
        foreach (var name in feed)
        {
            names.Add(Encoding.ASCII.GetString(name));
        }

        names.Should().HaveCount(50);
        names.Should().OnlyContain(n => n.StartsWith("xn--", StringComparison.Ordinal) && n.EndsWith(".de", StringComparison.Ordinal));
        feed.Count.Should().Be(50);
    }

    [Fact]
    public void Parse_MoreThanTheLimit_Throws()
    {
        var act = () => BlocklistFeed.Parse("f", "a.example.com\nb.example.com\nc.example.com\n"u8, 2);

        act.Should().Throw<InvalidDataException>();
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
    [InlineData("a.b.c.d.e.bad.example.com", EgressReason.Blocklisted)]
    [InlineData("a.b.c.d.e.f.g.bad.example.com", EgressReason.Blocklisted)]
    [InlineData("a.b.c.d.e.f.g.h.bad.example.com", EgressReason.Blocklisted)]
    [InlineData("a.b.c.d.e.f.g.h.i.exact.example.net", EgressReason.Allowlisted)]
    public void Evaluate_ManyLabels_SameResultAcrossSuffixBatches(string host, EgressReason reason)
    {
        var policy = EgressTestHelpers.Load(EgressTestHelpers.Doc("""{"host":"*.example.com"},{"host":"a.b.c.d.e.f.g.h.i.exact.example.net"}""", "\"blocklist\":{\"domains\":[\"bad.example.com\"]}"));

        policy.Evaluate(host, 443).Reason.Should().Be(reason);
        policy.Evaluate(EgressTestHelpers.DnsTarget(host, 443)).Reason.Should().Be(reason);
    }
}
