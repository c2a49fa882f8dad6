using Kars.Policy.Egress;
using Kars.Policy.Hosts;
using Kars.Policy.Hosts.Idna;

namespace Kars.Policy.Tests.Hosts;

/// <summary>Allocation is deterministic (unlike timing), so the hot-path promise is checked in tests. Each test
/// measures steady state with <see cref="SteadyStateAllocation"/>, so one-time JIT and runtime work (tiered
/// compilation, on-stack replacement) cannot make it flaky.</summary>
public sealed class HotPathAllocationTests
{
    private const int Iterations = 10_000;

    [Fact]
    public void IsCanonical_ManyCalls_AllocatesNothing()
    {
        string[] names = ["api.github.com", "registry.npmjs.org", "Not.Canonical.com", "foo.123", "a..b"];
        int canonical = 0;

        long allocated = SteadyStateAllocation.Measure(() =>
        {
            for (int i = 0; i < Iterations; i++)
            {
                canonical += DnsNames.IsCanonical(names[i % names.Length]) ? 1 : 0;
            }
        });

        allocated.Should().Be(0);
        (canonical % (2 * Iterations / names.Length)).Should().Be(0, "two of the five names are canonical");
        canonical.Should().BeGreaterThan(0);
    }

    [Fact]
    public void TryParseHost_CanonicalDnsName_AllocatesNothing()
    {
        string[] hosts = ["api.github.com", "registry.npmjs.org", "objects.githubusercontent.com", "_dmarc.example.com"];
        int ok = 0;
        int calls = 0;

        long allocated = SteadyStateAllocation.Measure(() =>
        {
            for (int i = 0; i < Iterations; i++)
            {
                calls++;
                ok += EgressTargetParser.TryParseHost(hosts[i % hosts.Length], 443, out var target, out _) && target.Port == 443 ? 1 : 0;
            }
        });

        allocated.Should().Be(0);
        ok.Should().Be(calls);
    }

    [Fact]
    public void TryParseHost_ValidatedPunycodeName_AllocatesNothing()
    {
        const string host = "xn--pple-43d.hotpath-test.example";
        EgressTargetParser.TryParseHost(host, 443, out _, out _).Should().BeTrue("the first call validates and caches the name");
        int ok = 0;
        int calls = 0;

        long allocated = SteadyStateAllocation.Measure(() =>
        {
            for (int i = 0; i < Iterations; i++)
            {
                calls++;
                ok += EgressTargetParser.TryParseHost(host, 443, out _, out _) ? 1 : 0;
            }
        });

        allocated.Should().Be(0);
        ok.Should().Be(calls);
    }

    [Fact]
    public void TryParseAuthority_CanonicalNameWithoutPort_AllocatesNothing()
    {
        const string authority = "api.github.com";
        int ok = 0;
        int calls = 0;

        long allocated = SteadyStateAllocation.Measure(() =>
        {
            for (int i = 0; i < Iterations; i++)
            {
                calls++;
                ok += EgressTargetParser.TryParseAuthority(authority, 443, out _, out _) ? 1 : 0;
            }
        });

        allocated.Should().Be(0);
        ok.Should().Be(calls);
    }

    [Fact]
    public void Uts46ToAscii_IntoCallerBuffer_AllocatesNothing()
    {
        string[] names = ["B\u00FCcher.example", "\uFF45\uFF58\uFF41\uFF4D\uFF50\uFF4C\uFF45.com", "xn--bcher-kva.example", "\u0628\u200C\u0628.example", "fa\u00DF.de"];
        char[] buffer = new char[256];
        int valid = 0;
        int calls = 0;

        long allocated = SteadyStateAllocation.Measure(() =>
        {
            for (int i = 0; i < 1_000; i++)
            {
                calls++;
                valid += Uts46.ToAscii(names[i % names.Length], buffer, out _) == Uts46Errors.None ? 1 : 0;
            }
        });

        allocated.Should().Be(0);
        valid.Should().Be(calls);
    }

    [Fact]
    public void SteadyStateAllocation_SeesAPerCallAllocation()
    {
        // The measurement itself must not hide real allocations.
        object? sink = null;

        long allocated = SteadyStateAllocation.Measure(() =>
        {
            for (int i = 0; i < 100; i++)
            {
                sink = new object();
            }
        });

        allocated.Should().BeGreaterThanOrEqualTo(100 * IntPtr.Size);
        sink.Should().NotBeNull();
    }
}
