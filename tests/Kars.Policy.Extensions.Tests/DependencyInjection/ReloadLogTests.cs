using System.IO.Abstractions;
using System.IO.Abstractions.TestingHelpers;
using Kars.Policy.Budgets;
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
