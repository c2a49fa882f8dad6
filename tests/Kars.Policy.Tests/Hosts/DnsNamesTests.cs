using Kars.Policy.Egress;
using Kars.Policy.Hosts;
using Kars.Policy.Hosts.Idna;

namespace Kars.Policy.Tests.Hosts;

public sealed class DnsNamesTests
{
    [Theory]
    [InlineData("example.com")]
    [InlineData("a")]
    [InlineData("localhost")]
    [InlineData("_dmarc.example.com")]
    [InlineData("a-b.c-d")]
    [InlineData("-a.com")]
    [InlineData("123.example")]
    [InlineData("0x7f.example")]
    [InlineData("foo.0xg")]
    [InlineData("foo.1a")]
    public void IsCanonical_CanonicalName_ReturnsTrue(string name)
    {
        DnsNames.IsCanonical(name).Should().BeTrue();
    }

    [Theory]
    [InlineData("")]
    [InlineData("Example.com")]
    [InlineData("EXAMPLE.COM")]
    [InlineData("example.com.")]
    [InlineData(".example.com")]
    [InlineData("example..com")]
    [InlineData("exa mple.com")]
    [InlineData("exam%70le.com")]
    [InlineData("ex\u00E9mple.com")]
    [InlineData("127.0.0.1")]
    [InlineData("foo.123")]
    [InlineData("foo.0x1f")]
    [InlineData("foo.0x")]
    [InlineData("xn--abc.com")]
    [InlineData("*.example.com")]
    [InlineData("example.com:443")]
    public void IsCanonical_NonCanonicalName_ReturnsFalse(string name)
    {
        DnsNames.IsCanonical(name).Should().BeFalse();
    }

    [Fact]
    public void IsCanonical_LengthLimits_AreEnforced()
    {
        string label63 = new('a', 63);
        string name253 = $"{label63}.{label63}.{label63}.{new string('b', 61)}";

        DnsNames.IsCanonical(label63).Should().BeTrue();
        DnsNames.IsCanonical(new string('a', 64)).Should().BeFalse();
        DnsNames.IsCanonical(name253).Should().BeTrue();
        DnsNames.IsCanonical(name253 + "b").Should().BeFalse();
    }

    [Fact]
    public void IsCanonical_PunycodeName_IsTrueOnlyAfterValidation()
    {
        // A name no other test uses, so the validated-punycode cache cannot already hold it.
        const string name = "xn--bcher-kva.isCanonical-test.example";
        string lower = name.ToLowerInvariant();

        DnsNames.IsCanonical(lower).Should().BeFalse("an xn-- label is validated once on the slow path");
        DnsNames.TryNormalize(name, out string? canonical, out var error).Should().BeTrue();
        error.Should().Be(EgressTargetError.None);
        canonical.Should().Be(lower);
        DnsNames.IsCanonical(lower).Should().BeTrue();
    }

    [Fact]
    public void IsCanonical_InvalidPunycode_StaysFalseAfterNormalisationAttempt()
    {
        DnsNames.TryNormalize("xn--zz.isCanonical-test.example", out _, out var error).Should().BeFalse();

        error.Should().Be(EgressTargetError.InvalidHostName);
        DnsNames.IsCanonical("xn--zz.iscanonical-test.example").Should().BeFalse();
    }

    [Theory]
    [InlineData("Example.COM", "example.com")]
    [InlineData("example.com.", "example.com")]
    [InlineData("\uFF45\uFF58\uFF41\uFF4D\uFF50\uFF4C\uFF45.com", "example.com")]
    [InlineData("example\u3002com", "example.com")]
    [InlineData("\u0430pple.com", "xn--pple-43d.com")]
    [InlineData("fa\u00DF.de", "xn--fa-hia.de")]
    [InlineData("_Dmarc.Example.com", "_dmarc.example.com")]
    public void TryNormalize_Span_ReturnsCanonicalForm(string input, string expected)
    {
        DnsNames.TryNormalize(input.AsSpan(), out string? canonical, out var error).Should().BeTrue();

        error.Should().Be(EgressTargetError.None);
        canonical.Should().Be(expected);
        DnsNames.IsCanonical(canonical).Should().BeTrue();
    }

