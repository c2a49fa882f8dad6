using System.Net;
using Kars.Policy.Egress;
using Kars.Policy.Hosts;

namespace Kars.Policy.Tests.Hosts;

public sealed class EgressTargetParserTests
{
    private const EgressTargetKind Dns = EgressTargetKind.DnsName;
    private const EgressTargetKind Ip = EgressTargetKind.IpAddress;

    private static readonly string Label63 = new('a', 63);
    private static readonly string Label64 = new('a', 64);

    // 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 characters.
    private static readonly string Name253 = $"{Label63}.{Label63}.{Label63}.{new string('b', 61)}";
    private static readonly string Name254 = $"{Label63}.{Label63}.{Label63}.{new string('b', 62)}";

    /// <summary>Inputs that <see cref="EgressTargetParser.TryParse"/> accepts, with the canonical host, port and kind.</summary>
    public static TheoryData<string, string, int, EgressTargetKind> Accepted => new()
    {
        // URLs: scheme any case, default ports, userinfo dropped, authority ends at / ? #.
        { "https://example.com/", "example.com", 443, Dns },

        // CheckHyphens is off for every label (docs/hosts.md), as for all-ASCII labels and in WHATWG.
        { "-\u00E9.com", "xn----bga.com", 443, Dns },
        { "http://example.com/", "example.com", 80, Dns },
        { "https://example.com", "example.com", 443, Dns },
        { "HTTPS://EVIL.COM", "evil.com", 443, Dns },
        { "HtTp://Example.COM:8080/path?q=1#frag", "example.com", 8080, Dns },
        { "https://example.com:0443/", "example.com", 443, Dns },
        { "https://example.com?x", "example.com", 443, Dns },
        { "https://example.com#x", "example.com", 443, Dns },
        { "https://good.com@evil.com/", "evil.com", 443, Dns },
        { "https://user:pass@evil.com:8443/", "evil.com", 8443, Dns },
        { "https://@evil.com", "evil.com", 443, Dns },
        { "https://evil.com#@good.com", "evil.com", 443, Dns },
        { "https://evil.com#.good.com", "evil.com", 443, Dns },
        { "https://evil.com?@good.com", "evil.com", 443, Dns },
        { "https://evil.com/@good.com", "evil.com", 443, Dns },
        { "https://evil.com/a@b@c", "evil.com", 443, Dns },
        { "https://evil.com:443@good.com/", "good.com", 443, Dns },
        { "https://evil.com./", "evil.com", 443, Dns },
        { "https://api.example.com/p?q=a%20b", "api.example.com", 443, Dns },
        { "https://\u0430pple.com/", "xn--pple-43d.com", 443, Dns },
        { "http://0x7f.1:8080/", "127.0.0.1", 8080, Ip },
        { "http://[::1]/", "::1", 80, Ip },
        { "https://[2001:db8::1]:8443/x", "2001:db8::1", 8443, Ip },
        { "https://u@[::1]:8443/", "::1", 8443, Ip },

        // Bare hosts and authorities.
        { "example.com", "example.com", 443, Dns },
        { "EVIL.com", "evil.com", 443, Dns },
        { "evil.com.", "evil.com", 443, Dns },
        { "user@evil.com", "evil.com", 443, Dns },
        { "@evil.com", "evil.com", 443, Dns },
        { "example.com:8080", "example.com", 8080, Dns },
        { "example.com:0443", "example.com", 443, Dns },
        { "example.com:00000000443", "example.com", 443, Dns },
        { "example.com:1", "example.com", 1, Dns },
        { "example.com:65535", "example.com", 65535, Dns },
        { "localhost", "localhost", 443, Dns },
        { "_dmarc.example.com", "_dmarc.example.com", 443, Dns },
        { "-a.com", "-a.com", 443, Dns },
        { "a-.com", "a-.com", 443, Dns },
        { "ab--c.com", "ab--c.com", 443, Dns },
        { "127.0.0.1.nip.io", "127.0.0.1.nip.io", 443, Dns },
        { "0x7f.example", "0x7f.example", 443, Dns },
        { "123.example", "123.example", 443, Dns },
        { $"{Label63}.com", $"{Label63}.com", 443, Dns },
        { Name253, Name253, 443, Dns },
        { Name253 + ".", Name253, 443, Dns },
        { Name253.ToUpperInvariant(), Name253, 443, Dns },

        // UTS-46: fullwidth letters and dots, ideographic full stop, Cyrillic, non-transitional ß and ς, case.
        { "\uFF45\uFF58\uFF41\uFF4D\uFF50\uFF4C\uFF45.com", "example.com", 443, Dns },
        { "example\u3002com", "example.com", 443, Dns },
        { "example\uFF0Ecom", "example.com", 443, Dns },
        { "example\uFF61com", "example.com", 443, Dns },
        { "example.com\u3002", "example.com", 443, Dns },
        { "\u0430pple.com", "xn--pple-43d.com", 443, Dns },
        { "\u0410PPLE.COM", "xn--pple-43d.com", 443, Dns },
        { "K\u0430.com", "xn--k-8sb.com", 443, Dns },
        { "fa\u00DF.de", "xn--fa-hia.de", 443, Dns },
        { "\u03C2.com", "xn--3xa.com", 443, Dns },
        { "m\u00FCnchen.de", "xn--mnchen-3ya.de", 443, Dns },
        { "XN--PPLE-43D.COM", "xn--pple-43d.com", 443, Dns },
        { "xn--pple-43d.com", "xn--pple-43d.com", 443, Dns },
        { "\u2168.com", "ix.com", 443, Dns },
        { "\uFB01.com", "fi.com", 443, Dns },
        { "\u0645\u06CC\u200C\u062E\u0648\u0627\u0647\u0645.ir", "xn--mgbn2ecje63gr19l.ir", 443, Dns },

        // IPv4 in every form IPAddress.TryParse (inet_aton) accepts.
        { "127.0.0.1", "127.0.0.1", 443, Ip },
        { "127.1", "127.0.0.1", 443, Ip },
        { "2130706433", "127.0.0.1", 443, Ip },
        { "0x7f.1", "127.0.0.1", 443, Ip },
        { "0X7F.1", "127.0.0.1", 443, Ip },
        { "0x7f000001", "127.0.0.1", 443, Ip },
        { "017700000001", "127.0.0.1", 443, Ip },
        { "012.0.0.1", "10.0.0.1", 443, Ip },
        { "0x7f.0x0.0x0.0x1", "127.0.0.1", 443, Ip },
        { "0xa.0xb.0xc.0xd", "10.11.12.13", 443, Ip },
        { "0377.0377.0377.0377", "255.255.255.255", 443, Ip },
        { "1.2.3", "1.2.0.3", 443, Ip },
        { "1.2.3.04", "1.2.3.4", 443, Ip },
        { "1.16777215", "1.255.255.255", 443, Ip },
        { "4294967295", "255.255.255.255", 443, Ip },
        { "0", "0.0.0.0", 443, Ip },
        { "134744072", "8.8.8.8", 443, Ip },
        { "8.8.8.8:53", "8.8.8.8", 53, Ip },

        // IPv6 in brackets only; IPv4-mapped stays IPv6; canonical text of IPAddress.
        { "[::1]", "::1", 443, Ip },
        { "[::1]:8443", "::1", 8443, Ip },
        { "[0:0:0:0:0:0:0:1]", "::1", 443, Ip },
        { "[2001:DB8::1]", "2001:db8::1", 443, Ip },
        { "[::ffff:127.0.0.1]", "::ffff:127.0.0.1", 443, Ip },
        { "[::FFFF:7f00:1]", "::ffff:127.0.0.1", 443, Ip },
        { "[64:ff9b::1.2.3.4]", "64:ff9b::102:304", 443, Ip },
        { "[fe80::1]", "fe80::1", 443, Ip },
        { "[::]", "::", 443, Ip },
    };

