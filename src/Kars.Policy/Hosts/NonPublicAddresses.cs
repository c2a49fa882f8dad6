using System.Buffers.Binary;
using System.Net;

namespace Kars.Policy.Hosts;

/// <summary>The address ranges that are never reachable from a sandbox (DESIGN §2.3 step 3).</summary>
/// <remarks>
/// <para>IPv4: 0.0.0.0/8, 10/8, 100.64/10, 127/8, 169.254/16, 172.16/12, 192.0.0/24, 192.168/16, 198.18/15,
/// 224/4 and 240/4.</para>
/// <para>IPv6: ::/128, ::1, fc00::/7, fe80::/10, ff00::/8, 64:ff9b::/96 (NAT64), 2002::/16 (6to4), 2001::/32
/// (Teredo); the IPv4-mapped (<c>::ffff:a.b.c.d</c>) and SIIT-translated (<c>::ffff:0:a.b.c.d</c>) forms of the
/// IPv4 ranges; and, beyond the design's list, the whole deprecated IPv4-compatible block ::/96 (which contains
/// <c>::a.b.c.d</c> for every IPv4 range as well as :: and ::1), the local-use NAT64 prefix 64:ff9b:1::/48
/// (RFC 8215) and the deprecated site-local fec0::/10.</para>
/// <para>Stateless, allocation-free and safe to call from any thread.</para>
/// </remarks>
internal static class NonPublicAddresses
{
    // (network, mask) pairs of the IPv4 ranges, host byte order.
    private static readonly (uint Network, uint Mask)[] V4Ranges =
    [
        (0x00000000, 0xFF000000), // 0.0.0.0/8
        (0x0A000000, 0xFF000000), // 10.0.0.0/8
        (0x64400000, 0xFFC00000), // 100.64.0.0/10
        (0x7F000000, 0xFF000000), // 127.0.0.0/8
        (0xA9FE0000, 0xFFFF0000), // 169.254.0.0/16
        (0xAC100000, 0xFFF00000), // 172.16.0.0/12
        (0xC0000000, 0xFFFFFF00), // 192.0.0.0/24
        (0xC0A80000, 0xFFFF0000), // 192.168.0.0/16
        (0xC6120000, 0xFFFE0000), // 198.18.0.0/15
        (0xE0000000, 0xF0000000), // 224.0.0.0/4
        (0xF0000000, 0xF0000000), // 240.0.0.0/4
    ];

    /// <summary>Returns whether <paramref name="address"/> is in a non-public range (including IPv4-mapped and -compatible IPv6 forms).</summary>
    /// <param name="address">The address to classify.</param>
    /// <returns><see langword="true"/> when the address must not be reached; also for an address of an unknown family (fail closed).</returns>
    /// <exception cref="ArgumentNullException"><paramref name="address"/> is <see langword="null"/>.</exception>
    public static bool Contains(IPAddress address)
    {
        ArgumentNullException.ThrowIfNull(address);
        Span<byte> bytes = stackalloc byte[16];
        if (!address.TryWriteBytes(bytes, out int written))
        {
            return true;
        }

        return written switch
        {
            4 => ContainsV4(BinaryPrimitives.ReadUInt32BigEndian(bytes)),
            16 => ContainsV6(bytes),
            _ => true,
        };
    }

    /// <summary>Returns whether the IPv4 address <paramref name="address"/> (host byte order) is non-public.</summary>
    /// <param name="address">The address as a 32-bit number, most significant octet first.</param>
    /// <returns><see langword="true"/> when the address is in a non-public IPv4 range.</returns>
    internal static bool ContainsV4(uint address)
    {
        foreach (var (network, mask) in V4Ranges)
        {
            if ((address & mask) == network)
            {
                return true;
            }
        }

        return false;
    }

    private static bool ContainsV6(ReadOnlySpan<byte> b)
    {
        ushort first = BinaryPrimitives.ReadUInt16BigEndian(b);
        uint embeddedV4 = BinaryPrimitives.ReadUInt32BigEndian(b[12..]);

        // ::/96: ::, ::1 and the deprecated IPv4-compatible ::a.b.c.d. Nothing public lives here.
        if (b[..12].IndexOfAnyExcept((byte)0) < 0)
        {
            return true;
        }

        // ::ffff:0:0/96 (IPv4-mapped) and ::ffff:0:0:0/96 (SIIT IPv4-translated): classify the embedded address.
        if (b[..8].IndexOfAnyExcept((byte)0) < 0)
        {
            uint middle = BinaryPrimitives.ReadUInt32BigEndian(b[8..]);
            if (middle is 0x0000FFFF or 0xFFFF0000)
            {
                return ContainsV4(embeddedV4);
            }

            return false;
        }

        // 64:ff9b::/96 (NAT64 well-known prefix) and 64:ff9b:1::/48 (local-use NAT64).
        if (first == 0x0064 && BinaryPrimitives.ReadUInt16BigEndian(b[2..]) == 0xFF9B)
        {
            if (b[4..12].IndexOfAnyExcept((byte)0) < 0)
            {
                return true;
            }

            if (BinaryPrimitives.ReadUInt16BigEndian(b[4..]) == 0x0001)
            {
                return true;
            }

            return false;
        }

        return first switch
        {
            0x2002 => true, // 2002::/16, 6to4
            0x2001 => BinaryPrimitives.ReadUInt16BigEndian(b[2..]) == 0x0000, // 2001::/32, Teredo
            _ when (first & 0xFE00) == 0xFC00 => true, // fc00::/7, unique local
            _ when (first & 0xFFC0) == 0xFE80 => true, // fe80::/10, link-local
            _ when (first & 0xFFC0) == 0xFEC0 => true, // fec0::/10, deprecated site-local
            _ when (first & 0xFF00) == 0xFF00 => true, // ff00::/8, multicast
            _ => false,
        };
    }
}
