using System.Text;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using Kars.Policy.Egress;

namespace Kars.Policy.Benchmarks;

/// <summary>Deterministic synthetic egress data: 10,000 allow rules (7,000 exact, 3,000 <c>*.</c> wildcards) and a
/// 330,000-entry blocklist feed, written to a temporary folder as a native policy document plus feed file.</summary>
internal sealed class EgressData
{
    public const int AllowRules = 10_000;
    public const int BlockEntries = 330_000;

    private static readonly string[] Tlds = ["com", "net", "org", "io", "xyz", "top", "info", "ru", "cn", "de"];

    public EgressData(int seed = 42)
    {
        var random = new Random(seed);
        var seen = new HashSet<string>(StringComparer.Ordinal);
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

        string Label() => RandomLabel(random, random.Next(5, 12));
        string Tld() => Tlds[random.Next(Tlds.Length)];

        Exact = [.. Enumerable.Range(0, 7_000).Select(_ => Unique(() => $"api.{Label()}.{Tld()}"))];
        WildcardBases = [.. Enumerable.Range(0, 3_000).Select(_ => Unique(() => $"{Label()}.{Tld()}"))];
        Blocked = [.. Enumerable.Range(0, BlockEntries).Select(i => Unique(() => i % 3 == 0 ? $"{Label()}.{Label()}.{Tld()}" : $"{Label()}.{Tld()}"))];

        // Queries: a quarter exact allow hits, a quarter wildcard subdomains, a quarter blocklist names or their
        // subdomains, a quarter names nothing lists.
        var queries = new List<string>();
        for (int i = 0; i < 4096; i++)
        {
            queries.Add((i % 4) switch
            {
                0 => Exact[random.Next(Exact.Length)],
                1 => $"{Label()}.{WildcardBases[random.Next(WildcardBases.Length)]}",
                2 => random.Next(2) == 0 ? Blocked[random.Next(Blocked.Length)] : $"www.{Blocked[random.Next(Blocked.Length)]}",
                _ => $"{Label()}.{Label()}.{Tld()}",
            });
        }

        // Copies: a host a proxy or handler decides is parsed from a request, never the object a rule set holds. Reusing
        // the rule's own string let the probe's equality check compare a string with itself (memory already in cache).
        Cold = [.. queries.OrderBy(_ => random.Next()).Select(q => new string(q.AsSpan()))];
        Warm = [.. Cold.Take(8)];
    }

    public string[] Exact { get; }

    public string[] WildcardBases { get; }

    public string[] Blocked { get; }

    public string[] Cold { get; }

    public string[] Warm { get; }

    public string WriteTo(string folder)
    {
        Directory.CreateDirectory(folder);
        var policy = new StringBuilder("{\"schemaVersion\":1,\"generation\":1,\"allow\":[");
        policy.AppendJoin(',', Exact.Select(h => $"{{\"host\":\"{h}\"}}"));
        policy.Append(',');
        policy.AppendJoin(',', WildcardBases.Select(h => $"{{\"host\":\"*.{h}\"}}"));
        policy.Append("],\"blocklist\":{\"files\":[\"feed.txt\"]}}");
        string path = Path.Combine(folder, "policy.json");
        File.WriteAllText(path, policy.ToString());
        WriteFeed(Path.Combine(folder, "feed.txt"));
        return path;
    }

    public void WriteFeed(string path)
    {
        var feed = new StringBuilder("# synthetic feed\n");
        foreach (string domain in Blocked)
        {
            feed.Append(domain).Append('\n');
        }

        File.WriteAllText(path, feed.ToString());
    }

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

/// <summary>The naive baseline of the cold lookup: every suffix of a name (left to right) probed in three
/// <see cref="HashSet{T}"/>s (blocklist, exact rules, wildcard bases) through a span lookup, so no substring is
/// allocated. Used by <see cref="EgressBenchmarks"/> and <see cref="PairedColdLookup"/>.</summary>
internal sealed class HashSetProbe(EgressData data)
{
    private readonly HashSet<string> _blocked = new(data.Blocked, StringComparer.Ordinal);
    private readonly HashSet<string> _exact = new(data.Exact, StringComparer.Ordinal);
    private readonly HashSet<string> _wildcard = new(data.WildcardBases, StringComparer.Ordinal);

