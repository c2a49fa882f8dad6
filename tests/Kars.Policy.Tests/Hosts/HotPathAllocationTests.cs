using Kars.Policy.Egress;
using Kars.Policy.Hosts;

namespace Kars.Policy.Tests.Hosts;

/// <summary>Allocation is deterministic (unlike timing), so the hot-path promise is checked in tests.</summary>
public sealed class HotPathAllocationTests
{
    private const int Iterations = 10_000;

    [Fact]
    public void IsCanonical_ManyCalls_AllocatesNothing()
    {
        string[] names = ["api.github.com", "registry.npmjs.org", "Not.Canonical.com", "foo.123", "a..b"];
        int canonical = 0;
        foreach (string n in names)
        {
            canonical += DnsNames.IsCanonical(n) ? 1 : 0;
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < Iterations; i++)
        {
            canonical += DnsNames.IsCanonical(names[i % names.Length]) ? 1 : 0;
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        allocated.Should().Be(0);
        canonical.Should().Be(2 + (2 * Iterations / names.Length));
    }

    [Fact]
    public void TryParseHost_CanonicalDnsName_AllocatesNothing()
    {
        string[] hosts = ["api.github.com", "registry.npmjs.org", "objects.githubusercontent.com", "_dmarc.example.com"];
        int ok = 0;
        foreach (string h in hosts)
        {
            ok += EgressTargetParser.TryParseHost(h, 443, out _, out _) ? 1 : 0;
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < Iterations; i++)
        {
            ok += EgressTargetParser.TryParseHost(hosts[i % hosts.Length], 443, out var target, out _) && target.Port == 443 ? 1 : 0;
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        allocated.Should().Be(0);
        ok.Should().Be(hosts.Length + Iterations);
    }

    [Fact]
    public void TryParseHost_ValidatedPunycodeName_AllocatesNothing()
    {
        const string host = "xn--pple-43d.hotpath-test.example";
        EgressTargetParser.TryParseHost(host, 443, out _, out _).Should().BeTrue("the first call validates and caches the name");

        long before = GC.GetAllocatedBytesForCurrentThread();
        int ok = 0;
        for (int i = 0; i < Iterations; i++)
        {
            ok += EgressTargetParser.TryParseHost(host, 443, out _, out _) ? 1 : 0;
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        allocated.Should().Be(0);
        ok.Should().Be(Iterations);
    }

    [Fact]
    public void TryParseAuthority_CanonicalNameWithoutPort_AllocatesNothing()
    {
        const string authority = "api.github.com";
        EgressTargetParser.TryParseAuthority(authority, 443, out _, out _).Should().BeTrue();

        long before = GC.GetAllocatedBytesForCurrentThread();
        int ok = 0;
        for (int i = 0; i < Iterations; i++)
        {
            ok += EgressTargetParser.TryParseAuthority(authority, 443, out _, out _) ? 1 : 0;
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        allocated.Should().Be(0);
        ok.Should().Be(Iterations);
    }
}