    /// <summary>Inputs that <see cref="EgressTargetParser.TryParse"/> rejects, with the error.</summary>
    public static TheoryData<string, EgressTargetError> Rejected => new()
    {
        { string.Empty, EgressTargetError.Empty },

        // Whitespace and control characters anywhere (CVE-2023-24329; WHATWG strips tab/CR/LF).
        { " https://evil.com", EgressTargetError.AmbiguousCharacter },
        { "https://evil.com ", EgressTargetError.AmbiguousCharacter },
        { "\thttps://evil.com", EgressTargetError.AmbiguousCharacter },
        { " evil.com", EgressTargetError.AmbiguousCharacter },
        { "evil.com ", EgressTargetError.AmbiguousCharacter },
        { "evil.com\n", EgressTargetError.AmbiguousCharacter },
        { "https://ev\til.com/", EgressTargetError.AmbiguousCharacter },
        { "https://evil.com\r\n.good.com/", EgressTargetError.AmbiguousCharacter },
        { "https://evil.com/a\nb", EgressTargetError.AmbiguousCharacter },
        { "ht\ttps://evil.com/", EgressTargetError.AmbiguousCharacter },
        { "evil\0.com", EgressTargetError.AmbiguousCharacter },
        { "evil.com\0", EgressTargetError.AmbiguousCharacter },
        { "evil\u007F.com", EgressTargetError.AmbiguousCharacter },
        { "evil\u0085.com", EgressTargetError.AmbiguousCharacter },
        { "a\u3000b.com", EgressTargetError.AmbiguousCharacter },
        { "a\u00A0b.com", EgressTargetError.AmbiguousCharacter },
        { "host: 80", EgressTargetError.AmbiguousCharacter },

        // Format characters UTS-46 would silently delete.
        { "ex\u00ADample.com", EgressTargetError.AmbiguousCharacter },
        { "ex\u200Bample.com", EgressTargetError.AmbiguousCharacter },
        { "\uFEFFexample.com", EgressTargetError.AmbiguousCharacter },
        { "example.com\u2060", EgressTargetError.AmbiguousCharacter },
        { "\uDB40\uDC01example.com", EgressTargetError.AmbiguousCharacter },

        // %-escapes, backslashes, more than one @.
        { "ex%61mple.com", EgressTargetError.AmbiguousCharacter },
        { "https://ex%61mple.com/", EgressTargetError.AmbiguousCharacter },
        { "https://evil.com%2f.good.com/", EgressTargetError.AmbiguousCharacter },
        { "http://evil.com\\@allowed.com/", EgressTargetError.AmbiguousCharacter },
        { "https://evil.com\\.good.com", EgressTargetError.AmbiguousCharacter },
        { "https://evil.com/p\\q", EgressTargetError.AmbiguousCharacter },
        { "http:\\\\evil.com", EgressTargetError.AmbiguousCharacter },
        { "evil.com\\", EgressTargetError.AmbiguousCharacter },
        { "foo@evil.com:80@allowed.com", EgressTargetError.AmbiguousCharacter },
        { "http://foo@evil.com:80@allowed.com/", EgressTargetError.AmbiguousCharacter },
        { "https://a@b@evil.com/", EgressTargetError.AmbiguousCharacter },

        // Schemes.
        { "ftp://x", EgressTargetError.UnsupportedScheme },
        { "FTP://x/", EgressTargetError.UnsupportedScheme },
        { "ws://example.com/", EgressTargetError.UnsupportedScheme },
        { "file:///etc/passwd", EgressTargetError.UnsupportedScheme },
        { "//x", EgressTargetError.UnsupportedScheme },
        { "//evil.com/path", EgressTargetError.UnsupportedScheme },
        { "javascript:alert(1)", EgressTargetError.UnsupportedScheme },
        { "mailto:a@example.com", EgressTargetError.UnsupportedScheme },
        { "data:text/plain,x", EgressTargetError.UnsupportedScheme },
        { "javascript:", EgressTargetError.InvalidPort },
        { "http:evil.com", EgressTargetError.Malformed },
        { "http:/evil.com", EgressTargetError.Malformed },
        { "http:///evil.com", EgressTargetError.Malformed },
        { "https:////evil.com", EgressTargetError.Malformed },
        { "evil.com/path", EgressTargetError.Malformed },
        { "evil.com?x", EgressTargetError.Malformed },
        { "evil.com#x", EgressTargetError.Malformed },
        { "https://", EgressTargetError.Empty },
        { "https:///", EgressTargetError.Malformed },
        { "https://user@/", EgressTargetError.Empty },
        { "https://:443/", EgressTargetError.Empty },
        { "user:pw@evil.com:8080", EgressTargetError.UnsupportedScheme },

        // Dots and labels.
        { "evil.com..", EgressTargetError.InvalidHostName },
        { ".evil.com", EgressTargetError.InvalidHostName },
        { "evil..com", EgressTargetError.InvalidHostName },
        { ".", EgressTargetError.InvalidHostName },
        { "..", EgressTargetError.InvalidHostName },
        { "https://evil.com../", EgressTargetError.InvalidHostName },
        { "example\u3002\u3002com", EgressTargetError.InvalidHostName },
        { "example.com\u3002\u3002", EgressTargetError.InvalidHostName },
        { $"{Label64}.com", EgressTargetError.InvalidHostName },
        { Name254, EgressTargetError.InvalidHostName },
        { Name254 + ".", EgressTargetError.InvalidHostName },
        { new string('a', 5000), EgressTargetError.InvalidHostName },

        // Characters outside [a-z0-9_-] before or after mapping.
        { "a*b.com", EgressTargetError.InvalidHostName },
        { "*.example.com", EgressTargetError.InvalidHostName },
        { "a!b.com", EgressTargetError.InvalidHostName },
        { "a\"b.com", EgressTargetError.InvalidHostName },
        { "evil.com\uFF0F.good.com", EgressTargetError.InvalidHostName },
        { "evil.com\uFF03.good.com", EgressTargetError.InvalidHostName },
        { "evil.com\uFF20good.com", EgressTargetError.InvalidHostName },
        { "evil.com\uFF05", EgressTargetError.InvalidHostName },
        { "evil.com\uFF3Cgood.com", EgressTargetError.InvalidHostName },
        { "\uD800.com", EgressTargetError.InvalidHostName },
        { "\uE000.com", EgressTargetError.InvalidHostName },
        { "\u2024.com", EgressTargetError.InvalidHostName },
        { "exa\u200Dmple.com", EgressTargetError.InvalidHostName },

        // Punycode that does not round-trip.
        { "xn--abc.com", EgressTargetError.InvalidHostName },
        { "xn--a.com", EgressTargetError.InvalidHostName },
        { "xn--abc-.com", EgressTargetError.InvalidHostName },
        { "xn--.com", EgressTargetError.InvalidHostName },
        { "https://xn--abc.com/", EgressTargetError.InvalidHostName },

        // Looks numeric but is not an address: never a DNS name.
        { "1.2.3.4.5", EgressTargetError.InvalidHostName },
        { "256.1.1.1", EgressTargetError.InvalidHostName },
        { "0x", EgressTargetError.InvalidHostName },
        { "0x.1", EgressTargetError.InvalidHostName },
        { "foo.123", EgressTargetError.InvalidHostName },
        { "foo.0x1f", EgressTargetError.InvalidHostName },
        { "foo.0x", EgressTargetError.InvalidHostName },
        { "08.0.0.1", EgressTargetError.InvalidHostName },
        { "09", EgressTargetError.InvalidHostName },
        { "0400.0.0.0", EgressTargetError.InvalidHostName },
        { "4294967296", EgressTargetError.InvalidHostName },
        { "0x100000000", EgressTargetError.InvalidHostName },
        { "1.16777216", EgressTargetError.InvalidHostName },
        { "1.2.3.4.", EgressTargetError.InvalidHostName },
        { "127.0.0.1.", EgressTargetError.InvalidHostName },
        { "1..2", EgressTargetError.InvalidHostName },
        { "http://1.2.3.4.5/", EgressTargetError.InvalidHostName },
        { "http://foo.123/", EgressTargetError.InvalidHostName },
        { "\uFF11\uFF12\uFF17.\uFF10.\uFF10.\uFF11", EgressTargetError.InvalidHostName },
        { "\u0661\u0662\u0663.1.1.1", EgressTargetError.InvalidHostName },
        { "example.\u2460", EgressTargetError.InvalidHostName },

        // IPv6: brackets required, no zone id, strict embedded IPv4, nothing after the bracket but a port.
        { "::1", EgressTargetError.InvalidIPAddress },
        { "::1:443", EgressTargetError.InvalidIPAddress },
        { "fe80::1", EgressTargetError.InvalidIPAddress },
        { "http://::1/", EgressTargetError.InvalidIPAddress },
        { "[fe80::1%25eth0]", EgressTargetError.InvalidIPAddress },
        { "[fe80::1%eth0]", EgressTargetError.InvalidIPAddress },
        { "[fe80::1%1]", EgressTargetError.InvalidIPAddress },
        { "[::%]", EgressTargetError.InvalidIPAddress },
        { "http://[fe80::1%25eth0]/", EgressTargetError.InvalidIPAddress },
        { "[::1", EgressTargetError.InvalidIPAddress },
        { "[]", EgressTargetError.InvalidIPAddress },
        { "[1.2.3.4]", EgressTargetError.InvalidIPAddress },
        { "[v1.x]", EgressTargetError.InvalidIPAddress },
        { "[example.com]", EgressTargetError.InvalidIPAddress },
        { "[::ffff:1.2.3.04]", EgressTargetError.InvalidIPAddress },
        { "[::ffff:012.0.0.1]", EgressTargetError.InvalidIPAddress },
        { "[::ffff:127.1]", EgressTargetError.InvalidIPAddress },
        { "[::ffff:256.0.0.1]", EgressTargetError.InvalidIPAddress },
        { "[1:2:3:4:5:6:7:8:9]", EgressTargetError.InvalidIPAddress },
        { "[1::2::3]", EgressTargetError.InvalidIPAddress },
        { "[::1]x", EgressTargetError.Malformed },
        { "[::1]]", EgressTargetError.Malformed },
        { "ex[ample.com", EgressTargetError.InvalidHostName },

        // Ports.
        { "host:", EgressTargetError.InvalidPort },
        { "host:0", EgressTargetError.InvalidPort },
        { "host:00000", EgressTargetError.InvalidPort },
        { "host:65536", EgressTargetError.InvalidPort },
        { "host:+80", EgressTargetError.InvalidPort },
        { "host:-80", EgressTargetError.InvalidPort },
        { "host:99999999999999999999", EgressTargetError.InvalidPort },
        { "host:0x50", EgressTargetError.InvalidPort },
        { "host:8o", EgressTargetError.InvalidPort },
        { "host:\uFF18\uFF10", EgressTargetError.InvalidPort },
        { "host:\u0668\u0660", EgressTargetError.InvalidPort },
        { "[::1]:", EgressTargetError.InvalidPort },
        { "[::1]:0", EgressTargetError.InvalidPort },
        { "http://host:/", EgressTargetError.InvalidPort },
        { "http://host:0/", EgressTargetError.InvalidPort },
        { "http://host:65536/", EgressTargetError.InvalidPort },
        { "http://host:+80/", EgressTargetError.InvalidPort },
        { "http://evil.com:80:80/", EgressTargetError.InvalidIPAddress },
    };