    /// <summary>Decides every host; returns how many were allowed.</summary>
    public int Run(string[] hosts)
    {
        int allowed = 0;
        foreach (string host in hosts)
        {
            if (Decide(host))
            {
                allowed++;
            }
        }

        return allowed;
    }

    /// <summary>Blocklisted self or parent denies; an exact rule or a wildcard base that is a strict parent allows.</summary>
    public bool Decide(string host)
    {
        var blocked = _blocked.GetAlternateLookup<ReadOnlySpan<char>>();
        var wildcard = _wildcard.GetAlternateLookup<ReadOnlySpan<char>>();
        ReadOnlySpan<char> span = host;
        for (int i = 0; i < span.Length; i++)
        {
            if ((i == 0 || span[i - 1] == '.') && blocked.Contains(span[i..]))
            {
                return false;
            }
        }

        if (_exact.Contains(host))
        {
            return true;
        }

        for (int i = 1; i < span.Length; i++)
        {
            if (span[i - 1] == '.' && wildcard.Contains(span[i..]))
            {
                return true;
            }
        }

        return false;
    }
}

/// <summary>
/// Egress decision for canonical DNS names against 10,000 allow rules + a 330,000-entry blocklist (DESIGN §6).
/// Baselines in the same run: a linear glob scan (smokescreen style, without its per-comparison IDNA work) and a
/// per-suffix <see cref="HashSet{T}"/> probe. Each benchmark reports the cost of one decision.
/// </summary>
[MemoryDiagnoser]
[ShortRunJob]
[GroupBenchmarksBy(BenchmarkLogicalGroupRule.ByCategory)]
[CategoriesColumn]
public class EgressBenchmarks
{
    private const int GlobColdQueries = 128;

    private EgressData _data = null!;
    private string _folder = null!;
    private EgressPolicy _policy = null!;
    private string[] _warm = null!;
    private string[] _cold = null!;
    private string[] _coldGlob = null!;
    private string[] _globBlocked = null!;
    private string[] _globExact = null!;
    private string[] _globWildcard = null!;
    private HashSetProbe _probe = null!;

    [GlobalSetup]
    public void Setup()
    {
        _data = new EgressData();
        _folder = Path.Combine(Path.GetTempPath(), "kars-egress-bench-" + Environment.ProcessId);
        _policy = EgressPolicy.Load(_data.WriteTo(_folder));
        _warm = _data.Warm;
        _cold = _data.Cold;
        _coldGlob = [.. _data.Cold.Take(GlobColdQueries)];
        _globBlocked = _data.Blocked;
        _globExact = _data.Exact;
        _globWildcard = _data.WildcardBases;
        _probe = new HashSetProbe(_data);
    }

    [GlobalCleanup]
    public void Cleanup() => Directory.Delete(_folder, recursive: true);

    [Benchmark(OperationsPerInvoke = 8)]
    [BenchmarkCategory("Warm")]
    public int Kars_Warm() => RunKars(_warm);

    [Benchmark(Baseline = true, OperationsPerInvoke = 8)]
    [BenchmarkCategory("Warm")]
    public int GlobScan_Warm() => RunGlob(_warm);

    [Benchmark(OperationsPerInvoke = 8)]
    [BenchmarkCategory("Warm")]
    public int HashSetProbe_Warm() => RunHashSet(_warm);

    [Benchmark(OperationsPerInvoke = 4096)]
    [BenchmarkCategory("Cold")]
    public int Kars_Cold() => RunKars(_cold);

    [Benchmark(Baseline = true, OperationsPerInvoke = GlobColdQueries)]
    [BenchmarkCategory("Cold")]
    public int GlobScan_Cold() => RunGlob(_coldGlob);

    [Benchmark(OperationsPerInvoke = 4096)]
    [BenchmarkCategory("Cold")]
    public int HashSetProbe_Cold() => RunHashSet(_cold);

    private int RunKars(string[] hosts)
    {
        int allowed = 0;
        foreach (string host in hosts)
        {
            if (_policy.Evaluate(host, 443).IsAllowed)
            {
                allowed++;
            }
        }

        return allowed;
    }

