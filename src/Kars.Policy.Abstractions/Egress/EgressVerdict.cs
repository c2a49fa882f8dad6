namespace Kars.Policy.Egress;

/// <summary>The outcome of an egress decision. The default value is <see cref="Deny"/>.</summary>
public enum EgressVerdict
{
    /// <summary>The connection must not be made.</summary>
    Deny = 0,

    /// <summary>The connection may be made.</summary>
    Allow = 1,
}