    [Theory]
    [MemberData(nameof(Accepted))]
    public void TryParse_AcceptedInput_ReturnsCanonicalTarget(string input, string host, int port, EgressTargetKind kind)
    {
        bool ok = EgressTargetParser.TryParse(input, out var target, out var error);

        ok.Should().BeTrue();
        error.Should().Be(EgressTargetError.None);
        target.IsValid.Should().BeTrue();
        target.Host.Should().Be(host);
        target.Port.Should().Be(port);
        target.Kind.Should().Be(kind);
        if (kind == EgressTargetKind.IpAddress)
        {
            target.Address.Should().NotBeNull();
            target.Address!.ToString().Should().Be(host);
        }
        else
        {
            target.Address.Should().BeNull();
            DnsNames.IsCanonical(target.Host).Should().BeTrue("every DNS-name target is canonical");
        }
    }

    [Theory]
    [MemberData(nameof(Rejected))]
    public void TryParse_RejectedInput_ReturnsError(string input, EgressTargetError expected)
    {
        bool ok = EgressTargetParser.TryParse(input, out var target, out var error);

        ok.Should().BeFalse();
        error.Should().Be(expected);
        target.IsValid.Should().BeFalse();
    }

    [Fact]
    public void TryParse_Null_ReturnsEmpty()
    {
        EgressTargetParser.TryParse(null, out var target, out var error).Should().BeFalse();
        error.Should().Be(EgressTargetError.Empty);
        target.IsValid.Should().BeFalse();
    }

