namespace Kars.Policy.Egress;

/// <summary>What an <see cref="EgressTarget"/> names.</summary>
public enum EgressTargetKind
{
    /// <summary>A DNS host name in canonical form: UTS-46 ASCII (punycode), lower case, no trailing dot.</summary>
    DnsName = 0,

    /// <summary>An IPv4 or IPv6 address literal.</summary>
    IpAddress = 1,
}
