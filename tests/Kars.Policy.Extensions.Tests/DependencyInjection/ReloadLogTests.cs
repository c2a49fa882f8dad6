using System.IO.Abstractions;
using System.IO.Abstractions.TestingHelpers;
using Kars.Policy.Budgets;
using Kars.Policy.DependencyInjection;
using Kars.Policy.Egress;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Kars.Policy.Extensions.Tests.DependencyInjection;

/// <summary>What a configuration reload logs: never a budget key (an API key or tenant id may be one).</summary>
public sealed class ReloadLogTests
{
    private const string PolicyPath = "/etc/kars/policy.json";
    private const string SecretKey = "sk-live-93b0c2d1ef";
    private const string SecretParent = "tenant-acme-secret";

    [Theory]
    [InlineData($"Kars:Budgets:Keys:{SecretKey}:Parent", SecretParent, "Kars:Budgets:Keys:***:Parent '***' is not listed")]
    [InlineData($"Kars:Budgets:Keys:{SecretKey}:Limits:Day", "lots", "Kars:Budgets:Keys:***:Limits:Day: 'lots' is not a whole number")]
    [InlineData($"Kars:Budgets:Keys:{SecretKey}:Limitz", "5", "Kars:Budgets:Keys:***:Limitz: unknown setting")]
    public void InvalidBudgetReload_RejectionLogNamesThePathNotTheKey(string key, string value, string expected)
    {
        var logs = new FakeLogCollector();
        var config = Config(("Kars:Egress:Enabled", "false"), ($"Kars:Budgets:Keys:{SecretKey}:Limits:Day", "100"));
        using ServiceProvider sp = Build(config, logs);
        var before = sp.GetRequiredService<BudgetMeter>();

        config[key] = value;
        config.Reload();

        sp.GetRequiredService<BudgetMeter>().Should().BeSameAs(before);
        var record = logs.GetSnapshot().Should().ContainSingle(r => r.Id.Id == 6001).Subject;
        record.Message.Should().Contain(expected);
        AssertNoSecret(logs);
    }

    [Fact]
    public void EgressOptionsChangeAtReload_WarnsNamingTheOptionsNotTheirValues()
    {
        var logs = new FakeLogCollector();
        var config = Config(("Kars:Egress:Path", PolicyPath), ("Kars:Egress:Watch", "false"));
        using ServiceProvider sp = Build(config, logs);
        var monitor = sp.GetRequiredService<IEgressPolicy>();

        config["Kars:Egress:Path"] = "/srv/secret-layout/other.json";
        config["Kars:Egress:Sandbox"] = SecretParent;
        config["Kars:Egress:Mode"] = "Learn";
        config.Reload();

        var record = logs.GetSnapshot().Should().ContainSingle(r => r.Id.Id == 6002).Subject;
        record.Level.Should().Be(LogLevel.Warning);
        record.Message.Should().Contain("Kars:Egress:Path, Kars:Egress:Sandbox, Kars:Egress:Mode").And.Contain("restart");
        record.Message.Should().NotContain("secret-layout").And.NotContain("Learn");
        AssertNoSecret(logs);
        sp.GetRequiredService<IEgressPolicy>().Should().BeSameAs(monitor, "the change applies at the next start");
    }

    [Fact]
    public void BudgetOnlyChangeAtReload_NoRestartWarning()
    {
        var logs = new FakeLogCollector();
        var config = Config(("Kars:Egress:Path", PolicyPath), ("Kars:Budgets:Limits:Day", "100"));
        using ServiceProvider sp = Build(config, logs);
        sp.GetRequiredService<IEgressPolicy>();
        sp.GetRequiredService<BudgetMeter>();

        config["Kars:Budgets:Limits:Day"] = "200";
        config.Reload();

        logs.GetSnapshot().Select(r => r.Id.Id).Should().Contain(6000).And.NotContain(6002);
    }

    [Fact]
    public void StoreOptionsChangeAtReload_EgressDisabled_WarnsToo()
    {
        var logs = new FakeLogCollector();
        var config = Config(("Kars:Egress:Enabled", "false"));
        using ServiceProvider sp = Build(config, logs);
        sp.GetRequiredService<BudgetMeter>();

        config["Kars:Budgets:Store:CompactAfterRecords"] = "5";
        config.Reload();

        logs.GetSnapshot().Should().ContainSingle(r => r.Id.Id == 6002).Which.Message.Should().Contain("Kars:Budgets:Store:CompactAfterRecords");
    }

