using System.Text;
using Kars.Policy.Egress;
using static Kars.Policy.Tests.Egress.EgressTestHelpers;

namespace Kars.Policy.Tests.Egress;

/// <summary>
/// <see cref="EgressPolicySnapshot.Evaluate(string, int, string?)"/> decides a name that is already canonical in the
/// same walk that checks it (one vectorised pass for names of up to 64 characters, eight characters a step with an
/// overlapping last step). Anything else must reach the full parser. These tests put a non-canonical character at
/// every position of names of every length around the vector and 64-character boundaries.
/// </summary>
public class CanonicalNameFastPathTests
{
    private static readonly EgressPolicySnapshot Snapshot =
        EgressPolicySnapshot.Create(Encoding.UTF8.GetBytes(Doc("""{"host":"*.example.com"}""")));

    // Characters just outside each accepted range, and 16-bit characters whose low byte is an accepted character (a
    // byte-wise comparison would let them through). The non-ASCII ones are refused by UTS-46 or map to ASCII, so no
    // name here ends up in the process-wide cache of validated punycode names (bounded; other tests rely on its room).
    private static readonly char[] NotCanonical =
        ['A', 'Z', '`', '{', '/', ':', ',', '^', ' ', '\0', '%', '*', '@', '~', '\u202e', '\u202d', '\u2061', '\ud830', '\ue061', '\ue07a', '\uff0e'];

    public static TheoryData<int> PrefixLengths()
    {
        var data = new TheoryData<int>();
        for (int n = 1; n <= 60; n++)
        {
            data.Add(n);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(PrefixLengths))]
    public void UpperCaseAtAnyPosition_IsParsedAndLowerCased_NotLookedUpAsGiven(int prefix)
    {
        string canonical = new string('a', prefix) + ".example.com";
        for (int p = 0; p < canonical.Length; p++)
        {
            if (canonical[p] == '.')
            {
                continue;
            }

            string host = string.Concat(canonical.AsSpan(0, p), char.ToUpperInvariant(canonical[p]).ToString(), canonical.AsSpan(p + 1));

            var decision = Snapshot.Evaluate(host, 443, null);

            decision.Reason.Should().Be(EgressReason.Allowlisted, "{0} is {1} in canonical form", host, canonical);
            decision.Target.Host.Should().Be(canonical);
        }
    }

    [Theory]
    [MemberData(nameof(PrefixLengths))]
    public void NonCanonicalCharacterAtAnyPosition_NeverAllowsTheNameAsGiven(int prefix)
    {
        string canonical = new string('b', prefix) + ".example.com";
        foreach (char bad in NotCanonical)
        {
            for (int p = 0; p < canonical.Length; p++)
            {
                string host = string.Concat(canonical.AsSpan(0, p), bad.ToString(), canonical.AsSpan(p + 1));

                var decision = Snapshot.Evaluate(host, 443, null);

                if (decision.IsAllowed)
                {
                    decision.Target.Host.Should().MatchRegex("^[a-z0-9._-]+$", "U+{0:X4} at {1} of {2} must be mapped or refused", (int)bad, p, host);
                }
            }
        }
    }

    [Theory]
    [InlineData(".x.example.com", EgressReason.InvalidTarget)]
    [InlineData("x..example.com", EgressReason.InvalidTarget)]
    [InlineData("abcdefg..example.com", EgressReason.InvalidTarget)]
    [InlineData("127.0.0.1", EgressReason.NonPublicAddress)]
    [InlineData("10.1.2.3", EgressReason.NonPublicAddress)]
    [InlineData("2130706433", EgressReason.NonPublicAddress)]
    [InlineData("0x7f.1", EgressReason.NonPublicAddress)]
    [InlineData("a--b.example.com", EgressReason.Allowlisted)]
    [InlineData("a_b-c.example.com", EgressReason.Allowlisted)]
    public void EdgeCases_DecideAsTheFullParserDoes(string host, EgressReason expected)
    {
        Snapshot.Evaluate(host, 443, null).Reason.Should().Be(expected);
    }

    /// <summary>The host-and-port path takes the labels the target factory found: a name with two hyphens that are not
    /// an <c>xn--</c> label, or with <c>xn--</c> inside a label, is decided without the parser; one with an <c>xn--</c>
    /// label still goes to the parser (punycode); names over 64 characters search for their dots. Each must decide
    /// exactly as the parser's path does (the URL overload always parses).</summary>
    [Theory]
    [InlineData("b--xn--a.example.com")]
    [InlineData("a--b.example.com")]
    [InlineData("xn-a.example.com")]
    [InlineData("xn--mnchen-3ya.example.com")]
    [InlineData("a.xn--zz.example.com")]
    [InlineData("x.example.1com")]
    [InlineData("api.example.com")]
    [InlineData("example.com")]
    [InlineData("notlisted.example.org")]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.b--xn--c.example.com")]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.xn--mnchen-3ya.example.com")]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.xn--zz.example.com")]
    [InlineData("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.x.example.com")]
    [InlineData("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.x.example.com")]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.x.example.1com")]
    public void NamesWithHyphensOrLong_DecideAsTheParserDoes(string host)
    {
        // Two snapshots of one document: each has its own decision cache identity, so the URL's decision is the
        // parser's own and not the host-and-port path's, answered from the thread's cache.
        byte[] document = Encoding.UTF8.GetBytes(Doc("""{"host":"*.example.com"},{"host":"api.example.com","ports":[8443]}"""));
        var byHostPolicy = EgressPolicySnapshot.Create(document);
        var byUrlPolicy = EgressPolicySnapshot.Create(document);

        var byHost = byHostPolicy.Evaluate(host, 443, null);
        var byUrl = byUrlPolicy.Evaluate("https://" + host + "/", null);

        byHost.Verdict.Should().Be(byUrl.Verdict, "for {0}", host);
        byHost.Reason.Should().Be(byUrl.Reason, "for {0}", host);
        byHost.Rule.Should().Be(byUrl.Rule, "for {0}", host);
        byHost.Target.Should().Be(byUrl.Target, "for {0}", host);
        byHost.TargetError.Should().Be(byUrl.TargetError, "for {0}", host);
    }

    [Fact]
    public void OneTrailingDot_IsRemovedByTheParser()
    {
        var decision = Snapshot.Evaluate("x.example.com.", 443, null);

        decision.Reason.Should().Be(EgressReason.Allowlisted);
        decision.Target.Host.Should().Be("x.example.com");
    }

    [Theory]
    [InlineData(63, EgressReason.Allowlisted)]
    [InlineData(64, EgressReason.InvalidTarget)]
    public void LabelLength_IsCheckedAtTheSixtyFourCharacterBoundary(int label, EgressReason expected)
    {
        Snapshot.Evaluate(new string('c', label) + ".example.com", 443, null).Reason.Should().Be(expected);
        Snapshot.Evaluate(new string('c', label) + ".example.com", 443, null).Reason.Should().Be(expected, "a cached answer is the same");
    }

    [Fact]
    public void SingleLabelOfSixtyFourCharacters_IsInvalid()
    {
        Snapshot.Evaluate(new string('d', 64), 443, null).Reason.Should().Be(EgressReason.InvalidTarget);
    }
}
