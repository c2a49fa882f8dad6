using Kars.Policy.Health;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Adds the Kars.Policy health checks.</summary>
public static class KarsPolicyHealthChecksBuilderExtensions
{
    /// <summary>The name of the egress policy check.</summary>
    public const string EgressCheckName = "kars-egress-policy";

    /// <summary>The name of the budget store check.</summary>
    public const string BudgetStoreCheckName = "kars-budget-store";

    /// <summary>
    /// Adds two checks over the services <c>AddKarsPolicy</c> registered: <see cref="EgressCheckName"/> (no policy in
    /// force: <see cref="HealthStatus.Unhealthy"/>; the last reload failed and an older policy is in force:
    /// <see cref="HealthStatus.Degraded"/>) and <see cref="BudgetStoreCheckName"/> (a status read of a probe key that
    /// fails or takes longer than <paramref name="storeProbeTimeout"/>: <see cref="HealthStatus.Unhealthy"/>).
    /// </summary>
    /// <param name="builder">The health checks builder.</param>
    /// <param name="storeProbeTimeout">How long the store probe may take; <see langword="null"/> for 2 seconds.</param>
    /// <param name="tags">Tags of both checks (for filtering endpoints), or <see langword="null"/>.</param>
    /// <returns>The same builder, for chaining.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="builder"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="storeProbeTimeout"/> is not positive.</exception>
    /// <remarks>Descriptions and data carry counts, generations, digests and exception type names only: never a host
    /// name, a path, a connection string or an exception message (which may carry any of them), and no exception is
    /// attached to the result.</remarks>
    public static IHealthChecksBuilder AddKarsPolicyChecks(this IHealthChecksBuilder builder, TimeSpan? storeProbeTimeout = null, IEnumerable<string>? tags = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        TimeSpan timeout = storeProbeTimeout ?? TimeSpan.FromSeconds(2);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeout, TimeSpan.Zero, nameof(storeProbeTimeout));
        string[] tagList = tags?.ToArray() ?? [];
        builder.Add(new HealthCheckRegistration(EgressCheckName, static sp => ActivatorUtilities.CreateInstance<EgressPolicyHealthCheck>(sp), HealthStatus.Unhealthy, tagList));
        builder.Add(new HealthCheckRegistration(BudgetStoreCheckName, sp => ActivatorUtilities.CreateInstance<BudgetStoreHealthCheck>(sp, timeout), HealthStatus.Unhealthy, tagList));
        return builder;
    }
}
