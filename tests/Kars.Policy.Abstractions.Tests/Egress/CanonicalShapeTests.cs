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
    [InlineData("a", true, false)]
    [InlineData("example.com", true, false)]
    [InlineData("a.b", true, false)]
    [InlineData(".example.com", false, false)]
    [InlineData("example.com.", false, false)]
    [InlineData("example..com", false, false)]
    [InlineData("example.123", false, false)]
    [InlineData("example.0x1f", false, false)]
    [InlineData("example.0x", false, false)]
    [InlineData("example.1com", true, false)]
    [InlineData("EXAMPLE.com", false, false)]
    [InlineData("xn--bcher-kva.example", true, true)]
    [InlineData("a--b.example", true, false)]
    [InlineData("exa mple.com", false, false)]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", true, false)]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false, false)]
    [InlineData("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.a", true, false)]
    [InlineData("a.xn--zz.example", true, true)]
    [InlineData("xn--a", true, true)]
    [InlineData("b--xn--a.example", true, false)]
    [InlineData("xn-a.example", true, false)]
    public void HasCanonicalShape_Examples(string name, bool expected, bool ace)
    {
        CanonicalDnsName.HasCanonicalShape(name, out bool hasAce).Should().Be(expected);
        ReferenceShape(name, out bool referenceAce).Should().Be(expected, "the reference must agree with the example");
        if (expected)
        {
            hasAce.Should().Be(ace);
            referenceAce.Should().Be(ace);
        }
    }

    [Fact]
    public void HasCanonicalShape_RandomNames_AgreesWithTheReference()
    {
        // Names built from labels of 0-64 characters (so empty and over-long labels and names around 64 characters are
        // common), over an alphabet that makes every rule fire: hyphens and "xn" (ACE prefixes), digits and "x"
        // (numeric last labels, 0x...); then, one time in four, one character replaced by a bad one (upper case, space,
        // a 16-bit character). Plus plain random strings.
        var label = Gen.OneOf(Gen.String[Gen.Char["ab-xn09"], 0, 8], Gen.String[Gen.Char["ab-xn09"], 0, 64], Gen.OneOfConst("xn--a", "0x1f", "123", "0x", "a--b"));
        var names = Gen.Select(label.Array[1, 6], Gen.Int[0, 3], Gen.Int[0, 200], Gen.OneOfConst('Z', ' ', '\u012e', '/'), (labels, mutate, at, bad) =>
        {
            string name = string.Join('.', labels);
            if (mutate == 0 && name.Length > 0)
            {
                char[] chars = name.ToCharArray();
                chars[at % chars.Length] = bad;
                name = new string(chars);
            }

            return name;
        });
        Gen.OneOf(names, Gen.String[Gen.Char["a.-x0n9_ZF "], 0, 80]).Sample(
            name =>
            {
                bool expected = ReferenceShape(name, out bool expectedAce);
                CanonicalDnsName.HasCanonicalShape(name, out bool ace).Should().Be(expected, "for \"{0}\"", name);
                CanonicalDnsName.HasCanonicalShape(name, out bool ace2, out ulong dots).Should().Be(expected, "for \"{0}\"", name);
                dots.Should().Be(expected ? ReferenceDots(name) : 0UL, "the dot mask of \"{0}\"", name);
                if (expected)
                {
                    ace.Should().Be(expectedAce, "for \"{0}\"", name);
                    ace2.Should().Be(expectedAce, "for \"{0}\"", name);
                }
            },
            iter: 20_000);
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

    /// <summary>The dot mask of a name of at most 64 characters, one character at a time; 0 for a longer name.</summary>
    private static ulong ReferenceDots(string name)
    {
        ulong dots = 0;
        for (int i = 0; name.Length <= 64 && i < name.Length; i++)
        {
            if (name[i] == '.')
            {
                dots |= 1UL << i;
            }
        }

        return dots;
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
