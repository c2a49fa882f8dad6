using System.Net;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Jobs;
using Kars.Policy.Egress;
using Kars.Policy.Hosts;

namespace Kars.Policy.Benchmarks.Hosts;

/// <summary>
/// Host normalisation on the egress hot path: an already-canonical DNS name (the common case) and a URL.
/// The baseline is the naive approach: build a <see cref="Uri"/> and read <see cref="Uri.IdnHost"/>, lower-cased.
/// </summary>
[MemoryDiagnoser]
[MedianColumn]
[SimpleJob(RuntimeMoniker.Net10_0, launchCount: 1, warmupCount: 3, iterationCount: 15)]
public class HostParsingBenchmark
{
    private const string CanonicalHost = "objects.githubusercontent.com";
    private const string MixedCaseHost = "Objects.GitHubUserContent.com.";
    private const string Url = "https://objects.githubusercontent.com/github-production-release-asset/x?y=1";

    private static readonly IPAddress MappedAddress = IPAddress.Parse("::ffff:8.8.8.8");

    /// <summary>Naive: <c>new Uri("https://" + host)</c>, then <c>IdnHost.ToLowerInvariant()</c>.</summary>
    /// <returns>The host.</returns>
    [Benchmark(Baseline = true)]
    public string NaiveUriIdnHost() => new Uri("https://" + CanonicalHost + "/").IdnHost.ToLowerInvariant();

    /// <summary>Fast path: the canonical name is recognised and reused.</summary>
    /// <returns>The host.</returns>
    [Benchmark]
    public string TryParseHostCanonical()
    {
        EgressTargetParser.TryParseHost(CanonicalHost, 443, out var target, out _);
        return target.Host;
    }

    /// <summary>The allocation-free check alone.</summary>
    /// <returns>Whether the name is canonical.</returns>
    [Benchmark]
    public bool IsCanonical() => DnsNames.IsCanonical(CanonicalHost);

    /// <summary>Slow path: upper case and a trailing dot force normalisation.</summary>
    /// <returns>The host.</returns>
    [Benchmark]
    public string TryParseHostMixedCase()
    {
        EgressTargetParser.TryParseHost(MixedCaseHost, 443, out var target, out _);
        return target.Host;
    }

    /// <summary>Full URL scan.</summary>
    /// <returns>The host.</returns>
    [Benchmark]
    public string TryParseUrl()
    {
        EgressTargetParser.TryParseUrl(Url, out var target, out _);
        return target.Host;
    }

    /// <summary>Naive URL baseline for comparison with <see cref="TryParseUrl"/>.</summary>
    /// <returns>The host.</returns>
    [Benchmark]
    public string NaiveUriFromUrl() => new Uri(Url).IdnHost.ToLowerInvariant();

    /// <summary>Non-public range check of an IPv4-mapped address.</summary>
    /// <returns>Whether the address is non-public.</returns>
    [Benchmark]
    public bool NonPublicMapped() => NonPublicAddresses.Contains(MappedAddress);
}
