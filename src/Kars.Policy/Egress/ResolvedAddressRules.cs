using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Kars.Policy.Hosts;

namespace Kars.Policy.Egress;

/// <summary>
/// The CIDR rules and trusted private prefixes of one snapshot in a form the connect-time check can match without
/// allocating: every prefix as a 128-bit network and mask, IPv4 in its IPv4-mapped IPv6 form (<c>::ffff:a.b.c.d</c>),
/// so an IPv4-mapped IPv6 address decides exactly as its IPv4 address. Immutable.
/// </summary>
internal sealed class ResolvedAddressRules
{
    private static readonly UInt128 MappedPrefix = new(0, 0x0000_FFFF_0000_0000UL);

    private readonly Prefix[] _rules;
    private readonly Prefix[] _privateAllow;

    private ResolvedAddressRules(Prefix[] rules, Prefix[] privateAllow)
    {
        _rules = rules;
        _privateAllow = privateAllow;
    }

    public static ResolvedAddressRules From(CompiledPolicy policy)
    {
        var rules = new Prefix[policy.CidrRules.Length];
        for (int i = 0; i < rules.Length; i++)
        {
            rules[i] = Prefix.Of(policy.CidrRules[i].Network, i);
        }

        var allow = new Prefix[policy.PrivateAllow.Length];
        for (int i = 0; i < allow.Length; i++)
        {
            allow[i] = Prefix.Of(policy.PrivateAllow[i], -1);
        }

        return new ResolvedAddressRules(rules, allow);
    }

    /// <summary>Reads an address as 128 bits (IPv4 as IPv4-mapped IPv6). Allocation-free.</summary>
    /// <returns><see langword="false"/> for an address of another family.</returns>
    public static bool TryRead(IPAddress address, out UInt128 value)
    {
        Span<byte> bytes = stackalloc byte[16];
        if (!address.TryWriteBytes(bytes, out int written))
        {
            value = default;
            return false;
        }

        switch (written)
        {
            case 4:
                value = MappedPrefix | BinaryPrimitives.ReadUInt32BigEndian(bytes);
                return true;
            case 16:
                value = BinaryPrimitives.ReadUInt128BigEndian(bytes);
                return true;
            default:
                value = default;
                return false;
        }
    }

    /// <summary>Returns whether the address is inside a trusted private prefix.</summary>
    public bool InPrivateAllow(UInt128 address)
    {
        foreach (ref readonly Prefix prefix in _privateAllow.AsSpan())
        {
            if ((address & prefix.Mask) == prefix.Network)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Finds the first CIDR rule containing the address on the port, else one on another port.</summary>
    /// <returns>The rule index, or -1.</returns>
    public int Match(UInt128 address, int port, CompiledPolicy policy, out bool portMatches)
    {
        int otherPort = -1;
        ReadOnlySpan<CidrRule> cidr = policy.CidrRules;
        foreach (ref readonly Prefix prefix in _rules.AsSpan())
        {
            if ((address & prefix.Mask) != prefix.Network)
            {
                continue;
            }

            if (cidr[prefix.Rule].Ports.Contains(port))
            {
                portMatches = true;
                return prefix.Rule;
            }

            if (otherPort < 0)
            {
                otherPort = prefix.Rule;
            }
        }

        portMatches = false;
        return otherPort;
    }

    /// <summary>Classifies the address the way the policy classifies an IP literal (DESIGN §2.3 step 3), reading an
    /// IPv4-mapped address as its IPv4 address.</summary>
    public static bool IsNonPublic(IPAddress address) =>
        address.AddressFamily is not (AddressFamily.InterNetwork or AddressFamily.InterNetworkV6) || NonPublicAddresses.Contains(address);

    private readonly record struct Prefix(UInt128 Network, UInt128 Mask, int Rule)
    {
        public static Prefix Of(IPNetwork network, int rule)
        {
            TryRead(network.BaseAddress, out UInt128 value);
            int bits = network.BaseAddress.AddressFamily == AddressFamily.InterNetwork ? 96 + network.PrefixLength : network.PrefixLength;
            UInt128 mask = bits == 0 ? UInt128.Zero : UInt128.MaxValue << (128 - bits);
            return new Prefix(value & mask, mask, rule);
        }
    }
}
