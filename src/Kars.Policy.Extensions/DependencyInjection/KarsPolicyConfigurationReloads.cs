using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Primitives;

namespace Kars.Policy.DependencyInjection;

/// <summary>
/// The one reader of the configuration section's reloads: each reload reads the section once into a fresh
/// <see cref="KarsPolicyOptions"/> and hands that same read to every listener (<see cref="BudgetMeterProvider"/>, which
/// applies the budget options, and <see cref="RestartOptionsWatcher"/>, which reports start-only changes), so both
/// judge the same values even when the configuration changes again meanwhile.
/// </summary>
/// <remarks>
/// Without a section (options set in code) nothing is read and no listener is called. Listeners must not change the
/// options they are given; one that throws (its logging failed) does not keep the reload from the others. Safe for concurrent use.
/// </remarks>
internal sealed class KarsPolicyConfigurationReloads : IDisposable
{
    private readonly IConfiguration? _section;
    private readonly IDisposable? _subscription;
    private readonly Lock _gate = new();
    private Action<KarsPolicyConfigurationReload>[] _listeners = [];

    public KarsPolicyConfigurationReloads(KarsPolicyConfigurationSection? section)
    {
        _section = section?.Section;
        if (_section is not null)
        {
            _subscription = ChangeToken.OnChange(_section.GetReloadToken, Reload);
        }
    }

    /// <summary>Calls <paramref name="listener"/> with every later reload, until the returned handle is disposed.</summary>
    public IDisposable Subscribe(Action<KarsPolicyConfigurationReload> listener)
    {
        lock (_gate)
        {
            _listeners = [.. _listeners, listener];
        }

        return new Subscription(this, listener);
    }

    public void Dispose() => _subscription?.Dispose();

    private void Reload()
    {
        var listeners = Volatile.Read(ref _listeners);
        if (listeners.Length == 0)
        {
            return;
        }

        KarsPolicyConfigurationReload reload;
        try
        {
            var options = new KarsPolicyOptions();
            KarsPolicyConfigurationReader.Read(_section!, options);
            reload = new KarsPolicyConfigurationReload(options, null);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Never throw into the configuration's change callback: each listener logs the failure its own way.
            reload = new KarsPolicyConfigurationReload(null, ex.GetType().Name);
        }

        foreach (var listener in listeners)
        {
            try
            {
                listener(reload);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // A listener catches its own failures, so what escapes is its logging failing (a throwing logging provider
                // makes a logger throw). Nothing is left to report it to; the other listeners still get the reload.
            }
        }
    }

    private void Unsubscribe(Action<KarsPolicyConfigurationReload> listener)
    {
        lock (_gate)
        {
            _listeners = [.. _listeners.Where(l => l != listener)];
        }
    }

    private sealed class Subscription(KarsPolicyConfigurationReloads owner, Action<KarsPolicyConfigurationReload> listener) : IDisposable
    {
        public void Dispose() => owner.Unsubscribe(listener);
    }
}

/// <summary>One read of a reloaded configuration section.</summary>
/// <param name="Options">The options read (their <see cref="KarsPolicyOptions.ConfigurationProblems"/> not yet
/// validated), or <see langword="null"/> when reading threw.</param>
/// <param name="ReadFailure">The type name of what reading threw, or <see langword="null"/>.</param>
internal sealed record KarsPolicyConfigurationReload(KarsPolicyOptions? Options, string? ReadFailure);