    [Theory]
    [InlineData("", EgressTargetError.Empty)]
    [InlineData("example.com..", EgressTargetError.InvalidHostName)]
    [InlineData("127.0.0.1", EgressTargetError.InvalidHostName)]
    [InlineData("0x7f.1", EgressTargetError.InvalidHostName)]
    [InlineData("\uFF11\uFF12\uFF17.\uFF10.\uFF10.\uFF11", EgressTargetError.InvalidHostName)]
    [InlineData("a b.com", EgressTargetError.AmbiguousCharacter)]
    [InlineData("a\\b.com", EgressTargetError.AmbiguousCharacter)]
    [InlineData("a@b.com", EgressTargetError.AmbiguousCharacter)]
    [InlineData("a%62.com", EgressTargetError.AmbiguousCharacter)]
    [InlineData("a:b.com", EgressTargetError.InvalidHostName)]
    [InlineData("a/b.com", EgressTargetError.InvalidHostName)]
    [InlineData("a/b c.com", EgressTargetError.AmbiguousCharacter)]
    public void TryNormalize_InvalidName_ReturnsError(string input, EgressTargetError expected)
    {
        DnsNames.TryNormalize(input.AsSpan(), out string? canonical, out var error).Should().BeFalse();

        error.Should().Be(expected);
        canonical.Should().BeNull();
    }

    [Fact]
    public void TryNormalize_CanonicalString_ReturnsSameInstance()
    {
        string name = string.Concat("api.", "example.com");

        DnsNames.TryNormalize(name, out string? canonical, out _).Should().BeTrue();

        canonical.Should().BeSameAs(name);
    }

    [Fact]
    public void TryNormalize_NullString_ReturnsEmpty()
    {
        DnsNames.TryNormalize((string?)null, out _, out var error).Should().BeFalse();
        error.Should().Be(EgressTargetError.Empty);
    }

    [Fact]
    public void TryNormalize_ManyThreads_GiveTheSameCanonicalForms()
    {
        string[] inputs = ["\u0430pple.com", "M\u00FCnchen.example", "fa\u00DF.de", "Example.COM.", "xn--ls8h.la"];
        string[] expected = ["xn--pple-43d.com", "xn--mnchen-3ya.example", "xn--fa-hia.de", "example.com", "xn--ls8h.la"];
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();

        Parallel.For(0, 4_000, i =>
        {
            int k = i % inputs.Length;
            if (!DnsNames.TryNormalize(inputs[k], out string? canonical, out _) || canonical != expected[k])
            {
                failures.Add($"{inputs[k]} -> {canonical}");
            }
        });

        failures.Should().BeEmpty();
        expected.Should().OnlyContain(e => DnsNames.IsCanonical(e));
    }

    [Theory]
    [InlineData("1", true)]
    [InlineData("a.1", true)]
    [InlineData("a.0x", true)]
    [InlineData("a.0X1F", true)]
    [InlineData("a.0x1g", false)]
    [InlineData("a.1a", false)]
    [InlineData("1.a", false)]
    [InlineData("a.", false)]
    public void EndsInNumber_LastLabel_FollowsWhatwgRule(string name, bool expected)
    {
        DnsNames.EndsInNumber(name).Should().Be(expected);
    }

    [Fact]
    public void BundledProcessor_Behaviour_IsWhatTheRulesAssume()
    {
        // Pins what the bundled UTS-46 processor does; the documented rules (docs/hosts.md) rely on it. The same on
        // every machine and in globalization-invariant mode (it uses no ICU).
        Ascii("K.com").Should().Be("k.com", "the processor lower-cases ASCII, as UTS-46 maps it");
        Ascii("example\u3002com").Should().Be("example.com");
        Ascii("\uFF45\uFF58\uFF41\uFF4D\uFF50\uFF4C\uFF45.com").Should().Be("example.com");
        Ascii("fa\u00DF.de").Should().Be("xn--fa-hia.de", "non-transitional processing keeps \u00DF");
        Ascii("STRA\u1E9EE.example").Should().Be("xn--strae-oqa.example", "UTS-46 15.1+ maps \u1E9E to \u00DF, not ss");
        Ascii("_dmarc.example.com").Should().Be("_dmarc.example.com");
        Ascii("a b.com").Should().Be("a b.com", "with UseStd3AsciiRules off, ASCII is not checked: DnsNames checks it");
        Ascii("\uFF11\uFF12\uFF17.\uFF10.\uFF10.\uFF11").Should().Be("127.0.0.1");
        Uts46.ToAscii("ex\u00ADample.com", new char[64], out _).Should().Be(Uts46Errors.Ignored, "deleted by UTS-46, reported so DnsNames can reject it");
        Uts46.ToAscii("xn--abc.com", new char[64], out _).Should().NotBe(Uts46Errors.None, "xn--abc decodes to an unassigned code point");

        static string Ascii(string input)
        {
            char[] buffer = new char[256];
            Uts46.ToAscii(input, buffer, out int written).Should().Be(Uts46Errors.None);
            return new string(buffer, 0, written);
        }
    }
}
