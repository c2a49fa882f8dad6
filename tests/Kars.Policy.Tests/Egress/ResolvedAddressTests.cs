using System.Net;
using System.Text;
using Kars.Policy.Egress;

namespace Kars.Policy.Tests.Egress;

public class ResolvedAddressTests
{
    private const string Json = """
        {"schemaVersion":1,"generation":4,
         "allow":[{"host":"api.github.com"},{"cidr":"203.0.113.0/24","ports":[443,8443]},{"cidr":"2001:db8::/32"},{"cidr":"10.20.0.0/16"}],
         "blocklist":{"domains":["evil.example"]}}
        """;

    private static EgressPolicySnapshot Snapshot(EgressMode mode = EgressMode.Strict, params string[] privateAllow)
    {
        var options = new KarsEgressOptions { Mode = mode };
        foreach (string prefix in privateAllow)
        {
            options.PrivateAllow.Add(prefix);
        }

        return EgressPolicySnapshot.Create(Encoding.UTF8.GetBytes(Json), options: options);
    }

    [Theory]
    [InlineData("203.0.113.7", 443, EgressVerdict.Allow, EgressReason.Allowlisted, "203.0.113.0/24")]
    [InlineData("203.0.113.7", 8443, EgressVerdict.Allow, EgressReason.Allowlisted, "203.0.113.0/24")]
    [InlineData("203.0.113.7", 22, EgressVerdict.Deny, EgressReason.PortNotAllowed, "203.0.113.0/24")]
    [InlineData("198.51.100.1", 443, EgressVerdict.Deny, EgressReason.NotAllowlisted, null)]
    [InlineData("2001:db8::5", 443, EgressVerdict.Allow, EgressReason.Allowlisted, "2001:db8::/32")]
    [InlineData("2606:4700::1", 443, EgressVerdict.Deny, EgressReason.NotAllowlisted, null)]
    [InlineData("10.20.0.5", 443, EgressVerdict.Deny, EgressReason.NonPublicAddress, null)]
    [InlineData("169.254.169.254", 80, EgressVerdict.Deny, EgressReason.NonPublicAddress, null)]
    [InlineData("127.0.0.1", 443, EgressVerdict.Deny, EgressReason.NonPublicAddress, null)]
    [InlineData("::1", 443, EgressVerdict.Deny, EgressReason.NonPublicAddress, null)]
    [InlineData("fe80::1", 443, EgressVerdict.Deny, EgressReason.NonPublicAddress, null)]
    [InlineData("::ffff:203.0.113.7", 443, EgressVerdict.Allow, EgressReason.Allowlisted, "203.0.113.0/24")]
    [InlineData("::ffff:203.0.113.7", 22, EgressVerdict.Deny, EgressReason.PortNotAllowed, "203.0.113.0/24")]
    [InlineData("::ffff:198.51.100.1", 443, EgressVerdict.Deny, EgressReason.NotAllowlisted, null)]
    [InlineData("::ffff:10.0.0.1", 443, EgressVerdict.Deny, EgressReason.NonPublicAddress, null)]
    [InlineData("::ffff:169.254.169.254", 80, EgressVerdict.Deny, EgressReason.NonPublicAddress, null)]
    public void EvaluateResolvedAddress_DecidesLikeAnIpLiteral(string text, int port, EgressVerdict verdict, EgressReason reason, string? rule)
    {
        var address = IPAddress.Parse(text);

        var decision = Snapshot().EvaluateResolvedAddress(address, port, "s");

        decision.Verdict.Should().Be(verdict);
        decision.Reason.Should().Be(reason);
        decision.Rule.Should().Be(rule);
        decision.PolicyGeneration.Should().Be(4);
        decision.Target.Kind.Should().Be(EgressTargetKind.IpAddress);
        decision.Target.Address.Should().BeSameAs(address);
        decision.Target.Port.Should().Be(port);
        decision.Target.Host.Should().Be(address.ToString());
    }

