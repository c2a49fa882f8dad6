using System.Net;
using System.Reflection;
using System.Text;
using Kars.Policy.Egress;
using Microsoft.Extensions.Time.Testing;
using static Kars.Policy.Tests.Egress.EgressTestHelpers;

namespace Kars.Policy.Tests.Egress;

/// <summary>
/// An <see cref="EgressTarget"/> handed to a public <c>Evaluate</c> is input, not a credential (docs/decisions.md,
/// "No InternalsVisibleTo between shipped packages"): the public factory cannot check punycode, and a struct can be
/// forged with reflection. Whatever the target holds, its decision is the one the string path gives its host and port.
/// </summary>
public sealed class UntrustedTargetTests
{
    // The wildcard would allow any label under example.org if a target were trusted as canonical.
    private static readonly string Policy = Doc("""
        {"host":"example.com"},{"host":"*.example.org"},{"host":"xn--mnchen-3ya.de"},{"host":"xn--bcher-kva.example"},
        {"cidr":"203.0.113.0/24"}
        """);

    public static TheoryData<string, int> ForgedHosts => new()
    {
        { "EXAMPLE.com", 443 },
        { "example.com.", 443 },
        { "Example.Org.", 443 },
        { "a.EXAMPLE.org", 443 },
        { "bücher.example", 443 },
        { "BÜCHER.example", 443 },
        { "ｅｘａｍｐｌｅ.com", 443 },
        { "xn--a.example.org", 443 },
        { "xn--zz-.example.org", 443 },
        { "xn--mnchen-3ya.de", 443 },
        { "xn--Mnchen-3ya.de", 443 },
        { "xn--mnchen-3ya.de.", 443 },
        { "example.com", 0 },
        { "example.com", -443 },
        { "example.com", 65536 },
        { "127.0.0.1", 443 },
        { "203.0.113.9", 443 },
        { "0x7f.1", 443 },
        { "example.123", 443 },
        { "[::1]", 443 },
        { "user@example.com", 443 },
        { "example.com:443", 443 },
        { "exa mple.com", 443 },
        { "exa\u00ADmple.com", 443 },
        { "", 443 },
        { "a..example.org", 443 },
        { new string('a', 64) + ".example.org", 443 },
    };

    [Theory]
    [MemberData(nameof(ForgedHosts))]
    public void Evaluate_ForgedDnsNameTarget_DecidesAsTheStringPath(string host, int port)
    {
        var snapshot = EgressPolicySnapshot.Create(Encoding.UTF8.GetBytes(Policy));
        var forged = Forge(host, port, EgressTargetKind.DnsName, null);

        var expected = snapshot.Evaluate(host, port, null);
        var cold = snapshot.Evaluate(forged, null);
        snapshot.Evaluate("example.com", 443, null);
        snapshot.Evaluate("a.example.org", 443, null);
        var warm = snapshot.Evaluate(forged, null);

        foreach (var actual in new[] { cold, warm })
        {
            actual.Verdict.Should().Be(expected.Verdict, host);
            actual.Reason.Should().Be(expected.Reason, host);
            actual.TargetError.Should().Be(expected.TargetError, host);
            actual.Target.Should().Be(expected.Target, host);
            actual.Rule.Should().Be(expected.Rule, host);
        }
    }

    [Theory]
    [InlineData("xn--a.example.org")]
    [InlineData("xn--zz-.example.org")]
    [InlineData("xn--ls8h-.example.org")]
    [InlineData("xn--55555555555555555555555555555555555555555555555555555555555.example.org")]
    public void Evaluate_FactoryTargetWithInvalidPunycode_IsInvalidNotAllowedByTheWildcard(string host)
    {
        EgressTarget.TryCreateDnsName(host, 443, out var target).Should().BeTrue("the public factory checks the shape only");
        var snapshot = EgressPolicySnapshot.Create(Encoding.UTF8.GetBytes(Policy));

        var decision = snapshot.Evaluate(target, null);

        decision.Verdict.Should().Be(EgressVerdict.Deny);
        decision.Reason.Should().Be(EgressReason.InvalidTarget);
        decision.TargetError.Should().Be(EgressTargetError.InvalidHostName);
        snapshot.Evaluate(host, 443, null).Reason.Should().Be(EgressReason.InvalidTarget);
    }

    [Fact]
    public void Evaluate_FactoryTargetWithValidPunycode_IsDecidedOnIt()
    {
        EgressTarget.TryCreateDnsName("xn--mnchen-3ya.de", 443, out var target).Should().BeTrue();
        var snapshot = EgressPolicySnapshot.Create(Encoding.UTF8.GetBytes(Policy));

        var decision = snapshot.Evaluate(target, null);

        decision.IsAllowed.Should().BeTrue();
        decision.Target.Host.Should().Be("xn--mnchen-3ya.de");
    }

