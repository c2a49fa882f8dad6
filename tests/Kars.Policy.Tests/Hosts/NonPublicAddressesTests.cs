using System.Net;
using Kars.Policy.Hosts;

namespace Kars.Policy.Tests.Hosts;

public sealed class NonPublicAddressesTests
{
    [Theory]
    [InlineData("0.0.0.0")]
    [InlineData("0.255.255.255")]
    [InlineData("10.0.0.0")]
    [InlineData("10.255.255.255")]
    [InlineData("100.64.0.0")]
    [InlineData("100.127.255.255")]
    [InlineData("127.0.0.1")]
    [InlineData("127.255.255.255")]
    [InlineData("169.254.0.0")]
    [InlineData("169.254.169.254")]
    [InlineData("172.16.0.0")]
    [InlineData("172.31.255.255")]
    [InlineData("192.0.0.0")]
    [InlineData("192.0.0.255")]
    [InlineData("192.168.0.0")]
    [InlineData("192.168.255.255")]
    [InlineData("198.18.0.0")]
    [InlineData("198.19.255.255")]
    [InlineData("224.0.0.1")]
    [InlineData("239.255.255.255")]
    [InlineData("240.0.0.0")]
    [InlineData("255.255.255.255")]
    [InlineData("::")]
    [InlineData("::1")]
    [InlineData("fc00::")]
    [InlineData("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")]
    [InlineData("fe80::")]
    [InlineData("febf:ffff::1")]
    [InlineData("ff00::")]
    [InlineData("ff02::1")]
    [InlineData("64:ff9b::")]
    [InlineData("64:ff9b::a00:1")]
    [InlineData("64:ff9b::808:808")]
    [InlineData("64:ff9b::ffff:ffff")]
    [InlineData("2002::")]
    [InlineData("2002:c000:204::1")]
    [InlineData("2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff")]
    [InlineData("2001::")]
    [InlineData("2001:0:ffff:ffff:ffff:ffff:ffff:ffff")]
    // IPv4-mapped forms of every IPv4 range.
    [InlineData("::ffff:0.0.0.0")]
    [InlineData("::ffff:10.1.2.3")]
    [InlineData("::ffff:100.64.0.1")]
    [InlineData("::ffff:127.0.0.1")]
    [InlineData("::ffff:169.254.169.254")]
    [InlineData("::ffff:172.16.0.1")]
    [InlineData("::ffff:192.0.0.1")]
    [InlineData("::ffff:192.168.1.1")]
    [InlineData("::ffff:198.18.0.1")]
    [InlineData("::ffff:224.0.0.1")]
    [InlineData("::ffff:240.0.0.1")]
    // IPv4-compatible forms (the whole deprecated ::/96 block).
    [InlineData("::0.0.0.2")]
    [InlineData("::10.1.2.3")]
    [InlineData("::127.0.0.1")]
    [InlineData("::169.254.169.254")]
    [InlineData("::192.168.1.1")]
    [InlineData("::8.8.8.8")]
    // SIIT IPv4-translated forms, local-use NAT64, site-local: beyond the design's list.
    [InlineData("::ffff:0:127.0.0.1")]
    [InlineData("::ffff:0:10.0.0.1")]
    [InlineData("64:ff9b:1::")]
    [InlineData("64:ff9b:1:ffff:ffff:ffff:ffff:ffff")]
    [InlineData("fec0::1")]
    [InlineData("feff::1")]
    public void Contains_NonPublicAddress_ReturnsTrue(string text)
    {
        NonPublicAddresses.Contains(IPAddress.Parse(text)).Should().BeTrue();
    }

