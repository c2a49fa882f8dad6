using System.Net;
using Kars.Policy.Egress;

namespace Kars.Policy.Abstractions.Tests.Egress;

/// <summary>The public factories accept only what is already canonical; they never canonicalise.</summary>
public class EgressTargetFactoryTests
{
    [Theory]
    [InlineData("example.com")]
    [InlineData("a")]
    [InlineData("api.github.com")]
    [InlineData("_dmarc.example.com")]
    [InlineData("-a-.example")]
    [InlineData("xn--mnchen-3ya.de")]
    [InlineData("example.1abc")]
    [InlineData("example.0xg")]
    public void TryCreateDnsName_CanonicalName_KeepsTheString(string host)
    {
        EgressTarget.TryCreateDnsName(host, 443, out var target).Should().BeTrue();

        target.IsValid.Should().BeTrue();
        target.Kind.Should().Be(EgressTargetKind.DnsName);
        target.Host.Should().BeSameAs(host);
        target.Port.Should().Be(443);
        target.Address.Should().BeNull();
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("Example.com")]
    [InlineData("EXAMPLE.COM")]
    [InlineData("example.com.")]
    [InlineData(".example.com")]
    [InlineData("a..example.com")]
    [InlineData("bücher.example")]
    [InlineData("ex ample.com")]
    [InlineData("example.com:443")]
    [InlineData("[::1]")]
    [InlineData("::1")]
    [InlineData("127.0.0.1")]
    [InlineData("example.123")]
    [InlineData("example.0x1f")]
    [InlineData("example.0x")]
    [InlineData("user@example.com")]
    [InlineData("exa%41mple.com")]
    [InlineData("ex\u0000ample.com")]
    public void TryCreateDnsName_NotCanonical_IsRefused(string? host)
    {
        EgressTarget.TryCreateDnsName(host, 443, out var target).Should().BeFalse();

        target.IsValid.Should().BeFalse();
        target.Should().Be(default(EgressTarget));
    }

