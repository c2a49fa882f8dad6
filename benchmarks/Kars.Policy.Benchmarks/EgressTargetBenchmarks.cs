using System.Text;
using BenchmarkDotNet.Attributes;
using Kars.Policy.Egress;

namespace Kars.Policy.Benchmarks;

/// <summary>
/// The cost of treating an <see cref="EgressTarget"/> as untrusted input (docs/decisions.md, "No InternalsVisibleTo
/// between shipped packages"): <c>Evaluate(in EgressTarget)</c> on targets from the public factory, warm (answered by
/// the decision cache) and on a miss (re-checked through the parser's canonical fast path), against the string
/// overload <c>Evaluate(host, port)</c> on the same names in the same run. Eight names per operation.
/// </summary>
[MemoryDiagnoser]
[MedianColumn]
public class EgressTargetBenchmarks
{
    private const int Names = 8;

    private static readonly string[] Hosts =
    [
        "api.github.com", "registry.npmjs.org", "files.pythonhosted.org", "xn--mnchen-3ya.de",
        "denied.example.net", "objects.example.org", "pypi.org", "a.b.example.org",
    ];

    private EgressPolicySnapshot _snapshot = null!;
    private EgressTarget[] _targets = null!;

    /// <summary>A small policy; every name is decided once so the warm benchmarks hit the decision cache.</summary>
    [GlobalSetup]
    public void Setup()
    {
        const string Policy = """
            {"schemaVersion":1,"generation":1,"allow":[{"host":"api.github.com"},{"host":"registry.npmjs.org"},
            {"host":"*.pythonhosted.org"},{"host":"xn--mnchen-3ya.de"},{"host":"*.example.org"},{"host":"pypi.org"}]}
            """;
        _snapshot = EgressPolicySnapshot.Create(Encoding.UTF8.GetBytes(Policy));
        _targets = new EgressTarget[Hosts.Length];
        for (int i = 0; i < Hosts.Length; i++)
        {
            if (!EgressTarget.TryCreateDnsName(Hosts[i], 443, out _targets[i]))
            {
                throw new InvalidOperationException(Hosts[i]);
            }

            _snapshot.Evaluate(Hosts[i], 443, null);
        }
    }

    /// <summary>Baseline: the string overload, answered by the decision cache.</summary>
    /// <returns>The number of allowed names.</returns>
    [Benchmark(Baseline = true, OperationsPerInvoke = Names)]
    public int WarmHostAndPort()
    {
        int allowed = 0;
        foreach (string host in Hosts)
        {
            allowed += _snapshot.Evaluate(host, 443, null).IsAllowed ? 1 : 0;
        }

        return allowed;
    }

    /// <summary>Factory targets, answered by the decision cache before any re-check.</summary>
    /// <returns>The number of allowed names.</returns>
    [Benchmark(OperationsPerInvoke = Names)]
    public int WarmFactoryTarget()
    {
        int allowed = 0;
        foreach (var target in _targets)
        {
            allowed += _snapshot.Evaluate(target, null).IsAllowed ? 1 : 0;
        }

        return allowed;
    }

    /// <summary>The re-check alone on a cache miss: the parser's canonical fast path on the target's host and port.</summary>
    /// <returns>The number of targets that passed.</returns>
    [Benchmark(OperationsPerInvoke = Names)]
    public int RecheckOnly()
    {
        int ok = 0;
        foreach (var target in _targets)
        {
            ok += EgressTargetParser.TryParseHost(target.Host, target.Port, out _, out _) ? 1 : 0;
        }

        return ok;
    }
}
