using Kars.Policy.Egress;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Kars.Policy.Health;

/// <summary>No policy in force: Unhealthy (every decision is NoPolicy); stale (the last reload failed): Degraded. Both name
/// the reason of the last failed load (a bundle's <c>BundleFailure</c>, or the problem kind).</summary>
internal sealed class EgressPolicyHealthCheck : IHealthCheck
{
    private readonly IServiceProvider _services;

    public EgressPolicyHealthCheck(IServiceProvider services) => _services = services;

    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        EgressPolicyState state;
        try
        {
            state = ((EgressPolicyMonitor?)_services.GetService(typeof(EgressPolicyMonitor))
                ?? throw new InvalidOperationException("AddKarsPolicy() was not called.")).State;
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Options or source construction failed; the message may name a path, so only the type is reported.
            return Task.FromResult(HealthCheckResult.Unhealthy($"The egress policy is not available ({ex.GetType().Name})."));
        }

        var data = new Dictionary<string, object>(StringComparer.Ordinal)
        {
            ["generation"] = state.Generation,
            ["problems"] = state.Problems.Count,
        };
        if (state.Digest is { } digest)
        {
            data["digest"] = digest;
        }

        string why = Reasons(state, data);
        if (!state.IsLoaded)
        {
            return Task.FromResult(HealthCheckResult.Unhealthy($"No egress policy is in force{why}: every destination is denied (NoPolicy).", data: data));
        }

        return Task.FromResult(state.IsStale
            ? HealthCheckResult.Degraded($"The last egress policy reload failed{why}; the previous policy is still in force (stale).", data: data)
            : HealthCheckResult.Healthy("The egress policy is in force.", data));
    }

    /// <summary>The distinct bundle failure reasons of the last load (enum names only: no path, host or message), for
    /// the description and the <c>bundleFailure</c> data entry; the problem kinds when no problem is a bundle failure.</summary>
    private static string Reasons(EgressPolicyState state, Dictionary<string, object> data)
    {
        if (state.Problems.Count == 0)
        {
            return string.Empty;
        }

        var bundle = state.Problems.Where(p => p.BundleFailure is not null).Select(p => p.BundleFailure!.Value.ToString()).Distinct(StringComparer.Ordinal).ToList();
        if (bundle.Count > 0)
        {
            string reasons = string.Join(", ", bundle);
            data["bundleFailure"] = reasons;
            return $" (bundle refused: {reasons})";
        }

        return $" ({string.Join(", ", state.Problems.Select(p => p.Kind.ToString()).Distinct(StringComparer.Ordinal))})";
    }
}
