using System.Net;

namespace Kars.Policy.Egress;

/// <summary>
/// The egress decision seam that adapters depend on: the HttpClient handler and connect callback,
/// the Azure SDK and System.ClientModel pipeline policies, and the ASP.NET Core middleware.
/// </summary>
/// <remarks>
/// Every overload takes the sandbox (pass <see langword="null"/> when the host has none), so a decision is
/// always attributed the same way whichever form the destination arrives in. Implementations are thread-safe and never throw for bad input: a destination that cannot be read
/// unambiguously is a <see cref="EgressVerdict.Deny"/> with <see cref="EgressReason.InvalidTarget"/>,
/// and no loaded policy is a deny with <see cref="EgressReason.NoPolicy"/>. Tests can fake this
/// interface; hosts normally use the engine's monitor, which implements it over the current snapshot.
/// </remarks>
public interface IEgressPolicy
{
    /// <summary>Decides a destination that was already parsed.</summary>
    /// <param name="target">The normalised destination. Implementations treat it as input, not as proof of canonical
    /// form: the engine decides it exactly as its <see cref="EgressTarget.Host"/> and <see cref="EgressTarget.Port"/>
    /// given as text (see <see cref="EgressTarget"/>).</param>
    /// <param name="sandbox">The sandbox identity the host attributes the request to, if any.</param>
    /// <returns>The decision.</returns>
    EgressDecision Evaluate(in EgressTarget target, string? sandbox);

    /// <summary>Decides an absolute URI (its host and effective port).</summary>
    /// <param name="uri">The destination.</param>
    /// <param name="sandbox">The sandbox identity the host attributes the request to, if any.</param>
    /// <returns>The decision.</returns>
    EgressDecision Evaluate(Uri uri, string? sandbox);

    /// <summary>Decides an absolute URL, a <c>host:port</c> authority, or a bare host (port 443).</summary>
    /// <param name="hostOrUrl">The destination as text.</param>
    /// <param name="sandbox">The sandbox identity the host attributes the request to, if any.</param>
    /// <returns>The decision.</returns>
    EgressDecision Evaluate(string hostOrUrl, string? sandbox);

    /// <summary>
    /// Decides an address that a DNS name resolved to, at connect time, the way the policy decides an IP
    /// literal: non-public ranges are denied unless the host allowed them, CIDR rules apply, the blocklist
    /// does not (it names domains). Allocates nothing.
    /// </summary>
    /// <param name="address">The resolved address.</param>
    /// <param name="port">The port about to be connected to (1–65535).</param>
    /// <param name="sandbox">The sandbox identity the host attributes the connection to, if any.</param>
    /// <returns>The decision.</returns>
    EgressDecision EvaluateResolvedAddress(IPAddress address, int port, string? sandbox);
}
