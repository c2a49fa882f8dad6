using System.Diagnostics.Metrics;
using System.IO.Abstractions;
using Kars.Policy.Budgets;
using Kars.Policy.Bundles;
using Kars.Policy.DependencyInjection;
using Kars.Policy.Egress;
using Kars.Policy.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers Kars.Policy (egress policy, token budgets) in a service collection.</summary>
public static class KarsPolicyServiceCollectionExtensions
{
    /// <summary>
    /// Registers the egress policy and the token budgets, with <see cref="KarsPolicyOptions"/> read from
    /// <paramref name="configuration"/> (its <c>Kars</c> section when it has one, otherwise the section itself) and
    /// validated when the host starts, every problem reported at once.
    /// </summary>
    /// <param name="services">The services.</param>
    /// <param name="configuration">The configuration root or the <c>Kars</c> section.</param>
    /// <returns>The same services, for chaining.</returns>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    /// <remarks>
    /// <para>Registered with <c>TryAdd</c> (a service the host registers first wins): <see cref="IEgressPolicySource"/>
    /// (a watched folder or a file, or with <c>Kars:Egress:Bundle</c> a verified <see cref="OciBundleEgressPolicySource"/>
    /// whose last-known-good the monitor persists in a <see cref="FileEgressPolicyLastKnownGoodStore"/> unless the host
    /// registered an <see cref="IEgressPolicyLastKnownGoodStore"/>), <see cref="EgressPolicyMonitor"/> and <see cref="IEgressPolicy"/> (the same
    /// instance), <see cref="BudgetStore"/> (memory or file; a store the host registers, such as Redis, wins),
    /// <see cref="BudgetMeter"/>, <see cref="TimeProvider"/> (<see cref="TimeProvider.System"/>), <see cref="IFileSystem"/>
    /// (the real one), and the <c>Kars.Policy</c> meter through the container's <see cref="IMeterFactory"/>.</para>
    /// <para>Reload: the egress policy file or folder is reloaded by the monitor on change. A reload of the
    /// configuration section that changes the budget options (limits, keys, mode, cap, lease duration) and passes the
    /// same validation as at start-up rebuilds the budget policy (an invalid reload changes nothing and is logged): <see cref="BudgetMeter"/> is
    /// registered transient and returns the meter of the current options, so resolve it per use (a component that
    /// keeps one keeps its limits). A change of the egress options or of the store options takes effect at the next
    /// start, and a reload that makes one is logged as a warning naming the options (event 6002). The container disposes the monitor, the watched source and the store it created.</para>
    /// </remarks>
    public static IServiceCollection AddKarsPolicy(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);
        IConfiguration section = configuration.GetSection(KarsPolicyOptions.DefaultSectionName) is { } kars && kars.Exists() ? kars : configuration;
        services.AddOptions<KarsPolicyOptions>().Configure(options => KarsPolicyConfigurationReader.Read(section, options));
        services.TryAddSingleton(new KarsPolicyConfigurationSection(section));
        return AddCore(services);
    }

    /// <summary>Registers the egress policy and the token budgets (see <see cref="AddKarsPolicy(IServiceCollection, IConfiguration)"/>)
    /// with options set in code, validated when the host starts.</summary>
    /// <param name="services">The services.</param>
    /// <param name="configure">Sets the options.</param>
    /// <returns>The same services, for chaining.</returns>
    /// <exception cref="ArgumentNullException">An argument is <see langword="null"/>.</exception>
    public static IServiceCollection AddKarsPolicy(this IServiceCollection services, Action<KarsPolicyOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        services.AddOptions<KarsPolicyOptions>().Configure(configure);
        return AddCore(services);
    }

    private static IServiceCollection AddCore(IServiceCollection services)
    {
        if (services.Any(d => d.ServiceType == typeof(KarsPolicyMarker)))
        {
            return services;
        }

        services.AddSingleton<KarsPolicyMarker>();
        var ours = new HashSet<ServiceDescriptor>();
        bool HostRegistered(Type type) => services.Any(d => d.ServiceType == type && !ours.Contains(d));

        services.AddOptionsWithValidateOnStart<KarsPolicyOptions>();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<KarsPolicyOptions>, KarsPolicyOptionsValidator>());
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<KarsPolicyOptions>>(new KarsPolicyOptionsCustomValidator(HostRegistered)));

        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<IFileSystem, FileSystem>();

        // Signed bundle trust material: read once, when the options are validated, and used by the source.
        services.TryAddSingleton(static sp => new KarsBundleTrust(sp.GetRequiredService<IFileSystem>()));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<KarsPolicyOptions>, KarsBundleTrustValidator>(
            static sp => new KarsBundleTrustValidator(sp.GetRequiredService<KarsBundleTrust>())));
        services.AddMetrics();

        // Egress: source -> monitor -> IEgressPolicy. The source is its own singleton so the container disposes it
        // after the monitor (reverse order of creation), and so a host (or a signed-bundle source) can replace it.
        var source = ServiceDescriptor.Singleton<IEgressPolicySource>(static sp => CreateSource(sp));
        ours.Add(source);
        services.TryAdd(source);
        // A configuration reload is read once, here, and handed to the watcher and the budget meter provider.
        services.TryAddSingleton(static sp => new KarsPolicyConfigurationReloads(sp.GetService<KarsPolicyConfigurationSection>()));
        // Logs a reload that changes an option read only at start (event 6002); built with the monitor or the store.
        services.TryAddSingleton(static sp => new RestartOptionsWatcher(
            sp.GetRequiredService<IOptions<KarsPolicyOptions>>().Value,
            sp.GetRequiredService<KarsPolicyConfigurationReloads>(),
            sp.GetService<ILoggerFactory>()));
        services.TryAddSingleton(static sp =>
        {
            var egress = sp.GetRequiredService<IOptions<KarsPolicyOptions>>().Value.Egress;
            sp.GetRequiredService<RestartOptionsWatcher>();
            var source = sp.GetRequiredService<IEgressPolicySource>();
            return new EgressPolicyMonitor(
                source,
                egress.Policy,
                sp.GetRequiredService<TimeProvider>(),
                sp.GetService<ILoggerFactory>(),
                learnedHosts: null,
                sp.GetService<IEgressPolicyLastKnownGoodStore>() ?? CreateLastKnownGood(sp, egress, source),
                sp.GetService<IMeterFactory>());
        });
        services.TryAddSingleton<IEgressPolicy>(static sp => sp.GetRequiredService<EgressPolicyMonitor>());
        // The default sandbox of AddKarsEgressPolicy() clients: after every Configure, only where none was set.
        services.AddSingleton<IPostConfigureOptions<EgressHttpOptions>>(static sp => new PostConfigureOptions<EgressHttpOptions>(null, options =>
        {
            if (options.Sandbox is null && sp.GetRequiredService<IOptions<KarsPolicyOptions>>().Value.Egress.Sandbox is { } sandbox)
            {
                options.Sandbox = sandbox;
            }
        }));

        // Budgets: store -> meter provider (rebuilt on options change) -> BudgetMeter (transient: the current one).
        var store = ServiceDescriptor.Singleton<BudgetStore>(static sp => CreateStore(sp));
        ours.Add(store);
        services.TryAdd(store);
        services.TryAddSingleton(static sp => new BudgetMeterProvider(
            sp.GetRequiredService<BudgetStore>(),
            sp.GetRequiredService<IOptions<KarsPolicyOptions>>().Value,
            sp.GetRequiredService<KarsPolicyConfigurationReloads>(),
            sp.GetServices<IValidateOptions<KarsPolicyOptions>>(),
            sp.GetRequiredService<TimeProvider>(),
            sp.GetService<IMeterFactory>(),
            sp.GetService<ILoggerFactory>()));
        services.TryAddTransient(static sp => sp.GetRequiredService<BudgetMeterProvider>().Current);
        return services;
    }

    private static IEgressPolicySource CreateSource(IServiceProvider sp)
    {
        var egress = sp.GetRequiredService<IOptions<KarsPolicyOptions>>().Value.Egress;
        var fileSystem = sp.GetRequiredService<IFileSystem>();
        if (egress.Enabled && egress.Bundle is { Path: { } layout } bundle)
        {
            // The options were validated when they were resolved above; the trust material is what was validated.
            var (verifier, signer) = sp.GetRequiredService<KarsBundleTrust>().Get(bundle);
            return new OciBundleEgressPolicySource(layout, verifier, signer, bundle.ManifestDigest, egress.Policy, fileSystem, sp.GetRequiredService<TimeProvider>(), bundle.ExpectedName);
        }

        if (!egress.Enabled || string.IsNullOrWhiteSpace(egress.Path))
        {
            throw new InvalidOperationException("The Kars.Policy egress policy is not configured (Kars:Egress:Enabled is false, or neither Kars:Egress:Path nor Kars:Egress:Bundle is set).");
        }

        return egress.Watch
            ? new DirectoryEgressPolicySource(egress.Path, egress.Policy, fileSystem, sp.GetRequiredService<TimeProvider>())
            : new FileEgressPolicySource(egress.Path, egress.Policy, fileSystem);
    }

    /// <summary>The persisted last-known-good of a configured bundle (its state directory); none for other sources.</summary>
    private static FileEgressPolicyLastKnownGoodStore? CreateLastKnownGood(IServiceProvider sp, KarsEgressPolicyOptions egress, IEgressPolicySource source) =>
        egress.Bundle is { StatePath: { } state } && source is OciBundleEgressPolicySource bundleSource
            ? new FileEgressPolicyLastKnownGoodStore(state, bundleSource, sp.GetRequiredService<IFileSystem>(), sp.GetRequiredService<TimeProvider>())
            : null;

    private static BudgetStore CreateStore(IServiceProvider sp)
    {
        var store = sp.GetRequiredService<IOptions<KarsPolicyOptions>>().Value.Budgets.Store;
        var time = sp.GetRequiredService<TimeProvider>();
        sp.GetRequiredService<RestartOptionsWatcher>();
        if (store.Kind != KarsBudgetStoreKind.File)
        {
            return new InMemoryBudgetStore(time);
        }

        // Opened on first use (recovery runs on the thread pool, so blocking here cannot deadlock a synchronization
        // context). A corrupt or locked store throws here: the host fails to resolve it rather than start from zero.
        return FileBudgetStore.OpenAsync(
            store.Path!,
            new FileBudgetStoreOptions { CompactAfterRecords = store.CompactAfterRecords },
            sp.GetRequiredService<IFileSystem>(),
            time,
            sp.GetService<ILoggerFactory>()).AsTask().GetAwaiter().GetResult();
    }

    /// <summary>Marks that AddKarsPolicy ran (so a second call adds nothing twice).</summary>
    private sealed class KarsPolicyMarker;
}
