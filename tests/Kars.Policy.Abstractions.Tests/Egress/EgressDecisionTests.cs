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
        var target = new EgressTarget(address.ToString(), 8443, EgressTargetKind.IpAddress, address);

        target.ToString().Should().Be("[2001:db8::1]:8443");
        new EgressTarget("api.github.com", 443, EgressTargetKind.DnsName, null).ToString().Should().Be("api.github.com:443");
    }

    [Fact]
    public void Target_Equality_UsesHostPortAndKind()
    {
        var a = new EgressTarget("a.example", 443, EgressTargetKind.DnsName, null);
        var b = new EgressTarget("a.example", 443, EgressTargetKind.DnsName, null);
        var c = new EgressTarget("a.example", 8443, EgressTargetKind.DnsName, null);

        (a == b).Should().BeTrue();
        (a != c).Should().BeTrue();
        a.GetHashCode().Should().Be(b.GetHashCode());
    }

    [Fact]
    public void Target_FromResolvedAddress_HostIsTheAddressTextAndEqualsTheParsedForm()
    {
        var address = System.Net.IPAddress.Parse("2001:db8::1");

        var lazy = new EgressTarget(address, 443);
        var eager = new EgressTarget(address.ToString(), 443, EgressTargetKind.IpAddress, address);

        lazy.IsValid.Should().BeTrue();
        lazy.Kind.Should().Be(EgressTargetKind.IpAddress);
        lazy.Host.Should().Be("2001:db8::1");
        lazy.Should().Be(eager);
        lazy.GetHashCode().Should().Be(eager.GetHashCode());
        lazy.ToString().Should().Be("[2001:db8::1]:443");
    }
}
