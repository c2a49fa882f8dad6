namespace Kars.Policy.Egress;

/// <summary>Why an egress decision came out the way it did. The first matching step of the
/// decision order wins; see <c>docs/egress.md</c>.</summary>
public enum EgressReason
{
    /// <summary>No policy is loaded (no bundle and no last-known-good): denied in every mode.</summary>
    NoPolicy = 0,

    /// <summary>The target could not be parsed or is ambiguous: denied.</summary>
    InvalidTarget = 1,

    /// <summary>The target is an IP address in a non-public range (loopback, private, link-local,
    /// cloud metadata, multicast, NAT64, 6to4, …): denied in every mode.</summary>
    NonPublicAddress = 2,

    /// <summary>The host or one of its parent domains is on a blocklist: denied in every mode.</summary>
    Blocklisted = 3,

    /// <summary>No rule matches the host: denied (Strict mode).</summary>
    NotAllowlisted = 4,

    /// <summary>A rule matches the host but not the port: denied.</summary>
    PortNotAllowed = 5,

    /// <summary>An allow rule matches the host and port: allowed.</summary>
    Allowlisted = 6,

    /// <summary>An active time-boxed approval matches the host and port: allowed.</summary>
    Approved = 7,

    /// <summary>Learn mode allowed a DNS name no rule covers, and recorded it.
    /// <see cref="EgressDecision.WouldDeny"/> is <see langword="true"/>.</summary>
    Learned = 8,
}