    [Theory]
    [InlineData("https://good.com@evil.com/", "evil.com")]
    [InlineData("https://evil.com#@good.com", "evil.com")]
    [InlineData("https://evil.com#.good.com", "evil.com")]
    [InlineData("https://evil.com?.good.com", "evil.com")]
    [InlineData("https://evil.com/.good.com", "evil.com")]
    public void TryParseUrl_UserinfoOrFragmentTricks_NeverYieldGoodCom(string url, string expectedHost)
    {
        EgressTargetParser.TryParseUrl(url, out var target, out _).Should().BeTrue();
        target.Host.Should().Be(expectedHost);
        target.Host.Should().NotContain("good");
    }

    [Theory]
    [InlineData("evil.com", EgressTargetError.Malformed)]
    [InlineData("evil.com:443", EgressTargetError.UnsupportedScheme)]
    [InlineData("//evil.com", EgressTargetError.UnsupportedScheme)]
    [InlineData("1http://evil.com", EgressTargetError.Malformed)]
    [InlineData("javascript:alert(1)", EgressTargetError.UnsupportedScheme)]
    [InlineData("", EgressTargetError.Empty)]
    [InlineData(null, EgressTargetError.Empty)]
    public void TryParseUrl_NotAnHttpUrl_ReturnsError(string? url, EgressTargetError expected)
    {
        EgressTargetParser.TryParseUrl(url, out _, out var error).Should().BeFalse();
        error.Should().Be(expected);
    }

