using System.Text;
using Kars.Policy.Egress;
using static Kars.Policy.Tests.Egress.EgressTestHelpers;

namespace Kars.Policy.Tests.Egress;

public class AllocationTests
{
    private static EgressPolicy Big(EgressMode mode)
    {
        var feed = new StringBuilder();
        for (int i = 0; i < 5000; i++)
        {
            feed.Append("bad").Append(i).Append(".example\n");
        }

        string json = """
            {"schemaVersion":1,"allow":[{"host":"api.github.com"},{"host":"*.githubusercontent.com"},{"cidr":"203.0.113.0/24"}],
             "blocklist":{"domains":["evil.example"],"files":["f.txt"]},
             "approvals":[{"name":"a","hosts":[{"host":"temp.example.com","port":443}],"reason":"r","effectiveAt":"2030-01-01T00:00:00Z","expiresAt":"2030-01-02T00:00:00Z"}]}
            """;
        return Load(json, new KarsEgressOptions { Mode = mode }, null, ("/policies/f.txt", feed.ToString()));
    }

    [Theory]
    [InlineData(EgressMode.Strict)]
    [InlineData(EgressMode.Learn)]
    public void Evaluate_CanonicalDnsNames_AllocatesNothing(EgressMode mode)
    {
        var policy = Big(mode);
        string[] hosts = ["api.github.com", "raw.githubusercontent.com", "x.bad42.example", "sub.evil.example", "nothing.example.org", "temp.example.com"];
        var targets = hosts.Select(h => EgressTargetParser.FromCanonicalDnsName(h, 443)).ToArray();

        // Warm up: JIT, lazily cached blocklist rule text, first learned record.
        for (int i = 0; i < 100; i++)
        {
            foreach (var t in targets)
            {
                policy.Evaluate(t, "sandbox");
                policy.Evaluate(t.Host, 443, "sandbox");
            }
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        int allowed = 0;
        for (int i = 0; i < 10_000; i++)
        {
            foreach (var t in targets)
            {
                allowed += policy.Evaluate(t, "sandbox").IsAllowed ? 1 : 0;
                allowed += policy.Evaluate(t.Host, 443, "sandbox").IsAllowed ? 1 : 0;
            }
        }

        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;

        allocated.Should().Be(0);
        allowed.Should().BeGreaterThan(0);
    }
}
