using Kars.Policy.Egress;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Kars.Policy.Health;

/// <summary>No policy in force: Unhealthy (every decision is NoPolicy); stale (the last reload failed): Degraded.</summary>
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

        if (!state.IsLoaded)
        {
            return Task.FromResult(HealthCheckResult.Unhealthy("No egress policy is in force: every destination is denied (NoPolicy).", data: data));
        }

        return Task.FromResult(state.IsStale
            ? HealthCheckResult.Degraded("The last egress policy reload failed; the previous policy is still in force (stale).", data: data)
            : HealthCheckResult.Healthy("The egress policy is in force.", data));
    }
}