    private int RunGlob(string[] hosts)
    {
        int allowed = 0;
        foreach (string host in hosts)
        {
            if (GlobDecide(host))
            {
                allowed++;
            }
        }

        return allowed;
    }

    private int RunHashSet(string[] hosts) => _probe.Run(hosts);

    /// <summary>Naive: scan every blocklist entry, then every allow rule, matching at label boundaries.</summary>
    private bool GlobDecide(string host)
    {
        foreach (string domain in _globBlocked)
        {
            if (IsSelfOrSubdomain(host, domain))
            {
                return false;
            }
        }

        foreach (string exact in _globExact)
        {
            if (string.Equals(host, exact, StringComparison.Ordinal))
            {
                return true;
            }
        }

        foreach (string wildcard in _globWildcard)
        {
            if (host.Length > wildcard.Length && IsSelfOrSubdomain(host, wildcard))
            {
                return true;
            }
        }

        return false;
    }

    private static bool IsSelfOrSubdomain(string host, string domain) =>
        host.EndsWith(domain, StringComparison.Ordinal)
        && (host.Length == domain.Length || host[host.Length - domain.Length - 1] == '.');
}

/// <summary>Loading a 330,000-line feed (DESIGN §6: ≤ 500 ms, ≤ 24 MB retained, at most 48 MB added to the peak RSS).
/// Baseline: read all lines into a <see cref="HashSet{T}"/>. The retained size of the loaded policy is printed once in
/// the setup log (<c>// RetainedBytes</c>), and so are the RSS figures of one load in a fresh child process
/// (<c>// FeedMemory</c>, <see cref="EgressMemoryProbe"/>).</summary>
[MemoryDiagnoser]
[ShortRunJob]
public class EgressFeedLoadBenchmarks
{
    private string _folder = null!;
    private string _policyPath = null!;
    private string _feedPath = null!;

    [GlobalSetup]
    public void Setup()
    {
        var data = new EgressData();
        _folder = Path.Combine(Path.GetTempPath(), "kars-egress-feed-bench-" + Environment.ProcessId);
        Directory.CreateDirectory(_folder);
        _feedPath = Path.Combine(_folder, "feed.txt");
        data.WriteFeed(_feedPath);
        _policyPath = Path.Combine(_folder, "policy.json");
        File.WriteAllText(_policyPath, "{\"schemaVersion\":1,\"blocklist\":{\"files\":[\"feed.txt\"]}}");

        long before = GC.GetTotalMemory(forceFullCollection: true);
        var policy = EgressPolicy.Load(_policyPath);
        long after = GC.GetTotalMemory(forceFullCollection: true);
        Console.WriteLine($"// RetainedBytes {after - before} (policy with {EgressData.BlockEntries} feed entries)");
        GC.KeepAlive(policy);

        before = GC.GetTotalMemory(forceFullCollection: true);
        var set = NaiveLoad(_feedPath);
        after = GC.GetTotalMemory(forceFullCollection: true);
        Console.WriteLine($"// RetainedBytes {after - before} (naive HashSet<string> of {set.Count} lines)");
        GC.KeepAlive(set);

        Console.WriteLine(EgressMemoryProbe.RunChild(_policyPath, "kars"));
        Console.WriteLine(EgressMemoryProbe.RunChild(_policyPath, "naive"));
    }

    [GlobalCleanup]
    public void Cleanup() => Directory.Delete(_folder, recursive: true);

    [Benchmark]
    public bool Kars_LoadPolicyWithFeed() => EgressPolicy.Load(_policyPath).IsLoaded;

    [Benchmark(Baseline = true)]
    public int Naive_ReadLinesIntoHashSet() => NaiveLoad(_feedPath).Count;

    internal static HashSet<string> NaiveLoad(string feedPath)
    {
        var set = new HashSet<string>(StringComparer.Ordinal);
        foreach (string line in File.ReadLines(feedPath))
        {
            string trimmed = line.Trim();
            if (trimmed.Length > 0 && trimmed[0] != '#')
            {
                set.Add(trimmed.ToLowerInvariant());
            }
        }

        return set;
    }
}