    [Fact]
    public void ConfigurationReload_ReadOnce_ForTheBudgetMeterAndTheRestartWatcher()
    {
        var logs = new FakeLogCollector();
        var counting = new CountingConfigurationSource(("Kars:Egress:Path", PolicyPath), ("Kars:Budgets:Limits:Day", "100"));
        var config = new ConfigurationBuilder().Add(counting).Build();
        using ServiceProvider sp = Build(config, logs);
        sp.GetRequiredService<IEgressPolicy>();
        sp.GetRequiredService<BudgetMeter>();
        int start = counting.Provider.Reads;
        KarsPolicyConfigurationReader.Read(config.GetSection("Kars"), new KarsPolicyOptions());
        int oneRead = counting.Provider.Reads - start;
        oneRead.Should().BePositive();

        config["Kars:Budgets:Limits:Day"] = "200";
        config["Kars:Egress:Sandbox"] = "other";
        int before = counting.Provider.Reads;
        config.Reload();

        (counting.Provider.Reads - before).Should().Be(oneRead, "one read of the section serves both listeners of the reload");
        logs.GetSnapshot().Select(r => r.Id.Id).Should().Contain(6000, "the budget meter applied it").And.Contain(6002, "the watcher reported the start-only change");
    }

    /// <summary>Every start-only option, found by reflection, is named when a reload changes it: a new option that the
    /// watcher does not compare fails here.</summary>
    [Fact]
    public void EveryStartOnlyOption_ChangeAtReload_Named()
    {
        var options = new List<(string Key, string Value)>();
        Collect(typeof(KarsEgressPolicyOptions), new KarsEgressPolicyOptions(), "Kars:Egress", options);
        Collect(typeof(KarsBudgetStoreOptions), new KarsBudgetStoreOptions(), "Kars:Budgets:Store", options);
        options.Should().HaveCountGreaterThan(15);

        foreach (var (key, value) in options)
        {
            var logs = new FakeLogCollector();
            var config = Config(("Kars:Egress:Path", PolicyPath));
            using ServiceProvider sp = Build(config, logs);
            sp.GetRequiredService<IEgressPolicy>();

            string name = key.EndsWith(":0", StringComparison.Ordinal) ? key[..^2] : key;
            config[key] = value;
            config.Reload();

            logs.GetSnapshot().Where(r => r.Id.Id == 6002).Select(r => r.Message).Should()
                .ContainSingle(because: "changing {0} must be reported", key).Which.Should().MatchRegex(System.Text.RegularExpressions.Regex.Escape(name) + "[,)]");
        }
    }

    /// <summary>Every bundle option (found by reflection), and adding or removing the bundle, is named by the watcher.</summary>
    [Fact]
    public void EveryBundleOption_ChangeAtReload_Named()
    {
        static KarsPolicyOptions WithBundle(Action<KarsEgressBundleOptions>? change = null)
        {
            var bundle = new KarsEgressBundleOptions { Path = "/layout", StatePath = "/state", PublicKeyPath = "/cosign.pub" };
            change?.Invoke(bundle);
            return new KarsPolicyOptions { Egress = { Bundle = bundle } };
        }

        var properties = typeof(KarsEgressBundleOptions).GetProperties(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Instance);
        properties.Should().HaveCountGreaterThan(9);
        foreach (var property in properties)
        {
            Action<KarsEgressBundleOptions> change = property.PropertyType == typeof(bool)
                ? b => property.SetValue(b, !(bool)property.GetValue(b)!)
                : property.PropertyType == typeof(string)
                    ? b => property.SetValue(b, "/changed/value")
                    : property.PropertyType == typeof(IList<string>)
                        ? b => ((IList<string>)property.GetValue(b)!).Add("https://example.test/predicate")
                        : throw new InvalidOperationException($"No test value for Bundle:{property.Name}: give it one here and compare it in RestartOptionsWatcher.Changed.");

            RestartOptionsWatcher.Changed(WithBundle(), WithBundle(change)).Should().Equal([$"Kars:Egress:Bundle:{property.Name}"], "changing Bundle:{0} must be reported", property.Name);
        }

        RestartOptionsWatcher.Changed(WithBundle(), WithBundle()).Should().BeEmpty();
        RestartOptionsWatcher.Changed(new KarsPolicyOptions(), WithBundle()).Should().Contain("Kars:Egress:Bundle");
        RestartOptionsWatcher.Changed(WithBundle(), new KarsPolicyOptions()).Should().Contain("Kars:Egress:Bundle");
    }