    [Theory]
    [InlineData("203.0.113.7")]
    [InlineData("10.20.0.5")]
    [InlineData("198.51.100.1")]
    public void EvaluateResolvedAddress_AgreesWithTheIpLiteralPath(string text)
    {
        var snapshot = Snapshot(EgressMode.Strict, "10.20.0.0/16");

        var resolved = snapshot.EvaluateResolvedAddress(IPAddress.Parse(text), 443, null);
        var literal = snapshot.Evaluate(text, 443, null);

        resolved.Verdict.Should().Be(literal.Verdict);
        resolved.Reason.Should().Be(literal.Reason);
        resolved.Rule.Should().Be(literal.Rule);
    }

    [Fact]
    public void EvaluateResolvedAddress_PrivateAllow_SkipsOnlyTheNonPublicStep()
    {
        var snapshot = Snapshot(EgressMode.Strict, "10.20.0.0/16", "10.99.0.0/16");

        snapshot.EvaluateResolvedAddress(IPAddress.Parse("10.20.0.5"), 443, null).Reason.Should().Be(EgressReason.Allowlisted);
        snapshot.EvaluateResolvedAddress(IPAddress.Parse("::ffff:10.20.0.5"), 443, null).Reason.Should().Be(EgressReason.Allowlisted);
        snapshot.EvaluateResolvedAddress(IPAddress.Parse("10.99.0.5"), 443, null).Reason.Should().Be(EgressReason.NotAllowlisted, "a trusted prefix still needs a cidr rule");
        snapshot.EvaluateResolvedAddress(IPAddress.Parse("10.21.0.5"), 443, null).Reason.Should().Be(EgressReason.NonPublicAddress);
    }

    [Fact]
    public void EvaluateResolvedAddress_LearnMode_NeverLearnsAnAddress()
    {
        var recorder = new LearnedHostRecorder();
        var snapshot = EgressPolicySnapshot.Create(Encoding.UTF8.GetBytes(Json), learnedHosts: recorder, options: new KarsEgressOptions { Mode = EgressMode.Learn });

        var decision = snapshot.EvaluateResolvedAddress(IPAddress.Parse("198.51.100.1"), 443, "s");

        decision.Reason.Should().Be(EgressReason.NotAllowlisted);
        decision.Mode.Should().Be(EgressMode.Learn);
        recorder.Count.Should().Be(0);
    }

    [Fact]
    public void EvaluateResolvedAddress_BadInput_DeniesAsInvalidTarget()
    {
        var snapshot = Snapshot();

        snapshot.EvaluateResolvedAddress(null!, 443, null).Reason.Should().Be(EgressReason.InvalidTarget);
        var port = snapshot.EvaluateResolvedAddress(IPAddress.Parse("203.0.113.7"), 0, null);
        port.Reason.Should().Be(EgressReason.InvalidTarget);
        port.TargetError.Should().Be(EgressTargetError.InvalidPort);
        snapshot.EvaluateResolvedAddress(IPAddress.Parse("203.0.113.7"), 65536, null).Reason.Should().Be(EgressReason.InvalidTarget);
    }

    [Fact]
    public void EvaluateResolvedAddress_AllocatesNothing()
    {
        var snapshot = Snapshot(EgressMode.Strict, "10.20.0.0/16");
        // Fresh instances, as a resolver returns them: nothing is cached in the addresses between the warm-up and the
        // measured loop that the evaluation could depend on.
        IPAddress[] addresses =
        [
            .. new[] { "203.0.113.7", "198.51.100.1", "10.20.0.5", "127.0.0.1", "2001:db8::5", "fe80::1", "::ffff:203.0.113.7", "::ffff:10.0.0.1" }
                .Select(IPAddress.Parse),
        ];

        // Steady state (SteadyStateAllocation): one measured loop could catch a one-off allocation of the runtime while
        // the JIT swaps tiers, which happens on a wall-clock delay and so more often on a loaded machine.
        int allowed = 0;
        int rounds = 0;
        long allocated = SteadyStateAllocation.Measure(() =>
        {
            rounds++;
            for (int i = 0; i < 10_000; i++)
            {
                foreach (var address in addresses)
                {
                    allowed += snapshot.EvaluateResolvedAddress(address, 443, "s").IsAllowed ? 1 : 0;
                }
            }
        });

        allocated.Should().Be(0);
        allowed.Should().Be(10_000 * 4 * rounds);
    }
}
