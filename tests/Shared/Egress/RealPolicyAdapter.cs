using System.Net;
using System.Net.Sockets;
using Kars.Policy.Egress;

namespace Kars.Policy.Tests.Shared.Egress;

/// <summary>
/// Test-only adapter from the existing <see cref="EgressPolicy"/> to <see cref="IEgressPolicy"/>, until the engine
/// implements the seam itself (engineer egress-shape). Names go through the real engine. A resolved address is
/// decided as the IP literal it is, and only the engine's non-public-address verdict is kept: such an address is
/// denied unless <see cref="KarsEgressOptions.PrivateAllow"/> covers it; any other address of an allowed name is
/// allowed (no CIDR rule needed, because the name was already allowed).
/// </summary>
internal sealed class RealPolicyAdapter(EgressPolicy policy) : IEgressPolicy
{
    public EgressDecision Evaluate(in EgressTarget target, string? sandbox) => policy.Evaluate(target, sandbox);

    public EgressDecision Evaluate(Uri uri, string? sandbox) => policy.Evaluate(uri);

    public EgressDecision Evaluate(string hostOrUrl, string? sandbox) => policy.Evaluate(hostOrUrl);

    public EgressDecision EvaluateResolvedAddress(IPAddress address, int port, string? sandbox)
    {
        string literal = address.AddressFamily == AddressFamily.InterNetworkV6 ? $"[{address}]" : address.ToString();
        var decision = policy.Evaluate(literal, port, sandbox);
        return decision.Reason is EgressReason.NonPublicAddress or EgressReason.InvalidTarget or EgressReason.NoPolicy
            ? decision
            : new EgressDecision(EgressVerdict.Allow, EgressReason.Allowlisted, decision.Target, EgressTargetError.None, null, decision.Mode, decision.PolicyDigest, decision.PolicyGeneration, false);
    }
}
