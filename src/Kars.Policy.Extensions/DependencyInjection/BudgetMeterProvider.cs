using System.Diagnostics.Metrics;
using Kars.Policy.Budgets;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Kars.Policy.DependencyInjection;

/// <summary>
/// Holds the <see cref="BudgetMeter"/> for the current budget options. When the configuration section given to
/// <c>AddKarsPolicy(IConfiguration)</c> reloads, the fresh <see cref="KarsPolicyOptions"/> read once by
/// <see cref="KarsPolicyConfigurationReloads"/> is checked by the same validators as at start-up, compiled into a new <see cref="BudgetPolicy"/>, and a new meter over
/// the same store is swapped in with one write. A reload with any problem keeps the meter in force and logs why.
/// </summary>
/// <remarks>
/// <para>The reload does not go through <see cref="IOptionsMonitor{TOptions}"/>: its change handling validates inside
/// the configuration's change callback and throws there (on a file watcher's thread), and a reload that validation
/// did not see could turn a limit that no longer parses into no limit. Here an invalid reload changes nothing
/// (fail closed).</para>
/// <para>The counters live in the store, so swapping the meter loses nothing. Safe for concurrent use.</para>
/// </remarks>
internal sealed class BudgetMeterProvider : IDisposable
{
    private readonly BudgetStore _store;
    private readonly TimeProvider _time;
    private readonly IMeterFactory? _meterFactory;
    private readonly IValidateOptions<KarsPolicyOptions>[] _validators;
    private readonly ILogger _logger;
    private readonly IDisposable _subscription;
    private BudgetMeter _current;

    public BudgetMeterProvider(
        BudgetStore store,
        KarsPolicyOptions initial,
        KarsPolicyConfigurationReloads reloads,
        IEnumerable<IValidateOptions<KarsPolicyOptions>> validators,
        TimeProvider time,
        IMeterFactory? meterFactory,
        ILoggerFactory? loggerFactory)
    {
        _store = store;
        _time = time;
        _meterFactory = meterFactory;
        _validators = validators.ToArray();
        _logger = (ILogger?)loggerFactory?.CreateLogger<BudgetMeterProvider>() ?? NullLogger.Instance;
        _current = Build(initial);
        _subscription = reloads.Subscribe(Reload);
    }

    /// <summary>Gets the meter in force.</summary>
    public BudgetMeter Current => Volatile.Read(ref _current);

    public void Dispose() => _subscription.Dispose();

    private void Reload(KarsPolicyConfigurationReload reload)
    {
        if (reload.Options is not { } options)
        {
            // Reading the section threw: the meter in force stays.
            ExtensionsLog.BudgetOptionsReloadRejected(_logger, 1, reload.ReadFailure!);
            return;
        }

        try
        {
            var problems = new List<string>();
            foreach (var validator in _validators)
            {
                var result = validator.Validate(Options.DefaultName, options);
                if (result.Failed)
                {
                    problems.AddRange(result.Failures ?? [result.FailureMessage]);
                }
            }

            if (problems.Count == 0)
            {
                Volatile.Write(ref _current, Build(options));
                ExtensionsLog.BudgetOptionsReloaded(_logger);
                return;
            }

            ExtensionsLog.BudgetOptionsReloadRejected(_logger, problems.Count, problems[0]);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Never throw into the configuration's change callback; the meter in force stays.
            ExtensionsLog.BudgetOptionsReloadRejected(_logger, 1, ex.GetType().Name);
        }
    }

    private BudgetMeter Build(KarsPolicyOptions options)
    {
        KarsBudgetOptions budgets = options.Budgets;
        var keys = new Dictionary<string, BudgetKeyPolicy>(StringComparer.Ordinal);
        foreach (var pair in budgets.Keys)
        {
            keys[pair.Key] = new BudgetKeyPolicy(pair.Value.Limits.ToLimits(), pair.Value.Parent);
        }

        var policy = new BudgetPolicy(budgets.Limits.ToLimits(), keys, budgets.Mode, budgets.PerRequestTokens, budgets.LeaseDuration);
        return new BudgetMeter(_store, policy, new BudgetMeterOptions { MaxCachedKeys = budgets.MaxCachedKeys }, _time, _meterFactory);
    }
}

/// <summary>The configuration section <c>AddKarsPolicy(IConfiguration)</c> reads (its reloads rebuild the budget policy).</summary>
/// <param name="Section">The section.</param>
internal sealed record KarsPolicyConfigurationSection(IConfiguration Section);