    [Fact]
    public void Evaluate_ForgedAddressTargets_AreRebuiltFromTheAddressOrRefused()
    {
        var snapshot = EgressPolicySnapshot.Create(Encoding.UTF8.GetBytes(Policy));

        // A host text that disagrees with the address: decided (and reported) on the address.
        var mismatched = snapshot.Evaluate(Forge("example.com", 443, EgressTargetKind.IpAddress, IPAddress.Parse("203.0.113.9")), null);
        mismatched.Reason.Should().Be(EgressReason.Allowlisted);
        mismatched.Target.Host.Should().Be("203.0.113.9");
        mismatched.Target.Should().Be(snapshot.Evaluate("203.0.113.9", null).Target);

        // No address, a zone id the parser refuses, a port out of range, an undefined kind.
        snapshot.Evaluate(Forge("203.0.113.9", 443, EgressTargetKind.IpAddress, null), null).TargetError.Should().Be(EgressTargetError.InvalidIPAddress);
        var scoped = IPAddress.Parse("fe80::1");
        scoped.ScopeId = 2;
        snapshot.Evaluate(Forge("fe80::1%2", 443, EgressTargetKind.IpAddress, scoped), null).TargetError.Should().Be(EgressTargetError.InvalidIPAddress);
        snapshot.Evaluate(Forge("203.0.113.9", 0, EgressTargetKind.IpAddress, IPAddress.Parse("203.0.113.9")), null).TargetError.Should().Be(EgressTargetError.InvalidPort);
        snapshot.Evaluate(Forge("example.com", 443, (EgressTargetKind)7, null), null).TargetError.Should().Be(EgressTargetError.Malformed);
    }

    [Fact]
    public void Monitor_NoPolicy_ReportsTheCanonicalTargetOrTheError()
    {
        var fs = new System.IO.Abstractions.TestingHelpers.MockFileSystem();
        using var monitor = new EgressPolicyMonitor(new FileEgressPolicySource("/missing/policy.json", fileSystem: fs), timeProvider: new FakeTimeProvider(Start));

        var upper = monitor.Evaluate(Forge("EXAMPLE.com", 443, EgressTargetKind.DnsName, null), null);
        upper.Reason.Should().Be(EgressReason.NoPolicy);
        upper.Target.Host.Should().Be("example.com");

        EgressTarget.TryCreateDnsName("xn--a.example.org", 443, out var invalid).Should().BeTrue();
        var bad = monitor.Evaluate(invalid, null);
        bad.Reason.Should().Be(EgressReason.NoPolicy);
        bad.Target.IsValid.Should().BeFalse();
        bad.TargetError.Should().Be(EgressTargetError.InvalidHostName);
    }

    [Fact]
    public void Evaluate_WarmFactoryTarget_AllocatesNothing()
    {
        var snapshot = EgressPolicySnapshot.Create(Encoding.UTF8.GetBytes(Policy));
        EgressTarget.TryCreateDnsName("example.com", 443, out var allowed).Should().BeTrue();
        EgressTarget.TryCreateDnsName("xn--mnchen-3ya.de", 443, out var punycode).Should().BeTrue();
        EgressTarget.TryCreateDnsName("other.example.net", 443, out var denied).Should().BeTrue();
        int allows = 0;

        long bytes = SteadyStateAllocation.Measure(() =>
        {
            for (int i = 0; i < 1000; i++)
            {
                allows += snapshot.Evaluate(allowed, null).IsAllowed ? 1 : 0;
                allows += snapshot.Evaluate(punycode, null).IsAllowed ? 1 : 0;
                allows += snapshot.Evaluate(denied, null).IsAllowed ? 1 : 0;
            }
        });

        bytes.Should().Be(0);
        allows.Should().BeGreaterThan(0);
    }

    /// <summary>Builds a target the way reflection or unsafe code could, bypassing the factories.</summary>
    private static EgressTarget Forge(string host, int port, EgressTargetKind kind, IPAddress? address)
    {
        const BindingFlags Fields = BindingFlags.Instance | BindingFlags.NonPublic;
        object boxed = default(EgressTarget);
        Type type = typeof(EgressTarget);
        type.GetField("_host", Fields)!.SetValue(boxed, host);
        type.GetField("_address", Fields)!.SetValue(boxed, address);
        type.GetField("<Port>k__BackingField", Fields)!.SetValue(boxed, port);
        type.GetField("<Kind>k__BackingField", Fields)!.SetValue(boxed, kind);
        return (EgressTarget)boxed;
    }
}
