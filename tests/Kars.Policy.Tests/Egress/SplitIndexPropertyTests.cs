using System.Text;
using CsCheck;
using Kars.Policy.Egress;

namespace Kars.Policy.Tests.Egress;

/// <summary>
/// The compiled policy keeps allow rules, exceptions and <c>blocklist.domains</c> in the exactly verified name index and
/// the feeds' names in a fingerprint index that can only deny. These properties check, over random rule sets drawn from
/// a small pool of labels (so names share suffixes, apexes and subdomains collide with rules, blocklist entries and
/// exceptions), that the compiled policy decides exactly like a naive reference model written from the documented
/// decision order, and that adding any name to a feed (which is all a fingerprint collision can do) never turns a
/// decision into anything but a blocklist deny.
/// </summary>
public class SplitIndexPropertyTests
{
    private static readonly string[] Labels = ["a", "b", "www", "api", "cdn1", "abcdefghijklmnopq"];
    private static readonly string[] Tlds = ["com", "net"];
    private static readonly int[] Ports = [443, 8443, 80];

    private static readonly Gen<string> Name =
        Gen.Select(Gen.OneOfConst(Labels).Array[1, 3], Gen.OneOfConst(Tlds), (labels, tld) => string.Join('.', labels) + "." + tld);

    private static readonly Gen<string> BlockName =
        Gen.Select(Gen.OneOfConst(Labels).Array[0, 2], Gen.OneOfConst(Tlds), (labels, tld) => labels.Length == 0 ? tld : string.Join('.', labels) + "." + tld);

    private static readonly Gen<PolicyCase> Case =
        Gen.Select(
            Gen.Select(Name, Gen.OneOfConst(443, 8443)).Array[0, 6],
            Gen.Select(Name, Gen.OneOfConst(443, 8443)).Array[0, 4],
            BlockName.Array[0, 3],
            BlockName.Array[0, 6],
            BlockName.Array[0, 6],
            Name.Array[0, 3],
            (exact, wildcard, domains, feed1, feed2, exceptions) => new PolicyCase(
                [.. exact.DistinctBy(r => r.Item1)],
                [.. wildcard.DistinctBy(r => r.Item1)],
                [.. domains.Distinct()],
                feed1,
                feed2,
                [.. exceptions.Distinct()]));

    private static readonly Gen<(string Host, int Port)[]> Queries =
        Gen.Select(Gen.OneOf(Name, Gen.Select(Gen.OneOfConst(Labels), Name, (l, n) => l + "." + n)), Gen.OneOfConst(Ports)).Array[24, 24];

    [Fact]
    public void Evaluate_RandomPolicies_DecidesLikeTheReferenceModel()
    {
        Gen.Select(Case, Queries).Sample(
            (policyCase, queries) =>
            {
                var policy = policyCase.Load();
                var model = new ReferenceModel(policyCase);
                foreach (var (host, port) in queries.Concat(policyCase.AllNames().Select(n => (n, 443))))
                {
                    var expected = model.Decide(host, port);
                    var actual = policy.Evaluate(host, port);
                    actual.Reason.Should().Be(expected.Reason, "{0}:{1} under {2}", host, port, policyCase);
                    actual.Rule.Should().Be(expected.Rule, "{0}:{1} under {2}", host, port, policyCase);
                    actual.IsAllowed.Should().Be(expected.Reason == EgressReason.Allowlisted);
                }
            },
            iter: 400);
    }

    [Fact]
    public void Evaluate_AnyNameAddedToAFeed_OnlyEverAddsBlocklistDenies()
    {
        // The fingerprint index answers "listed" for a name whose fingerprint equals a feed entry's. Such a collision is
        // indistinguishable from the name itself being in the feed, so this is the property it must have: listing one
        // more name changes a decision only into Deny/Blocklisted, never into an allow or another reason.
        Gen.Select(Case, BlockName, Queries).Sample(
            (policyCase, extra, queries) =>
            {
                var before = policyCase.Load();
                var after = (policyCase with { Feed2 = [.. policyCase.Feed2, extra] }).Load();
                foreach (var (host, port) in queries)
                {
                    var b = before.Evaluate(host, port);
                    var a = after.Evaluate(host, port);
                    if (a.Reason != b.Reason)
                    {
                        a.Reason.Should().Be(EgressReason.Blocklisted, "{0}:{1} with {2} added under {3}", host, port, extra, policyCase);
                        a.IsAllowed.Should().BeFalse();
                    }

                    if (b.Reason == EgressReason.Blocklisted)
                    {
                        a.Reason.Should().Be(EgressReason.Blocklisted);
                    }
                }
            },
            iter: 300);
    }

    [Fact]
    public void BlocklistIndex_ForeignFingerprint_ListsTheOtherNameAndNothingElse()
    {
        // A collision simulated directly: the index holds fingerprints only, so a name whose fingerprint was added is
        // listed whatever its characters; that is why the index is only ever consulted to deny.
        var builder = new BlocklistIndex.Builder(4);
        builder.Add("evil.example", 1).Should().BeTrue();
        builder.Add(NameIndex.FingerprintOf("innocent.example"), 2).Should().BeTrue();
        builder.Add("evil.example", 3).Should().BeFalse("the first source to list a name is kept");
        var index = builder.Build();

        index.Contains("evil.example").Should().BeTrue();
        index.Contains("innocent.example").Should().BeTrue();
        index.Contains("other.example").Should().BeFalse();
        index.Count.Should().Be(2);
        int slot = index.Probe(NameIndex.FingerprintOf("evil.example"));
        index.SourceOf(slot).Should().Be(1);
        index.Text(slot, "evil.example", ["blocklist", "blocklist f1", "blocklist f2", "blocklist f3"]).Should().Be("blocklist f1: evil.example");
    }

