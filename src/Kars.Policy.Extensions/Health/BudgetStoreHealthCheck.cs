using System.Globalization;
using Kars.Policy.Budgets;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Kars.Policy.Health;

/// <summary>Reads the status of a probe key (one store call, nothing written) within a bounded time: a failure or a
/// time-out is Unhealthy (budget calls would fail closed with 503).</summary>
internal sealed class BudgetStoreHealthCheck : IHealthCheck
{
    /// <summary>The probe key: a status read, so no counter is created or changed.</summary>
    internal const string ProbeKey = "kars-health-probe";

    private static readonly BudgetLevel Probe = new(ProbeKey, new BudgetLimits(day: 1));

    private readonly IServiceProvider _services;
    private readonly TimeSpan _timeout;
    private readonly TimeProvider _time;

    public BudgetStoreHealthCheck(IServiceProvider services, TimeSpan timeout)
    {
        _services = services;
        _timeout = timeout;
        _time = (TimeProvider?)services.GetService(typeof(TimeProvider)) ?? TimeProvider.System;
    }

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        using var deadline = new CancellationTokenSource(_timeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, deadline.Token);
        try
        {
            var store = (BudgetStore?)_services.GetService(typeof(BudgetStore)) ?? throw new InvalidOperationException("No BudgetStore is registered.");
            _ = await store.GetStatusAsync(Probe, parent: null, at: null, linked.Token).AsTask().WaitAsync(linked.Token).ConfigureAwait(false);
            return HealthCheckResult.Healthy("The budget store answered.");
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            return HealthCheckResult.Unhealthy(string.Create(CultureInfo.InvariantCulture, $"The budget store did not answer within {_timeout.TotalSeconds:0.###} s."));
        }
        catch (Exception ex) when (ex is not OperationCanceledException and not OutOfMemoryException)
        {
            // The exception is not attached and its message not used: store messages can name a server or a path.
            return HealthCheckResult.Unhealthy($"The budget store is unavailable ({ex.GetType().Name}).");
        }
    }
}