    [Theory]
    [InlineData("evil.com:443", 8443, "evil.com", 443)]
    [InlineData("evil.com", 8443, "evil.com", 8443)]
    [InlineData("EVIL.COM.:0080", 443, "evil.com", 80)]
    [InlineData("[::1]:443", 80, "::1", 443)]
    [InlineData("[::1]", 80, "::1", 80)]
    [InlineData("10.0.0.1:22", 443, "10.0.0.1", 22)]
    public void TryParseAuthority_ValidAuthority_ReturnsTarget(string authority, int defaultPort, string host, int port)
    {
        EgressTargetParser.TryParseAuthority(authority, defaultPort, out var target, out var error).Should().BeTrue();
        error.Should().Be(EgressTargetError.None);
        target.Host.Should().Be(host);
        target.Port.Should().Be(port);
    }

    [Theory]
    [InlineData("user@evil.com:443", 443, EgressTargetError.AmbiguousCharacter)]
    [InlineData("evil.com/x", 443, EgressTargetError.Malformed)]
    [InlineData("https://evil.com", 443, EgressTargetError.Malformed)]
    [InlineData("evil.com:", 443, EgressTargetError.InvalidPort)]
    [InlineData("evil.com", 0, EgressTargetError.InvalidPort)]
    [InlineData("evil.com", 65536, EgressTargetError.InvalidPort)]
    [InlineData("evil.com:443 ", 443, EgressTargetError.AmbiguousCharacter)]
    [InlineData("", 443, EgressTargetError.Empty)]
    [InlineData(null, 443, EgressTargetError.Empty)]
    public void TryParseAuthority_InvalidAuthority_ReturnsError(string? authority, int defaultPort, EgressTargetError expected)
    {
        EgressTargetParser.TryParseAuthority(authority, defaultPort, out _, out var error).Should().BeFalse();
        error.Should().Be(expected);
    }

