namespace Kars.Policy.Egress;

/// <summary>How a policy treats a DNS name that no rule covers. The default is <see cref="Strict"/>.</summary>
public enum EgressMode
{
    /// <summary>Default deny: only allowlisted or approved destinations pass.</summary>
    Strict = 0,

    /// <summary>Allow and record DNS names that no rule covers, so an operator can review them.
    /// Blocklists, non-public addresses, invalid targets and a missing policy still deny.</summary>
    Learn = 1,
}