    [Fact]
    public void TryCreateDnsName_LengthLimits_AreTheDnsLimits()
    {
        string label63 = new('a', 63);
        EgressTarget.TryCreateDnsName(label63 + ".example", 443, out _).Should().BeTrue();
        EgressTarget.TryCreateDnsName(label63 + "a.example", 443, out _).Should().BeFalse();

        // 4 × 63 + 3 dots = 255; trimmed to exactly 253 and 254 characters.
        string name255 = string.Join('.', label63, label63, label63, label63);
        EgressTarget.TryCreateDnsName(name255[2..], 443, out _).Should().BeTrue();
        EgressTarget.TryCreateDnsName(name255[1..], 443, out _).Should().BeFalse();
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    [InlineData(65536)]
    [InlineData(int.MaxValue)]
    [InlineData(int.MinValue)]
    public void TryCreateDnsName_PortOutOfRange_IsRefused(int port)
    {
        EgressTarget.TryCreateDnsName("example.com", port, out var target).Should().BeFalse();
        target.IsValid.Should().BeFalse();
    }

    [Theory]
    [InlineData(1)]
    [InlineData(65535)]
    public void TryCreateDnsName_PortAtTheLimits_IsAccepted(int port)
    {
        EgressTarget.TryCreateDnsName("example.com", port, out var target).Should().BeTrue();
        target.Port.Should().Be(port);
    }

    [Theory]
    [InlineData("192.0.2.1", "192.0.2.1", "192.0.2.1:8080")]
    [InlineData("2001:DB8:0:0::1", "2001:db8::1", "[2001:db8::1]:8080")]
    public void FromAddress_HostIsTheCanonicalAddressText(string text, string host, string authority)
    {
        var target = EgressTarget.FromAddress(IPAddress.Parse(text), 8080);

        target.IsValid.Should().BeTrue();
        target.Kind.Should().Be(EgressTargetKind.IpAddress);
        target.Host.Should().Be(host);
        target.ToString().Should().Be(authority);
    }

    [Theory]
    [InlineData("example.com", 0b0000_1000_0000UL, false)]
    [InlineData("a", 0UL, false)]
    [InlineData("a.b.c", 0b01010UL, false)]
    [InlineData("xn--mnchen-3ya.de", 1UL << 14, true)]
    [InlineData("a.xn--zz.example", 0b1_0000_0010UL, true)]
    [InlineData("b--xn--a.example", 1UL << 8, false)]
    [InlineData("a--b.example", 1UL << 4, false)]
    public void TryCreateDnsName_WithLabels_GivesTheDotsAndAceLabels(string host, ulong dots, bool ace)
    {
        EgressTarget.TryCreateDnsName(host, 8443, out var target, out var labels).Should().BeTrue();

        EgressTarget.TryCreateDnsName(host, 8443, out var plain).Should().BeTrue();
        target.Should().Be(plain);
        target.Host.Should().BeSameAs(host);
        labels.DotMask.Should().Be(dots);
        labels.HasAceLabel.Should().Be(ace);
    }

    [Fact]
    public void TryCreateDnsName_WithLabels_SixtyFourCharacters_RecordsEveryDot()
    {
        string host = new string('a', 31) + "." + new string('b', 29) + ".cd";

        EgressTarget.TryCreateDnsName(host, 443, out _, out var labels).Should().BeTrue();

        host.Length.Should().Be(64);
        labels.DotMask.Should().Be((1UL << 31) | (1UL << 61));
        labels.HasAceLabel.Should().BeFalse();
    }

    [Fact]
    public void TryCreateDnsName_WithLabels_LongerThan64WithoutAceLabel_RecordsNoDots()
    {
        string host = new string('a', 31) + "." + new string('b', 30) + ".cd";

        EgressTarget.TryCreateDnsName(host, 443, out var target, out var labels).Should().BeTrue();

        host.Length.Should().Be(65);
        target.Host.Should().BeSameAs(host);
        labels.DotMask.Should().Be(0UL);
        labels.HasAceLabel.Should().BeFalse();
    }

    [Fact]
    public void TryCreateDnsName_WithLabels_LongerThan64_RecordsNoDots()
    {
        string host = new string('a', 60) + ".xn--zz." + new string('b', 10) + ".example";

        EgressTarget.TryCreateDnsName(host, 443, out var target, out var labels).Should().BeTrue();

        target.Host.Should().BeSameAs(host);
        labels.DotMask.Should().Be(0UL);
        labels.HasAceLabel.Should().BeTrue();
    }

    [Theory]
    [InlineData(null, 443)]
    [InlineData("", 443)]
    [InlineData("Example.com", 443)]
    [InlineData("example.123", 443)]
    [InlineData("a..b", 443)]
    [InlineData("example.com", 0)]
    [InlineData("example.com", 65536)]
    public void TryCreateDnsName_WithLabels_RefusedAsWithout(string? host, int port)
    {
        EgressTarget.TryCreateDnsName(host, port, out var target, out var labels).Should().BeFalse();

        EgressTarget.TryCreateDnsName(host, port, out _).Should().BeFalse();
        target.Should().Be(default(EgressTarget));
        labels.DotMask.Should().Be(0UL);
        labels.HasAceLabel.Should().BeFalse();
    }

    [Fact]
    public void FromAddress_BadArguments_Throw()
    {
        var act1 = () => EgressTarget.FromAddress(null!, 443);
        var act2 = () => EgressTarget.FromAddress(IPAddress.Loopback, 0);
        var act3 = () => EgressTarget.FromAddress(IPAddress.Loopback, 65536);

        act1.Should().Throw<ArgumentNullException>().WithParameterName("address");
        act2.Should().Throw<ArgumentOutOfRangeException>().WithParameterName("port");
        act3.Should().Throw<ArgumentOutOfRangeException>().WithParameterName("port");
    }
}