    [Theory]
    [InlineData("example.com", 0, EgressTargetError.InvalidPort)]
    [InlineData("example.com", -1, EgressTargetError.InvalidPort)]
    [InlineData("example.com", 65536, EgressTargetError.InvalidPort)]
    [InlineData(null, 443, EgressTargetError.Empty)]
    [InlineData("", 443, EgressTargetError.Empty)]
    [InlineData("example.com:443", 443, EgressTargetError.InvalidHostName)]
    [InlineData("::1", 443, EgressTargetError.InvalidIPAddress)]
    [InlineData("user@example.com", 443, EgressTargetError.AmbiguousCharacter)]
    [InlineData("https://example.com", 443, EgressTargetError.InvalidHostName)]
    public void TryParseHost_InvalidInput_ReturnsError(string? host, int port, EgressTargetError expected)
    {
        EgressTargetParser.TryParseHost(host, port, out var target, out var error).Should().BeFalse();
        error.Should().Be(expected);
        target.IsValid.Should().BeFalse();
    }

    [Fact]
    public void TryParseHost_CanonicalName_ReusesInputString()
    {
        string host = string.Concat("api.", "github.com");

        EgressTargetParser.TryParseHost(host, 443, out var target, out _).Should().BeTrue();

        target.Host.Should().BeSameAs(host);
        target.Kind.Should().Be(EgressTargetKind.DnsName);
    }

    [Fact]
    public void TryParseAuthority_CanonicalNameWithoutPort_ReusesInputString()
    {
        string authority = string.Concat("api.", "github.com");

        EgressTargetParser.TryParseAuthority(authority, 443, out var target, out _).Should().BeTrue();

        target.Host.Should().BeSameAs(authority);
    }

    [Theory]
    [InlineData("Example.COM.", "example.com")]
    [InlineData("\u0430pple.com", "xn--pple-43d.com")]
    [InlineData("[::FFFF:127.0.0.1]", "::ffff:127.0.0.1")]
    [InlineData("0x7f.1", "127.0.0.1")]
    public void TryParseHost_NonCanonicalInput_Normalises(string host, string expected)
    {
        EgressTargetParser.TryParseHost(host, 443, out var target, out _).Should().BeTrue();
        target.Host.Should().Be(expected);
    }

