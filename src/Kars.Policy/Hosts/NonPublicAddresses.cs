using System.Net;

namespace Kars.Policy.Hosts;

/// <summary>The address ranges that are never reachable from a sandbox (DESIGN §2.3 step 3).</summary>
internal static class NonPublicAddresses
{
    private static readonly IPNetwork[] Ranges =
    [
        // STUB (replaced by the Hosts work): IPv4 ranges only, and no mapped forms.
        IPNetwork.Parse("0.0.0.0/8"), IPNetwork.Parse("10.0.0.0/8"), IPNetwork.Parse("100.64.0.0/10"),
        IPNetwork.Parse("127.0.0.0/8"), IPNetwork.Parse("169.254.0.0/16"), IPNetwork.Parse("172.16.0.0/12"),
        IPNetwork.Parse("192.0.0.0/24"), IPNetwork.Parse("192.168.0.0/16"), IPNetwork.Parse("198.18.0.0/15"),
        IPNetwork.Parse("224.0.0.0/4"), IPNetwork.Parse("240.0.0.0/4"),
    ];

    /// <summary>Returns whether <paramref name="address"/> is in a non-public range (including IPv4-mapped and -compatible IPv6 forms).</summary>
    public static bool Contains(IPAddress address)
    {
        foreach (var range in Ranges)
        {
            if (range.Contains(address))
            {
                return true;
            }
        }

        return false;
    }
}
