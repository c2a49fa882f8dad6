using System.Diagnostics.Metrics;
using System.IO.Abstractions;
using System.IO.Abstractions.TestingHelpers;
using Kars.Policy.Budgets;
using Kars.Policy.DependencyInjection;
using Kars.Policy.Egress;
using Kars.Policy.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Diagnostics.Metrics.Testing;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Kars.Policy.Extensions.Tests.DependencyInjection;

public sealed class AddKarsPolicyTests
{
    private const string PolicyPath = "/etc/kars/policy.json";
    private static readonly DateTimeOffset Start = new(2030, 1, 1, 12, 0, 0, TimeSpan.Zero);

    private static string Doc(string host, int generation = 3) =>
        $$"""{"schemaVersion":1,"generation":{{generation}},"allow":[{"host":"{{host}}"}]}""";

    private static IConfigurationRoot Config(params (string Key, string? Value)[] values) =>
        new ConfigurationBuilder().AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>(v.Key, v.Value))).Build();

    private static (ServiceProvider Provider, MockFileSystem Fs, FakeTimeProvider Time) Build(IConfiguration configuration, Action<IServiceCollection>? before = null)
    {
        var fs = new MockFileSystem(new Dictionary<string, MockFileData> { [PolicyPath] = new(Doc("api.example.com")) });
        var time = new FakeTimeProvider(Start);
        var services = new ServiceCollection();
        services.AddSingleton<IFileSystem>(fs);
        services.AddSingleton<TimeProvider>(time);
        services.AddLogging();
        before?.Invoke(services);
        services.AddKarsPolicy(configuration);
        return (services.BuildServiceProvider(), fs, time);
    }

    private static void ValidateOnStart(IServiceProvider provider) => provider.GetRequiredService<IStartupValidator>().Validate();

    [Fact]
    public void AddKarsPolicy_ValidConfiguration_RegistersEverythingFromTheContainer()
    {
        var (sp, _, _) = Build(Config(("Kars:Egress:Path", PolicyPath), ("Kars:Egress:Watch", "false"), ("Kars:Budgets:Limits:Day", "1000")));
        using var _1 = sp;

        ValidateOnStart(sp);

        var monitor = sp.GetRequiredService<EgressPolicyMonitor>();
        sp.GetRequiredService<IEgressPolicy>().Should().BeSameAs(monitor);
        sp.GetRequiredService<IEgressPolicySource>().Should().BeOfType<FileEgressPolicySource>();
        monitor.Evaluate("api.example.com", 443, null).IsAllowed.Should().BeTrue();
        monitor.Evaluate("evil.example.com", 443, null).IsAllowed.Should().BeFalse();
        sp.GetRequiredService<BudgetStore>().Should().BeOfType<InMemoryBudgetStore>();
        sp.GetRequiredService<BudgetMeter>().Policy.DefaultLimits.Should().Be(new BudgetLimits(day: 1000));
        sp.GetRequiredService<IMeterFactory>().Should().NotBeNull();
    }

    [Fact]
    public void AddKarsPolicy_ManyBadValues_EveryErrorReportedAtStart()
    {
        var (sp, _, _) = Build(Config(
            ("Kars:Egress:Mode", "Strict,Learn"),
            ("Kars:Egress:ReloadDelay", "1"),
            ("Kars:Egress:PrivateAllow:0", "10.0.0.0/99"),
            ("Kars:Egress:Pth", "/typo"),
            ("Kars:Budgets:Mode", "1"),
            ("Kars:Budgets:PerRequestTokens", "-5"),
            ("Kars:Budgets:Limits:Day", "lots"),
            ("Kars:Budgets:Keys:agent-a:Parent", "tenant-missing"),
            ("Kars:Budgets:Keys:agent-b:Limits:Hour", "-1"),
            ("Kars:Budgets:Store:Kind", "File")));
        using var _1 = sp;

        var act = () => ValidateOnStart(sp);

        var failures = act.Should().Throw<OptionsValidationException>().Which.Failures.ToList();
        failures.Should().Contain(f => f.Contains("Kars:Egress:Mode", StringComparison.Ordinal) && f.Contains("Strict,Learn", StringComparison.Ordinal));
        failures.Should().Contain(f => f.Contains("Kars:Egress:ReloadDelay", StringComparison.Ordinal));
        failures.Should().Contain(f => f.Contains("10.0.0.0/99", StringComparison.Ordinal));
        failures.Should().Contain(f => f.Contains("Kars:Egress:Pth", StringComparison.Ordinal) && f.Contains("unknown", StringComparison.Ordinal));
        failures.Should().Contain(f => f.Contains("Kars:Egress:Path or Kars:Egress:Bundle is required", StringComparison.Ordinal));
        failures.Should().Contain(f => f.Contains("Kars:Budgets:Mode", StringComparison.Ordinal));
        failures.Should().Contain(f => f.Contains("PerRequestTokens", StringComparison.Ordinal));
        failures.Should().Contain(f => f.Contains("Kars:Budgets:Limits:Day", StringComparison.Ordinal));
        failures.Should().Contain(f => f.Contains("tenant-missing", StringComparison.Ordinal));
        failures.Should().Contain(f => f.Contains("Kars:Budgets:Keys:agent-b:Limits:Hour", StringComparison.Ordinal));
        failures.Should().Contain(f => f.Contains("Kars:Budgets:Store:Path is required", StringComparison.Ordinal));
        failures.Should().HaveCountGreaterThanOrEqualTo(11);
    }

    [Theory]
    [InlineData("Strict,Learn")]
    [InlineData("1")]
    [InlineData(" Learn")]
    [InlineData("Lenient")]
    public void AddKarsPolicy_ModeNotExactlyOneName_Error(string mode)
    {
        var (sp, _, _) = Build(Config(("Kars:Egress:Path", PolicyPath), ("Kars:Egress:Mode", mode)));
        using var _1 = sp;

        var act = () => ValidateOnStart(sp);

        act.Should().Throw<OptionsValidationException>().Which.Failures.Should().ContainSingle(f => f.Contains("Kars:Egress:Mode", StringComparison.Ordinal));
    }

    [Fact]
    public void AddKarsPolicy_ModeAnyCase_Accepted()
    {
        var (sp, _, _) = Build(Config(("Kars:Egress:Path", PolicyPath), ("Kars:Egress:Mode", "learn"), ("Kars:Budgets:Mode", "OBSERVE")));
        using var _1 = sp;

        ValidateOnStart(sp);

        sp.GetRequiredService<IOptions<KarsPolicyOptions>>().Value.Egress.Policy.Mode.Should().Be(EgressMode.Learn);
        sp.GetRequiredService<BudgetMeter>().Policy.Mode.Should().Be(BudgetMode.Observe);
    }

    [Fact]
    public void AddKarsPolicy_ActionOverload_ValidatedToo()
    {
        var services = new ServiceCollection();
        services.AddKarsPolicy(o =>
        {
            o.Egress.Enabled = false;
            o.Budgets.Keys["agent"] = new KarsBudgetKeyOptions { Parent = "agent" };
            o.Budgets.MaxCachedKeys = -1;
        });
        using var sp = services.BuildServiceProvider();

        var act = () => ValidateOnStart(sp);

        var failures = act.Should().Throw<OptionsValidationException>().Which.Failures.ToList();
        failures.Should().Contain(f => f.Contains("names the key itself", StringComparison.Ordinal));
        failures.Should().Contain(f => f.Contains("MaxCachedKeys", StringComparison.Ordinal));
        failures.Should().NotContain(f => f.Contains("Egress", StringComparison.Ordinal));
    }

    [Fact]
    public void AddKarsPolicy_KeysWithParent_LimitsFileShape()
    {
        var (sp, _, _) = Build(Config(
            ("Kars:Egress:Enabled", "false"),
            ("Kars:Budgets:PerRequestTokens", "4096"),
            ("Kars:Budgets:Limits:Day", "1000"),
            ("Kars:Budgets:Limits:Month", "100000"),
            ("Kars:Budgets:Keys:tenant-t:Limits:Day", "10000"),
            ("Kars:Budgets:Keys:agent-a:Parent", "tenant-t"),
            ("Kars:Budgets:Keys:agent-a:Limits:Day", "3000")));
        using var _1 = sp;
        ValidateOnStart(sp);

        var policy = sp.GetRequiredService<BudgetMeter>().Policy;

        policy.PerRequestTokens.Should().Be(4096);
        policy.DefaultLimits.Should().Be(new BudgetLimits(day: 1000, month: 100000));
        policy.Keys["agent-a"].Should().Be(new BudgetKeyPolicy(new BudgetLimits(day: 3000), "tenant-t"));
        policy.Keys["tenant-t"].Limits.Should().Be(new BudgetLimits(day: 10000));
    }

    [Fact]
    public async Task AddKarsPolicy_BudgetLimitsChangeInConfiguration_NewMeterSameCounters()
    {
        var config = Config(("Kars:Egress:Enabled", "false"), ("Kars:Budgets:Limits:Day", "100"));
        var (sp, _, _) = Build(config);
        using var _1 = sp;
        ValidateOnStart(sp);
        var before = sp.GetRequiredService<BudgetMeter>();
        var lease = (await before.TryReserveAsync("agent", 80)).Lease;
        await lease.SettleAsync(80);

        config["Kars:Budgets:Limits:Day"] = "1000";
        config.Reload();

        var after = sp.GetRequiredService<BudgetMeter>();
        after.Should().NotBeSameAs(before);
        after.Policy.DefaultLimits.Should().Be(new BudgetLimits(day: 1000));
        (await after.TryReserveAsync("agent", 900)).IsAdmitted.Should().BeTrue("80 used of the new 1000");
        (await after.TryReserveAsync("agent", 100)).IsAdmitted.Should().BeFalse("the store kept the 80 already used");
    }

    [Theory]
    [InlineData("Kars:Budgets:Keys:agent:Parent", "nobody")]
    [InlineData("Kars:Budgets:Limits:Day", "lots")]
    [InlineData("Kars:Budgets:Mode", "Enforce,Observe")]
    [InlineData("Kars:Budgets:Limitz:Day", "5")]
    public void AddKarsPolicy_InvalidBudgetReload_MeterInForceKeptNothingThrown(string key, string value)
    {
        var config = Config(("Kars:Egress:Enabled", "false"), ("Kars:Budgets:Limits:Day", "100"));
        var (sp, _, _) = Build(config);
        using var _1 = sp;
        ValidateOnStart(sp);
        var before = sp.GetRequiredService<BudgetMeter>();

        config[key] = value;
        var reload = () => config.Reload();

        reload.Should().NotThrow();
        sp.GetRequiredService<BudgetMeter>().Should().BeSameAs(before);
        before.Policy.DefaultLimits.Should().Be(new BudgetLimits(day: 100));
    }

    [Fact]
    public void AddKarsPolicy_EgressPathChange_NeedsRestart()
    {
        var config = Config(("Kars:Egress:Path", PolicyPath), ("Kars:Egress:Watch", "false"));
        var (sp, fs, _) = Build(config);
        using var _1 = sp;
        ValidateOnStart(sp);
        var monitor = sp.GetRequiredService<IEgressPolicy>();
        fs.AddFile("/etc/kars/other.json", new MockFileData(Doc("other.example.com")));

        config["Kars:Egress:Path"] = "/etc/kars/other.json";
        config.Reload();

        sp.GetRequiredService<IEgressPolicy>().Should().BeSameAs(monitor);
        monitor.Evaluate("api.example.com", null).IsAllowed.Should().BeTrue();
        monitor.Evaluate("other.example.com", null).IsAllowed.Should().BeFalse();
    }

    [Fact]
    public void AddKarsPolicy_WatchedPolicyFileChanges_MonitorReloads()
    {
        var (sp, fs, time) = Build(Config(("Kars:Egress:Path", PolicyPath), ("Kars:Egress:ReloadDelay", "00:00:00")));
        using var _1 = sp;
        ValidateOnStart(sp);
        var monitor = sp.GetRequiredService<EgressPolicyMonitor>();
        sp.GetRequiredService<IEgressPolicySource>().Should().BeOfType<DirectoryEgressPolicySource>();
        monitor.Evaluate("api.example.com", 443, null).IsAllowed.Should().BeTrue();
        var changed = monitor.GetChangeToken();

        fs.File.WriteAllText(PolicyPath, Doc("new.example.com", generation: 4));
        fs.File.SetLastWriteTimeUtc(PolicyPath, Start.UtcDateTime.AddMinutes(1));
        // With ReloadDelay 0 the reload runs on the thread pool, not on the fake clock: wait for it (at least 30 s of
        // real time in all, 1,500 × 20 ms) rather than for a fixed second, which a loaded machine can overrun.
        for (int i = 0; i < 1_500 && !changed.HasChanged; i++)
        {
            time.Advance(TimeSpan.FromSeconds(1));
            Thread.Sleep(20);
        }

        changed.HasChanged.Should().BeTrue();
        monitor.Evaluate("new.example.com", 443, null).IsAllowed.Should().BeTrue();
    }

    [Fact]
    public void AddKarsPolicy_HostRegisteredStoreAndServices_Win()
    {
        var hostStore = new InMemoryBudgetStore();
        var (sp, _, _) = Build(
            Config(("Kars:Egress:Enabled", "false"), ("Kars:Budgets:Store:Kind", "File")),
            services => services.AddSingleton<BudgetStore>(hostStore));
        using var _1 = sp;

        ValidateOnStart(sp);

        sp.GetRequiredService<BudgetStore>().Should().BeSameAs(hostStore);
    }

    [Fact]
    public void AddKarsPolicy_StoreRegisteredAfterwards_WinsToo()
    {
        var hostStore = new InMemoryBudgetStore();
        var services = new ServiceCollection();
        services.AddKarsPolicy(Config(("Kars:Egress:Enabled", "false")));
        services.AddSingleton<BudgetStore>(hostStore);
        using var sp = services.BuildServiceProvider();

        ValidateOnStart(sp);

        sp.GetRequiredService<BudgetStore>().Should().BeSameAs(hostStore);
        sp.GetRequiredService<TimeProvider>().Should().BeSameAs(TimeProvider.System);
        sp.GetRequiredService<IFileSystem>().Should().BeOfType<FileSystem>();
    }

    [Fact]
    public async Task AddKarsPolicy_FileStore_OpenedInFileSystemAndDisposedWithContainer()
    {
        var (sp, fs, _) = Build(Config(("Kars:Egress:Path", PolicyPath), ("Kars:Budgets:Store:Kind", "File"), ("Kars:Budgets:Store:Path", "/var/lib/kars/budget")));
        ValidateOnStart(sp);
        var store = sp.GetRequiredService<BudgetStore>().Should().BeOfType<FileBudgetStore>().Subject;
        var source = (DirectoryEgressPolicySource)sp.GetRequiredService<IEgressPolicySource>();
        sp.GetRequiredService<EgressPolicyMonitor>().State.IsLoaded.Should().BeTrue();
        fs.File.Exists("/var/lib/kars/budget/budget.wal").Should().BeTrue();

        sp.Dispose();

        var reopen = async () => await (await FileBudgetStore.OpenAsync("/var/lib/kars/budget", fileSystem: fs)).DisposeAsync();
        await reopen.Should().NotThrowAsync("the container disposed the first store, which released the directory");
        store.Directory.Should().Be("/var/lib/kars/budget");
        source.Name.Should().Be(PolicyPath);
    }

    [Fact]
    public void AddKarsPolicy_DefaultSandbox_AppliedToClientsThatSetNone()
    {
        var (sp, _, _) = Build(
            Config(("Kars:Egress:Path", PolicyPath), ("Kars:Egress:Sandbox", "agent-7")),
            services =>
            {
                services.AddHttpClient("plain").AddKarsEgressPolicy();
                services.AddHttpClient("own").AddKarsEgressPolicy(o => o.Sandbox = "mine");
            });
        using var _1 = sp;

        var options = sp.GetRequiredService<IOptionsMonitor<EgressHttpOptions>>();

        options.Get("plain").Sandbox.Should().Be("agent-7");
        options.Get("own").Sandbox.Should().Be("mine");
    }

    [Fact]
    public async Task AddKarsPolicy_MeterFactoryFromContainer_DecisionsRecorded()
    {
        var (sp, _, _) = Build(Config(("Kars:Egress:Path", PolicyPath), ("Kars:Egress:Watch", "false")));
        using var _1 = sp;
        long decided = 0;
        using var decisions = new MeterListener();
        decisions.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Scope == sp.GetRequiredService<IMeterFactory>() && instrument.Name == "kars.policy.egress.decisions")
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        decisions.SetMeasurementEventCallback<long>((_, value, _, _) => Interlocked.Add(ref decided, value));
        decisions.Start();
        using var tokens = new MetricCollector<long>(sp.GetRequiredService<IMeterFactory>(), "Kars.Policy", "kars.policy.budget.tokens");

        sp.GetRequiredService<IEgressPolicy>().Evaluate("api.example.com", null);
        await using ((await sp.GetRequiredService<BudgetMeter>().TryReserveAsync("k", 10)).Lease)
        {
        }

        decisions.RecordObservableInstruments();
        Interlocked.Read(ref decided).Should().Be(1);
        tokens.GetMeasurementSnapshot().Should().HaveCount(2); // reserved 10, charged 10 (abandoned on dispose)
    }

    [Fact]
    public async Task HealthChecks_PolicyLoadedAndStoreUp_Healthy()
    {
        var (sp, _, _) = Build(Config(("Kars:Egress:Path", PolicyPath), ("Kars:Egress:Watch", "false")), s => s.AddHealthChecks().AddKarsPolicyChecks());
        using var _1 = sp;

        var report = await sp.GetRequiredService<HealthCheckService>().CheckHealthAsync();

        report.Status.Should().Be(HealthStatus.Healthy);
        report.Entries.Keys.Should().BeEquivalentTo(KarsPolicyHealthChecksBuilderExtensions.EgressCheckName, KarsPolicyHealthChecksBuilderExtensions.BudgetStoreCheckName);
    }

    [Fact]
    public async Task HealthChecks_NoPolicy_UnhealthyWithoutPathOrHost()
    {
        var (sp, fs, _) = Build(Config(("Kars:Egress:Path", PolicyPath), ("Kars:Egress:Watch", "false")), s => s.AddHealthChecks().AddKarsPolicyChecks());
        using var _1 = sp;
        fs.File.WriteAllText(PolicyPath, "{ broken");

        var report = await sp.GetRequiredService<HealthCheckService>().CheckHealthAsync();

        var entry = report.Entries[KarsPolicyHealthChecksBuilderExtensions.EgressCheckName];
        entry.Status.Should().Be(HealthStatus.Unhealthy);
        entry.Exception.Should().BeNull();
        Leaks(entry).Should().BeFalse();
    }

    [Fact]
    public async Task HealthChecks_ReloadFailed_DegradedStale()
    {
        var (sp, fs, _) = Build(Config(("Kars:Egress:Path", PolicyPath), ("Kars:Egress:Watch", "false")), s => s.AddHealthChecks().AddKarsPolicyChecks());
        using var _1 = sp;
        var monitor = sp.GetRequiredService<EgressPolicyMonitor>();
        monitor.State.IsLoaded.Should().BeTrue();
        fs.File.WriteAllText(PolicyPath, "{ broken");
        monitor.Reload().Should().BeFalse();

        var report = await sp.GetRequiredService<HealthCheckService>().CheckHealthAsync();

        var entry = report.Entries[KarsPolicyHealthChecksBuilderExtensions.EgressCheckName];
        entry.Status.Should().Be(HealthStatus.Degraded);
        entry.Data["generation"].Should().Be(3L);
        Leaks(entry).Should().BeFalse();
    }

    [Fact]
    public async Task HealthChecks_StoreUnavailable_UnhealthyWithTypeNameOnly()
    {
        var (sp, _, _) = Build(
            Config(("Kars:Egress:Path", PolicyPath), ("Kars:Egress:Watch", "false")),
            s =>
            {
                s.AddSingleton<BudgetStore>(new BrokenStore(hang: false));
                s.AddHealthChecks().AddKarsPolicyChecks();
            });
        using var _1 = sp;

        var report = await sp.GetRequiredService<HealthCheckService>().CheckHealthAsync();

        var entry = report.Entries[KarsPolicyHealthChecksBuilderExtensions.BudgetStoreCheckName];
        entry.Status.Should().Be(HealthStatus.Unhealthy);
        entry.Description.Should().Contain(nameof(BudgetStoreUnavailableException));
        entry.Exception.Should().BeNull();
        Leaks(entry).Should().BeFalse();
    }

    [Fact]
    public async Task HealthChecks_StoreHangs_UnhealthyAfterProbeTimeout()
    {
        var (sp, _, _) = Build(
            Config(("Kars:Egress:Path", PolicyPath), ("Kars:Egress:Watch", "false")),
            s =>
            {
                s.AddSingleton<BudgetStore>(new BrokenStore(hang: true));
                s.AddHealthChecks().AddKarsPolicyChecks(storeProbeTimeout: TimeSpan.FromMilliseconds(50));
            });
        using var _1 = sp;
        var time = (FakeTimeProvider)sp.GetRequiredService<TimeProvider>();

        var pending = sp.GetRequiredService<HealthCheckService>().CheckHealthAsync(r => r.Name == KarsPolicyHealthChecksBuilderExtensions.BudgetStoreCheckName);
        while (!pending.IsCompleted)
        {
            time.Advance(TimeSpan.FromMilliseconds(100));
            await Task.Delay(10);
        }

        var entry = (await pending).Entries[KarsPolicyHealthChecksBuilderExtensions.BudgetStoreCheckName];
        entry.Status.Should().Be(HealthStatus.Unhealthy);
        entry.Description.Should().Contain("did not answer");
    }

    private static bool Leaks(HealthReportEntry entry) =>
        $"{entry.Description} {string.Join(' ', entry.Data.Select(d => $"{d.Key}={d.Value}"))}".Contains("example", StringComparison.Ordinal)
        || (entry.Description ?? string.Empty).Contains("/etc/kars", StringComparison.Ordinal)
        || entry.Data.Values.Any(v => v?.ToString()?.Contains("/etc/kars", StringComparison.Ordinal) == true);

    private sealed class BrokenStore(bool hang) : BudgetStore
    {
        protected override ValueTask<BudgetDecision> TryReserveCoreAsync(BudgetRequest request, CancellationToken cancellationToken) => throw new BudgetStoreUnavailableException("redis.internal.example:6379 refused");

        protected override ValueTask<BudgetSettlement> SettleCoreAsync(long leaseId, long actualTokens, NodaTime.Instant? at, CancellationToken cancellationToken) => throw new BudgetStoreUnavailableException("down");

        protected override ValueTask<BudgetSettlement> AbandonCoreAsync(long leaseId, NodaTime.Instant? at, CancellationToken cancellationToken) => throw new BudgetStoreUnavailableException("down");

        protected override async ValueTask<BudgetStatus> GetStatusCoreAsync(BudgetLevel level, BudgetLevel? parent, NodaTime.Instant? at, CancellationToken cancellationToken)
        {
            if (hang)
            {
                await Task.Delay(Timeout.Infinite, CancellationToken.None);
            }

            throw new BudgetStoreUnavailableException("redis.internal.example:6379 refused");
        }
    }
}