    [Fact]
    public void TryParse_IPv4MappedAddress_StaysIPv6()
    {
        EgressTargetParser.TryParse("[::ffff:127.0.0.1]", out var target, out _).Should().BeTrue();

        target.Address!.AddressFamily.Should().Be(System.Net.Sockets.AddressFamily.InterNetworkV6);
        target.Address.IsIPv4MappedToIPv6.Should().BeTrue();
        target.ToString().Should().Be("[::ffff:127.0.0.1]:443");
    }

    public static TheoryData<string> Ipv4Spellings()
    {
        // Deterministic: every spelling inet_aton knows, for a spread of addresses.
        var data = new TheoryData<string>();
        var random = new Random(20261126);
        for (int i = 0; i < 40; i++)
        {
            uint value = (uint)random.NextInt64(0, 1L << 32);
            byte a = (byte)(value >> 24), b = (byte)(value >> 16), c = (byte)(value >> 8), d = (byte)value;
            data.Add(value.ToString(System.Globalization.CultureInfo.InvariantCulture));
            data.Add($"0x{value:x}");
            data.Add("0" + Convert.ToString(value, 8));
            data.Add($"{a}.{b}.{c}.{d}");
            data.Add($"0x{a:X}.0x{b:x}.0{Convert.ToString(c, 8)}.{d}");
            data.Add($"{a}.{(value & 0xFFFFFF).ToString(System.Globalization.CultureInfo.InvariantCulture)}");
            data.Add($"{a}.{b}.0x{value & 0xFFFF:x}");
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(Ipv4Spellings))]
    public void TryParse_AnyIPv4SpellingThePlatformAccepts_IsTheSameIpTarget(string spelling)
    {
        IPAddress.TryParse(spelling, out var expected).Should().BeTrue("the platform (inet_aton rules) accepts {0}", spelling);

        EgressTargetParser.TryParse(spelling, out var target, out var error).Should().BeTrue();

        error.Should().Be(EgressTargetError.None);
        target.Kind.Should().Be(EgressTargetKind.IpAddress);
        target.Address.Should().Be(expected);
        target.Host.Should().Be(expected!.ToString());
        EgressTargetParser.TryParseUrl($"http://{spelling}/", out var viaUrl, out _).Should().BeTrue();
        viaUrl.Address.Should().Be(expected);
    }

    /// <summary>Whether <see cref="Uri.IdnHost"/> maps Unicode hosts as UTS-46 does here (it uses the platform's
    /// IdnMapping: ICU; in globalization-invariant mode it only applies Punycode).</summary>
    private static bool SystemUriMapsUnicodeHosts =>
        string.Equals(new Uri("http://\uFF45.example/").IdnHost, "e.example", StringComparison.Ordinal);

    [Theory]
    [InlineData("https://\u0430pple.com/", "xn--pple-43d.com", 443)]
    [InlineData("HTTPS://EVIL.COM:0443/", "evil.com", 443)]
    [InlineData("http://example.com./x", "example.com", 80)]
    [InlineData("http://0x7f.1/", "127.0.0.1", 80)]
    [InlineData("http://[::1]:8080/", "::1", 8080)]
    [InlineData("https://good.com@evil.com/", "evil.com", 443)]
    [InlineData("https://evil.com#@good.com", "evil.com", 443)]
    [InlineData("http://\uFF45\uFF58\uFF41\uFF4D\uFF50\uFF4C\uFF45.com/", "example.com", 80)]
    [InlineData("https://[::1]@evil.com/", "evil.com", 443)]
    [InlineData("https://evil.com:443@good.com/", "good.com", 443)]
    [InlineData("https://u@evil.com:8443/", "evil.com", 8443)]
    [InlineData("https://-a.com/", "-a.com", 443)]
    [InlineData("https://a_b.example/", "a_b.example", 443)]
    public void TryParseUri_AbsoluteHttpUri_AgreesWithIdnHost(string text, string host, int port)
    {
        var uri = new Uri(text);
        if (!text.All(char.IsAscii) && !SystemUriMapsUnicodeHosts
            && !string.Equals(uri.IdnHost, host, StringComparison.OrdinalIgnoreCase))
        {
            // Globalization-invariant mode: System.Uri (so HttpClient) would connect to a different name than the
            // one decided, so the Uri path denies (docs/hosts.md). String targets are decided alike in both modes.
            EgressTargetParser.TryParseUri(uri, out _, out var disagreement).Should().BeFalse();
            disagreement.Should().Be(EgressTargetError.Malformed);
            EgressTargetParser.TryParse(text, out var fromText, out _).Should().BeTrue();
            fromText.Host.Should().Be(host);
            return;
        }

        EgressTargetParser.TryParseUri(uri, out var target, out var error).Should().BeTrue();

        error.Should().Be(EgressTargetError.None);
        target.Host.Should().Be(host);
        target.Port.Should().Be(port);
    }

