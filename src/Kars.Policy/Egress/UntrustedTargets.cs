using System.Net.Sockets;

namespace Kars.Policy.Egress;

/// <summary>
/// Checks an <see cref="EgressTarget"/> the engine did not produce itself (one handed to a public
/// <c>Evaluate(in EgressTarget, …)</c>) before it is decided.
/// </summary>
/// <remarks>
/// <para><see cref="EgressTarget.TryCreateDnsName"/> lives in <c>Kars.Policy.Abstractions</c>, which has no IDNA tables,
/// so it checks the shape of a name but not the punycode of its <c>xn--</c> labels; and a value type can be forged
/// with reflection. The engine therefore treats a target like any other input: a DNS-name target goes through exactly
/// the parser a host and port given as text go through (<see cref="EgressTargetParser.TryParseHost"/>), so a target
/// never gets a decision its text would not get. A canonical name takes the parser's allocation-free fast path and the
/// same string comes back. An address target is rebuilt from its address if it is one the parser could have produced
/// (IPv4 or IPv6 without a zone id, port 1–65535).</para>
/// <para>Decisions already in a thread's decision cache are keyed by canonical host text and port, so the public
/// entry point may answer from the cache before calling this: a target whose host and port equal a cached key
/// <em>is</em> that canonical target.</para>
/// </remarks>
internal static class UntrustedTargets
{
    /// <summary>Re-derives the canonical target from an untrusted one.</summary>
    /// <param name="untrusted">The target as handed in.</param>
    /// <param name="target">The canonical target to decide, when the method returns <see langword="true"/>.</param>
    /// <param name="error">Why the target cannot be decided, or <see cref="EgressTargetError.None"/>.</param>
    /// <returns><see langword="true"/> when the target is one the parser accepts.</returns>
    public static bool TryCanonicalize(in EgressTarget untrusted, out EgressTarget target, out EgressTargetError error)
    {
        if (!untrusted.IsValid)
        {
            target = default;
            error = EgressTargetError.Empty;
            return false;
        }

        switch (untrusted.Kind)
        {
            case EgressTargetKind.DnsName:
                return EgressTargetParser.TryParseHost(untrusted.Host, untrusted.Port, out target, out error);

            case EgressTargetKind.IpAddress:
                target = default;
                if (untrusted.Port is < 1 or > 65535)
                {
                    error = EgressTargetError.InvalidPort;
                    return false;
                }

                // The parser never produces a zone id ("[fe80::1%eth0]" is refused), so a target must not carry one.
                if (untrusted.Address is not { } address
                    || address.AddressFamily is not (AddressFamily.InterNetwork or AddressFamily.InterNetworkV6)
                    || (address.AddressFamily == AddressFamily.InterNetworkV6 && address.ScopeId != 0))
                {
                    error = EgressTargetError.InvalidIPAddress;
                    return false;
                }

                target = EgressTarget.FromAddress(address, untrusted.Port);
                error = EgressTargetError.None;
                return true;

            default:
                target = default;
                error = EgressTargetError.Malformed;
                return false;
        }
    }
}