    [Theory]
    [InlineData("1.1.1.1")]
    [InlineData("8.8.8.8")]
    [InlineData("1.0.0.0")]
    [InlineData("9.255.255.255")]
    [InlineData("11.0.0.0")]
    [InlineData("100.63.255.255")]
    [InlineData("100.128.0.0")]
    [InlineData("126.255.255.255")]
    [InlineData("128.0.0.0")]
    [InlineData("169.253.255.255")]
    [InlineData("169.255.0.0")]
    [InlineData("172.15.255.255")]
    [InlineData("172.32.0.0")]
    [InlineData("191.255.255.255")]
    [InlineData("192.0.1.0")]
    [InlineData("192.0.2.1")]
    [InlineData("192.167.255.255")]
    [InlineData("192.169.0.0")]
    [InlineData("198.17.255.255")]
    [InlineData("198.20.0.0")]
    [InlineData("203.0.113.7")]
    [InlineData("223.255.255.255")]
    [InlineData("2606:4700:4700::1111")]
    [InlineData("2001:4860:4860::8888")]
    [InlineData("2001:1::1")]
    [InlineData("2000::1")]
    [InlineData("2003::1")]
    [InlineData("fbff:ffff::1")]
    [InlineData("fe7f::1")]
    [InlineData("::ffff:8.8.8.8")]
    [InlineData("::ffff:1.1.1.1")]
    [InlineData("::1:0:0:0")]
    [InlineData("::fffe:8.8.8.8")]
    [InlineData("64:ff9b:2::1")]
    [InlineData("64:ff9b:0:1::1")]
    [InlineData("65:ff9b::1")]
    public void Contains_PublicAddress_ReturnsFalse(string text)
    {
        NonPublicAddresses.Contains(IPAddress.Parse(text)).Should().BeFalse();
    }

    [Fact]
    public void Contains_AddressWithScopeId_IsClassifiedByItsBytes()
    {
        var linkLocal = new IPAddress(IPAddress.Parse("fe80::1").GetAddressBytes(), scopeid: 3);

        NonPublicAddresses.Contains(linkLocal).Should().BeTrue();
    }

    [Fact]
    public void Contains_Null_Throws()
    {
        FluentActions.Invoking(() => NonPublicAddresses.Contains(null!)).Should().Throw<ArgumentNullException>();
    }

    [Fact]
    public void ContainsV4_AgreesWithIPNetworkForEveryRangeBoundary()
    {
        string[] ranges =
        [
            "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
            "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
        ];
        var networks = ranges.Select(r => IPNetwork.Parse(r)).ToArray();
        var probes = new List<IPAddress>();
        foreach (var network in networks)
        {
            uint start = ToUInt(network.BaseAddress);
            uint size = network.PrefixLength == 0 ? uint.MaxValue : (1u << (32 - network.PrefixLength)) - 1;
            foreach (long candidate in new long[] { (long)start - 1, start, (long)start + size, (long)start + size + 1 })
            {
                if (candidate is >= 0 and <= uint.MaxValue)
                {
                    probes.Add(FromUInt((uint)candidate));
                }
            }
        }

        foreach (var probe in probes)
        {
            bool expected = networks.Any(n => n.Contains(probe));
            NonPublicAddresses.Contains(probe).Should().Be(expected, "{0}", probe);
            NonPublicAddresses.Contains(probe.MapToIPv6()).Should().Be(expected, "the mapped form of {0}", probe);
        }
    }

    [Fact]
    public void Contains_ManyCalls_AllocatesNothing()
    {
        IPAddress[] addresses =
        [
            IPAddress.Parse("8.8.8.8"), IPAddress.Parse("10.0.0.1"), IPAddress.Parse("::ffff:127.0.0.1"),
            IPAddress.Parse("2606:4700:4700::1111"), IPAddress.Parse("64:ff9b::1"),
        ];
        int hits = 0;
        int calls = 0;

        long allocated = SteadyStateAllocation.Measure(() =>
        {
            for (int i = 0; i < 10_000; i++)
            {
                calls++;
                hits += NonPublicAddresses.Contains(addresses[i % addresses.Length]) ? 1 : 0;
            }
        });

        allocated.Should().Be(0);
        hits.Should().Be(calls / 5 * 3, "three of the five addresses are non-public");
    }

    private static uint ToUInt(IPAddress address)
    {
        byte[] b = address.GetAddressBytes();
        return ((uint)b[0] << 24) | ((uint)b[1] << 16) | ((uint)b[2] << 8) | b[3];
    }

    private static IPAddress FromUInt(uint value) =>
        new([(byte)(value >> 24), (byte)(value >> 16), (byte)(value >> 8), (byte)value]);
}