    [Fact]
    public void TryParseUri_RelativeUriCombinedWithBase_UsesCombinedHost()
    {
        var uri = new Uri(new Uri("https://api.example.com/v1/"), "x/y?q=1");

        EgressTargetParser.TryParseUri(uri, out var target, out _).Should().BeTrue();

        target.Should().Be(Parse("api.example.com:443"));
    }

    [Fact]
    public void TryParseUri_UriBuilderWithUnicodeHost_UsesAsciiForm()
    {
        var uri = new UriBuilder("https", "\uFF45\uFF58\uFF41\uFF4D\uFF50\uFF4C\uFF45.com", 8443, "/p").Uri;
        if (!SystemUriMapsUnicodeHosts)
        {
            EgressTargetParser.TryParseUri(uri, out _, out var disagreement).Should().BeFalse("System.Uri would connect elsewhere");
            disagreement.Should().Be(EgressTargetError.Malformed);
            return;
        }

        EgressTargetParser.TryParseUri(uri, out var target, out _).Should().BeTrue();

        target.Host.Should().Be("example.com");
        target.Port.Should().Be(8443);
    }

    [Theory]
    [InlineData("ftp://example.com/", EgressTargetError.UnsupportedScheme)]
    [InlineData("file:///etc/passwd", EgressTargetError.UnsupportedScheme)]
    [InlineData("https://a.com/p\\q", EgressTargetError.AmbiguousCharacter)]
    [InlineData("http://x:0/", EgressTargetError.InvalidPort)]
    [InlineData("http://x:/", EgressTargetError.InvalidPort)]
    [InlineData("http://1.2.3.4./", EgressTargetError.InvalidHostName)]
    [InlineData("http://foo.123/", EgressTargetError.InvalidHostName)]
    [InlineData("http://xn--abc.com/", EgressTargetError.InvalidHostName)]
    [InlineData("http://\uFF11\uFF12\uFF17.\uFF10.\uFF10.\uFF11/", EgressTargetError.InvalidHostName)]
    [InlineData("http://[fe80::1%25eth0]/", EgressTargetError.InvalidIPAddress)]
    public void TryParseUri_AmbiguousOrInvalidUri_ReturnsError(string text, EgressTargetError expected)
    {
        var uri = new Uri(text);

        EgressTargetParser.TryParseUri(uri, out var target, out var error).Should().BeFalse();

        error.Should().Be(expected);
        target.IsValid.Should().BeFalse();
    }

    [Fact]
    public void TryParseUri_NullOrRelative_ReturnsMalformed()
    {
        EgressTargetParser.TryParseUri(null, out _, out var nullError).Should().BeFalse();
        EgressTargetParser.TryParseUri(new Uri("/x", UriKind.Relative), out _, out var relativeError).Should().BeFalse();

        nullError.Should().Be(EgressTargetError.Malformed);
        relativeError.Should().Be(EgressTargetError.Malformed);
    }

    [Fact]
    public void TryCreateDnsName_CanonicalName_EqualsParsedTarget()
    {
        EgressTarget.TryCreateDnsName("example.com", 8443, out var direct).Should().BeTrue();

        direct.Should().Be(Parse("EXAMPLE.com.:8443"));
        direct.Kind.Should().Be(EgressTargetKind.DnsName);
    }

    [Fact]
    public void DefaultPort_Is443()
    {
        EgressTargetParser.DefaultPort.Should().Be(443);
        Parse("example.com").Port.Should().Be(EgressTargetParser.DefaultPort);
    }

    private static EgressTarget Parse(string input)
    {
        EgressTargetParser.TryParse(input, out var target, out var error).Should().BeTrue(error.ToString());
        return target;
    }
}
