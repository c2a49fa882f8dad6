using System.IO.Abstractions.TestingHelpers;
using System.Text;
using Kars.Policy.Egress;
using Microsoft.Extensions.Time.Testing;
using static Kars.Policy.Tests.Egress.EgressTestHelpers;

namespace Kars.Policy.Tests.Egress;

/// <summary>
/// The hot path allocates nothing for a canonical DNS name (DESIGN §2.6), checked at benchmark scale (10,000 allow
/// rules, 330,000 feed entries) on decision-cache misses: 4,096 distinct names are evaluated in turn, far more than the
/// 64-entry per-thread cache holds, and the compiled snapshot is also evaluated directly, with no cache in front.
/// </summary>
/// <remarks>Deterministic: the data is seeded; the names are warmed first (JIT tiers, the lazily cached blocklist rule
/// texts); and a measured round counts only this thread's allocations. A real allocation on the hot path allocates in
/// every round, so the test passes when one of up to five rounds allocates nothing: a one-off allocation while the JIT
/// swaps tiers under a loaded machine cannot fail it, and a per-decision allocation cannot pass it.</remarks>
public class AllocationTests
{
    private const int Rounds = 5;

    private static readonly Lazy<ScaleData> Data = new(() => new ScaleData(42));

    [Theory]
    [InlineData(EgressMode.Strict)]
    [InlineData(EgressMode.Learn)]
    public void Evaluate_BenchmarkScaleCacheMisses_AllocatesNothing(EgressMode mode)
    {
        var data = Data.Value;
        var fs = data.FileSystem();
        var policy = EgressPolicy.Load(PolicyPath, new KarsEgressOptions { Mode = mode }, fs, new FakeTimeProvider(Start));
        policy.IsLoaded.Should().BeTrue();
        var targets = data.Queries.Select(h => EgressTestHelpers.DnsTarget(h, 443)).ToArray();

        int allowed = 0;
        long[] rounds = MeasureRounds(() =>
        {
            foreach (string host in data.Queries)
            {
                allowed += policy.Evaluate(host, 443, "sandbox").IsAllowed ? 1 : 0;
            }

            foreach (var target in targets)
            {
                allowed += policy.Evaluate(target, "sandbox").IsAllowed ? 1 : 0;
            }
        });

        rounds.Should().Contain(0, "a canonical DNS name must be decided without allocating (bytes per round: {0})", string.Join(", ", rounds));
        allowed.Should().BeGreaterThan(0);
    }

    [Fact]
    public void CompiledPolicyEvaluate_BenchmarkScaleNoCache_AllocatesNothingAndDecidesEveryKind()
    {
        var data = Data.Value;
        var snapshot = new PolicyLoader(data.FileSystem(), new KarsEgressOptions()).Load(PolicyPath);
        snapshot.NameCount.Should().Be(EgressScale.Rules + EgressScale.Blocked);
        var targets = data.Queries.Select(h => EgressTestHelpers.DnsTarget(h, 443)).ToArray();
        var time = new FakeTimeProvider(Start);
        var reasons = new int[16];

        long[] rounds = MeasureRounds(() =>
        {
            foreach (var target in targets)
            {
                reasons[(int)snapshot.Evaluate(target, EgressMode.Strict, time, out _, out _).Reason]++;
            }
        });

        rounds.Should().Contain(0, "bytes per round: {0}", string.Join(", ", rounds));
        reasons[(int)EgressReason.Allowlisted].Should().BeGreaterThan(0);
        reasons[(int)EgressReason.Blocklisted].Should().BeGreaterThan(0);
        reasons[(int)EgressReason.NotAllowlisted].Should().BeGreaterThan(0);
    }

    /// <summary>Warms up (three passes), then measures up to <see cref="Rounds"/> rounds and returns the bytes each
    /// allocated on this thread, stopping at the first round that allocated nothing.</summary>
    private static long[] MeasureRounds(Action pass)
    {
        for (int i = 0; i < 3; i++)
        {
            pass();
        }

        var allocated = new List<long>();
        for (int round = 0; round < Rounds; round++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            pass();
            pass();
            allocated.Add(GC.GetAllocatedBytesForCurrentThread() - before);
            if (allocated[^1] == 0)
            {
                break;
            }
        }

        return [.. allocated];
    }

    /// <summary>The benchmark's data shape (<c>EgressBenchmarks</c>): 7,000 exact and 3,000 wildcard rules, a 330,000-line
    /// feed, and 4,096 queries (a quarter each: exact hits, names below a wildcard, blocklisted names or their
    /// subdomains, names nothing lists). Seeded, no downloads.</summary>
    private sealed class ScaleData
    {
        private static readonly string[] Tlds = ["com", "net", "org", "io", "xyz", "top", "info", "ru", "cn", "de"];
        private readonly string _policy;
        private readonly string _feed;

        public ScaleData(int seed)
        {
            var random = new Random(seed);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            string Label() => RandomLabel(random, random.Next(5, 12));
            string Tld() => Tlds[random.Next(Tlds.Length)];
            string Unique(Func<string> make)
            {
                while (true)
                {
                    string s = make();
                    if (seen.Add(s))
                    {
                        return s;
                    }
                }
            }

            string[] exact = [.. Enumerable.Range(0, 7_000).Select(_ => Unique(() => $"api.{Label()}.{Tld()}"))];
            string[] wildcard = [.. Enumerable.Range(0, EgressScale.Rules - 7_000).Select(_ => Unique(() => $"{Label()}.{Tld()}"))];
            string[] blocked = [.. Enumerable.Range(0, EgressScale.Blocked).Select(i => Unique(() => i % 3 == 0 ? $"{Label()}.{Label()}.{Tld()}" : $"{Label()}.{Tld()}"))];
            Queries = [.. Enumerable.Range(0, 4096).Select(i => (i % 4) switch
            {
                0 => exact[random.Next(exact.Length)],
                1 => $"{Label()}.{wildcard[random.Next(wildcard.Length)]}",
                2 => random.Next(2) == 0 ? blocked[random.Next(blocked.Length)] : $"www.{blocked[random.Next(blocked.Length)]}",
                _ => $"{Label()}.{Label()}.{Tld()}",
            })];

            var policy = new StringBuilder("{\"schemaVersion\":1,\"generation\":1,\"allow\":[");
            policy.AppendJoin(',', exact.Select(h => $"{{\"host\":\"{h}\"}}"));
            policy.Append(',');
            policy.AppendJoin(',', wildcard.Select(h => $"{{\"host\":\"*.{h}\"}}"));
            policy.Append("],\"blocklist\":{\"files\":[\"feed.txt\"]}}");
            _policy = policy.ToString();
            _feed = string.Join('\n', blocked) + "\n";
        }

        public string[] Queries { get; }

        public MockFileSystem FileSystem() => FileSystemWith(_policy, ("/policies/feed.txt", _feed));

        private static string RandomLabel(Random random, int length)
        {
            const string Alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
            Span<char> chars = stackalloc char[length];
            chars[0] = Alphabet[random.Next(26)];
            for (int i = 1; i < length; i++)
            {
                chars[i] = Alphabet[random.Next(Alphabet.Length)];
            }

            return new string(chars);
        }
    }
}

internal static class EgressScale
{
    public const int Rules = 10_000;
    public const int Blocked = 330_000;
}
