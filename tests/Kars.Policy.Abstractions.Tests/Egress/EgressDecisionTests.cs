using Kars.Policy.Egress;

namespace Kars.Policy.Abstractions.Tests.Egress;

public class EgressDecisionTests
{
    [Fact]
    public void Default_Decision_Denies()
    {
        EgressDecision decision = default;

        decision.IsAllowed.Should().BeFalse();
        decision.Verdict.Should().Be(EgressVerdict.Deny);
        decision.Target.IsValid.Should().BeFalse();
    }

    [Fact]
    public void Default_Mode_IsStrict()
    {
        default(EgressMode).Should().Be(EgressMode.Strict);
    }

    [Fact]
    public void Target_ToString_BracketsIPv6()
    {
        var address = System.Net.IPAddress.Parse("2001:db8::1");
        var target = EgressTarget.FromAddress(address, 8443);

        target.ToString().Should().Be("[2001:db8::1]:8443");
        DnsName("api.github.com", 443).ToString().Should().Be("api.github.com:443");
    }

    [Fact]
    public void Target_Equality_UsesHostPortAndKind()
    {
        var a = DnsName("a.example", 443);
        var b = DnsName("a.example", 443);
        var c = DnsName("a.example", 8443);

        (a == b).Should().BeTrue();
        (a != c).Should().BeTrue();
        a.GetHashCode().Should().Be(b.GetHashCode());
    }

    [Fact]
    public void Target_FromResolvedAddress_HostIsTheAddressTextAndEqualsTheParsedForm()
    {
        var address = System.Net.IPAddress.Parse("2001:db8::1");

        var lazy = EgressTarget.FromAddress(address, 443);
        var eager = EgressTarget.FromAddress(System.Net.IPAddress.Parse(address.ToString()), 443);

        lazy.IsValid.Should().BeTrue();
        lazy.Kind.Should().Be(EgressTargetKind.IpAddress);
        lazy.Host.Should().Be("2001:db8::1");
        lazy.Should().Be(eager);
        lazy.GetHashCode().Should().Be(eager.GetHashCode());
        lazy.ToString().Should().Be("[2001:db8::1]:443");
    }

    private static EgressTarget DnsName(string host, int port)
    {
        EgressTarget.TryCreateDnsName(host, port, out var target).Should().BeTrue();
        return target;
    }
}
