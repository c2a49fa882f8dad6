namespace Kars.Policy.Egress;

/// <summary>
/// Where the labels of a canonical DNS name are, as
/// <see cref="EgressTarget.TryCreateDnsName(string?, int, out EgressTarget, out DnsNameLabels)"/> found them while it
/// checked the name: a policy engine that walks the name's suffixes (<c>com</c>, <c>example.com</c>,
/// <c>api.example.com</c>) reads them from here instead of searching the name a second time.
/// </summary>
/// <remarks>A value means something only together with the host it was created for: <see cref="DotMask"/> is 0 for a
/// name of one label and for any name longer than 64 characters, and the default value (what a refused name gets) looks
/// the same as the labels of a one-label name without an A-label.</remarks>
public readonly struct DnsNameLabels
{
    internal DnsNameLabels(ulong dotMask, bool hasAceLabel)
    {
        DotMask = dotMask;
        HasAceLabel = hasAceLabel;
    }

    /// <summary>Gets, for a name of at most 64 characters, a mask with bit <c>i</c> set when character <c>i</c> of the
    /// name is a dot (a label starts at 0 and after each set bit); 0 for a name of one label and for a name longer than
    /// 64 characters, whose dots are not recorded (read the mask only when the host has at most 64 characters).</summary>
    public ulong DotMask { get; }

    /// <summary>Gets a value indicating whether a label of the name starts with <c>xn--</c> (an IDNA A-label, whose
    /// punycode the factory does not check).</summary>
    public bool HasAceLabel { get; }
}
