using Kars.Policy.DependencyInjection;
using Microsoft.Extensions.Configuration;

namespace Kars.Policy.Extensions.Tests.DependencyInjection;

/// <summary>The one reader of configuration reloads hands each reload to every listener.</summary>
public sealed class ConfigurationReloadsTests
{
    [Fact]
    public void Reload_AListenerThrows_TheOthersStillGetTheReload()
    {
        var config = new ConfigurationBuilder().AddInMemoryCollection([new("Kars:Egress:Enabled", "false")]).Build();
        using var reloads = new KarsPolicyConfigurationReloads(new KarsPolicyConfigurationSection(config.GetSection("Kars")));
        var seen = new List<KarsPolicyConfigurationReload>();
        using var first = reloads.Subscribe(_ => throw new InvalidOperationException("a logging provider threw"));
        using var second = reloads.Subscribe(seen.Add);

        var reload = () => config.Reload();

        reload.Should().NotThrow();
        seen.Should().ContainSingle().Which.Options.Should().NotBeNull();
    }
}