    [Fact]
    public void BlocklistIndex_ManyNames_EveryNameListedAndTheTableGrows()
    {
        var builder = new BlocklistIndex.Builder(2);
        string[] names = [.. Enumerable.Range(0, 20_000).Select(i => $"n{i}.feed{i % 11}.example")];
        foreach (string name in names)
        {
            builder.Add(name, 1);
        }

        var index = builder.Build();
        index.Count.Should().Be(names.Length);
        names.Should().OnlyContain(n => index.Contains(n));
        Enumerable.Range(20_000, 20_000).Select(i => $"n{i}.feed{i % 11}.example").Should().NotContain(n => index.Contains(n));
        index.SizeInBytes.Should().BeLessThan(names.Length * 30L, "8-byte keys, 4-byte sources and a text reference per slot at a load of about 0.8 (the filter is the compiled policy's)");
    }

    /// <summary>A random native policy: exact and wildcard allow rules with ports, <c>blocklist.domains</c>, two feeds and
    /// blocklist exceptions.</summary>
    private sealed record PolicyCase(
        (string Name, int Port)[] Exact,
        (string Name, int Port)[] Wildcard,
        string[] Domains,
        string[] Feed1,
        string[] Feed2,
        string[] Exceptions)
    {
        public EgressPolicy Load()
        {
            var allow = Exact.Select(r => $$"""{"host":"{{r.Name}}","ports":[{{r.Port}}]}""")
                .Concat(Wildcard.Select(r => $$"""{"host":"*.{{r.Name}}","ports":[{{r.Port}}]}"""));
            string json = $$"""
                {"schemaVersion":1,"allow":[{{string.Join(',', allow)}}],
                 "blocklist":{"domains":[{{string.Join(',', Domains.Select(d => $"\"{d}\""))}}],"files":["f1.txt","f2.txt"]},
                 "blocklistExceptions":[{{string.Join(',', Exceptions.Select(d => $"\"{d}\""))}}]}
                """;
            var policy = EgressTestHelpers.Load(json, null, null, ("/policies/f1.txt", Lines(Feed1)), ("/policies/f2.txt", Lines(Feed2)));
            policy.IsLoaded.Should().BeTrue(string.Join("; ", policy.LastLoadProblems.Select(p => p.ToString())));
            return policy;
        }

        public IEnumerable<string> AllNames() =>
            Exact.Select(r => r.Name).Concat(Wildcard.Select(r => r.Name)).Concat(Domains).Concat(Feed1).Concat(Feed2).Concat(Exceptions)
                .Where(n => n.Contains('.', StringComparison.Ordinal));

        public override string ToString() =>
            $"exact [{string.Join(' ', Exact)}] wildcard [{string.Join(' ', Wildcard)}] domains [{string.Join(' ', Domains)}] "
            + $"f1 [{string.Join(' ', Feed1)}] f2 [{string.Join(' ', Feed2)}] exceptions [{string.Join(' ', Exceptions)}]";

        private static string Lines(string[] names)
        {
            var text = new StringBuilder("# feed\n");
            foreach (string name in names)
            {
                text.Append(name).Append('\n');
            }

            return text.ToString();
        }
    }

    /// <summary>The documented decision order (docs/egress.md, Strict mode, DNS names, no approvals), naively: every
    /// suffix at a label boundary compared as a string.</summary>
    private sealed class ReferenceModel(PolicyCase policy)
    {
        public (EgressReason Reason, string? Rule) Decide(string host, int port)
        {
            // Suffixes from the shortest (the top-level label) to the name itself.
            var suffixes = new List<string>();
            for (int i = host.Length - 1; i >= 0; i--)
            {
                if (i == 0 || host[i - 1] == '.')
                {
                    suffixes.Add(host[i..]);
                }
            }

            if (!policy.Exceptions.Contains(host))
            {
                foreach (string suffix in suffixes)
                {
                    if (policy.Domains.Contains(suffix))
                    {
                        return (EgressReason.Blocklisted, $"blocklist: {suffix}");
                    }

                    // A feed skips single labels (documented); blocklist.domains keeps them.
                    bool feedable = suffix.Contains('.', StringComparison.Ordinal);
                    if (feedable && policy.Feed1.Contains(suffix))
                    {
                        return (EgressReason.Blocklisted, $"blocklist f1.txt: {suffix}");
                    }

                    if (feedable && policy.Feed2.Contains(suffix))
                    {
                        return (EgressReason.Blocklisted, $"blocklist f2.txt: {suffix}");
                    }
                }
            }

            // The most specific rule wins: later (longer) suffixes replace earlier ones.
            string? allow = null;
            string? otherPort = null;
            foreach (string suffix in suffixes)
            {
                foreach (var (name, rulePort) in suffix == host ? policy.Exact : policy.Wildcard)
                {
                    if (name == suffix)
                    {
                        string text = suffix == host ? name : "*." + name;
                        if (rulePort == port)
                        {
                            allow = text;
                        }
                        else
                        {
                            otherPort = text;
                        }
                    }
                }
            }

            return allow is not null ? (EgressReason.Allowlisted, allow)
                : otherPort is not null ? (EgressReason.PortNotAllowed, otherPort)
                : (EgressReason.NotAllowlisted, null);
        }
    }
}
