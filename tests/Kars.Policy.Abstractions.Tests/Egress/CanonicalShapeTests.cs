using CsCheck;
using Kars.Policy.Egress;

namespace Kars.Policy.Abstractions.Tests.Egress;

/// <summary>
/// <c>CanonicalDnsName.HasCanonicalShape</c> (the shape check behind <see cref="EgressTarget.TryCreateDnsName"/> and the
/// engine's canonical-name fast path) decides names of up to 64 characters from the dot and hyphen masks of one
/// vectorised pass. These tests hold it to a reference written from the documented rules with string splitting.
/// </summary>
public class CanonicalShapeTests
{
    [Theory]
    [InlineData("a", true)]
    [InlineData("example.com", true)]
    [InlineData("a.b", true)]
    [InlineData(".example.com", false)]
    [InlineData("example.com.", false)]
    [InlineData("example..com", false)]
    [InlineData("example.123", false)]
    [InlineData("example.0x1f", false)]
    [InlineData("example.0x", false)]
    [InlineData("example.1com", true)]
    [InlineData("EXAMPLE.com", false)]
    [InlineData("xn--bcher-kva.example", true)]
    [InlineData("a--b.example", true)]
    [InlineData("exa mple.com", false)]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", true)]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false)]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.a", true)]
    public void HasCanonicalShape_Examples(string name, bool expected)
    {
        CanonicalDnsName.HasCanonicalShape(name, out _).Should().Be(expected);
        ReferenceShape(name, out _).Should().Be(expected, "the reference must agree with the example");
    }

    [Fact]
    public void HasCanonicalShape_RandomNames_AgreesWithTheReference()
    {
        // An alphabet that makes every rule fire often: dots (empty labels), hyphens and "xn" (ACE prefixes), digits and
        // "x" (numeric last labels, 0x...), an upper-case letter and a space (bad characters), lengths around 64.
        Gen.OneOf(Gen.String[Gen.Char["a.-x0n9_ZF "], 0, 80], Gen.String[Gen.Char["ab.-"], 60, 68]).Sample(name =>
        {
            bool expected = ReferenceShape(name, out bool expectedAce);
            CanonicalDnsName.HasCanonicalShape(name, out bool ace).Should().Be(expected, "for \"{0}\"", name);
            if (expected)
            {
                ace.Should().Be(expectedAce, "for \"{0}\"", name);
            }
        });
    }

    [Fact]
    public void HasCanonicalShape_OneBadCharacterAtEveryPosition_Refused()
    {
        // A character outside [a-z0-9_.-] anywhere in a name of 1-70 characters, including 16-bit characters whose low
        // byte is an accepted one (the vector pass compares whole 16-bit lanes).
        char[] bad = ['A', 'Z', '/', ':', '`', '{', '\u0161', '\u012e', '\u0100', '\u0130', ' '];
        for (int length = 1; length <= 70; length++)
        {
            for (int at = 0; at < length; at++)
            {
                foreach (char c in bad)
                {
                    char[] chars = [.. new string('a', length)];
                    chars[at] = c;
                    CanonicalDnsName.HasCanonicalShape(new string(chars), out _).Should().BeFalse("'{0}' at {1} of {2}", c, at, length);
                }
            }
        }
    }

    private static bool ReferenceShape(string name, out bool hasAce)
    {
        hasAce = false;
        if (name.Length is 0 or > 253 || name.Any(c => !(c is (>= 'a' and <= 'z') or (>= '0' and <= '9') or '-' or '_' or '.')))
        {
            return false;
        }

        string[] labels = name.Split('.');
        if (labels.Any(l => l.Length is 0 or > 63))
        {
            return false;
        }

        hasAce = labels.Any(l => l.StartsWith("xn--", StringComparison.Ordinal));
        string last = labels[^1];
        bool numeric = last.All(char.IsAsciiDigit)
            || (last.Length >= 2 && last[0] == '0' && last[1] == 'x' && last[2..].All(char.IsAsciiHexDigit));
        return !numeric;
    }
}