    /// <summary>A configuration value different from the default for every public property (recursing into nested
    /// option objects, whose keys sit in the same section).</summary>
    private static void Collect(Type type, object defaults, string prefix, List<(string Key, string Value)> into)
    {
        foreach (var property in type.GetProperties(System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.Instance))
        {
            string key = $"{prefix}:{property.Name}";
            if (property.PropertyType == typeof(KarsEgressBundleOptions))
            {
                continue; // a second source: EveryBundleOption_ChangeAtReload_Named compares it
            }

            object? current = property.GetValue(defaults);
            Type t = Nullable.GetUnderlyingType(property.PropertyType) ?? property.PropertyType;
            if (t == typeof(bool))
            {
                into.Add((key, current is true ? "false" : "true"));
            }
            else if (t == typeof(int) || t == typeof(long))
            {
                into.Add((key, "7"));
            }
            else if (t == typeof(TimeSpan))
            {
                into.Add((key, "00:00:07"));
            }
            else if (t == typeof(string))
            {
                into.Add((key, "/changed/value"));
            }
            else if (t.IsEnum)
            {
                into.Add((key, Enum.GetNames(t).First(n => current is null || n != current.ToString())));
            }
            else if (t == typeof(IList<string>))
            {
                into.Add((key + ":0", "10.0.0.0/8"));
            }
            else if (t == typeof(KarsEgressOptions) && current is not null)
            {
                // KarsEgressPolicyOptions.Policy: its keys sit directly in Kars:Egress.
                Collect(t, current, prefix, into);
            }
            else if (t.IsClass && current is not null && t.Namespace?.StartsWith("Kars.Policy", StringComparison.Ordinal) == true)
            {
                // Any other nested options object is its own subsection.
                Collect(t, current, key, into);
            }
            else
            {
                throw new InvalidOperationException($"No test value for {key} ({t}): give it one here and compare it in RestartOptionsWatcher.Changed.");
            }
        }
    }

    internal static void AssertNoSecret(FakeLogCollector logs)
        => logs.GetSnapshot()
            .Select(r => $"{r.Id.Id} {r.Message} {string.Join(" ", r.StructuredState?.Select(p => $"{p.Key}={p.Value}") ?? [])} {r.Exception}")
            .Should().AllSatisfy(line => line.Should().NotContain(SecretKey).And.NotContain(SecretParent));

    internal static IConfigurationRoot Config(params (string Key, string? Value)[] values) =>
        new ConfigurationBuilder().AddInMemoryCollection(values.Select(v => new KeyValuePair<string, string?>(v.Key, v.Value))).Build();

    internal static ServiceProvider Build(IConfiguration configuration, FakeLogCollector logs)
    {
        var fs = new MockFileSystem(new Dictionary<string, MockFileData>
        {
            [PolicyPath] = new("""{"schemaVersion":1,"generation":3,"allow":[{"host":"api.example.com"}]}"""),
        });
        var services = new ServiceCollection();
        services.AddSingleton<IFileSystem>(fs);
        services.AddSingleton<TimeProvider>(new FakeTimeProvider(new DateTimeOffset(2030, 1, 1, 12, 0, 0, TimeSpan.Zero)));
        services.AddLogging(b => b.AddProvider(new FakeLoggerProvider(logs)));
        services.AddKarsPolicy(configuration);
        ServiceProvider sp = services.BuildServiceProvider();
        sp.GetRequiredService<IStartupValidator>().Validate();
        return sp;
    }
}

/// <summary>An in-memory configuration source that counts the values its provider is asked for.</summary>
internal sealed class CountingConfigurationSource(params (string Key, string? Value)[] values) : IConfigurationSource
{
    public CountingConfigurationProvider Provider { get; } = new(values);

    public IConfigurationProvider Build(IConfigurationBuilder builder) => Provider;
}

/// <summary>See <see cref="CountingConfigurationSource"/>.</summary>
internal sealed class CountingConfigurationProvider : ConfigurationProvider
{
    private int _reads;

    public CountingConfigurationProvider((string Key, string? Value)[] values)
    {
        foreach (var (key, value) in values)
        {
            Data[key] = value;
        }
    }

    /// <summary>Gets how many values were asked for so far.</summary>
    public int Reads => Volatile.Read(ref _reads);

    public override bool TryGet(string key, out string? value)
    {
        Interlocked.Increment(ref _reads);
        return base.TryGet(key, out value);
    }
}
