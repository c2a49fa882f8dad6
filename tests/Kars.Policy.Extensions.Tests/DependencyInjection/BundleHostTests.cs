using System.IO.Abstractions;
using System.Net.Http;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Kars.Policy.Bundles;
using Kars.Policy.Egress;
using Kars.Policy.Http;
using Kars.Policy.Tests.Bundles;
using Kars.Policy.Tests.Shared.Egress;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;

namespace Kars.Policy.Extensions.Tests.DependencyInjection;

/// <summary>
/// End to end through the entry point a host uses (issue 10): a generic host configured only by a JSON file
/// (<c>Kars:Egress:Bundle</c>), <c>AddKarsPolicy(configuration)</c>, an <c>AddKarsEgressPolicy()</c> HttpClient against a
/// loopback server, and <c>AddKarsPolicyChecks()</c>; the signed OCI layouts are built by the engine tests' own vectors
/// (test key, test CA, CT and Rekor) on the real file system.
/// </summary>
public sealed class BundleHostTests : IAsyncLifetime, IDisposable
{
    private static readonly DateTimeOffset Start = new(2030, 1, 1, 12, 0, 0, TimeSpan.Zero);
    private readonly string _root = Path.Combine(Path.GetTempPath(), "kars-bundle-host-" + Guid.NewGuid().ToString("N"));
    private readonly ECDsa _key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
    private readonly FakeTimeProvider _time = new(Start);
    private readonly MapResolver _resolver = new MapResolver().Map("allowed.test", "127.0.0.1").Map("other.test", "127.0.0.1");
    private readonly LoopbackHttpServer _server = new();
    private readonly List<IHost> _hosts = [];
    private int _version;

    public BundleHostTests()
    {
        Directory.CreateDirectory(Mount);
        File.WriteAllText(KeyFile, _key.ExportSubjectPublicKeyInfoPem());
    }

    private string Mount => Path.Combine(_root, "policy");

    private string State => Path.Combine(_root, "state");

    private string KeyFile => Path.Combine(_root, "cosign.pub");

    private string RootFile => Path.Combine(_root, "trusted_root.json");

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var host in _hosts)
        {
            await host.StopAsync();
            host.Dispose();
        }

        await _server.DisposeAsync();
    }

    public void Dispose()
    {
        _key.Dispose();
        Directory.Delete(_root, recursive: true);
    }

    /// <summary>A canonical kars allowlist for the hosts on the loopback server's port.</summary>
    private string Yaml(long generation, params string[] hosts)
    {
        var text = new StringBuilder($"apiVersion: kars.dev/v1alpha1\nkind: EgressAllowlist\nmetadata:\n  generation: {generation}\nspec:\n  endpoints:\n");
        foreach (string host in hosts.Order(StringComparer.Ordinal))
        {
            text.Append($"    - host: {host}\n      port: {_server.Port}\n");
        }

        return text.ToString();
    }

    /// <summary>Writes a new layout version and swaps the Kubernetes <c>..data</c> link to it (<c>rename(2)</c> of a
    /// temporary link, as the kubelet does), then removes the previous version.</summary>
    private PolicyLayout Swap(Action<PolicyLayout> write)
    {
        string data = Path.Combine(Mount, "..data");
        string previous = Directory.Exists(data) ? new DirectoryInfo(data).LinkTarget! : string.Empty;
        string version = $"..2030_01_01_12_00_00.{++_version}";
        var layout = new PolicyLayout(new FileSystem(), Path.Combine(Mount, version));
        write(layout);
        string temp = Path.Combine(Mount, "..data_tmp");
        Directory.CreateSymbolicLink(temp, version);
        Rename(temp, data).Should().Be(0);
        foreach (string name in new[] { "oci-layout", "index.json", "blobs" })
        {
            if (!Path.Exists(Path.Combine(Mount, name)))
            {
                File.CreateSymbolicLink(Path.Combine(Mount, name), Path.Combine("..data", name));
            }
        }

        if (previous.Length > 0)
        {
            Directory.Delete(Path.Combine(Mount, previous), recursive: true);
        }

        return layout;
    }

    private void SignedWithKey(PolicyLayout layout, long generation, params string[] hosts)
    {
        var (manifest, _) = layout.AddPolicy(Yaml(generation, hosts));
        layout.SignWithKey(manifest, _key);
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "rename", SetLastError = true)]
    private static extern int Rename(string oldPath, string newPath);

    /// <summary>Writes the configuration file (the only way this host is configured) and builds the host over it.</summary>
    private IHost Host(Dictionary<string, object?> bundle, string? path = null)
    {
        var kars = new Dictionary<string, object?>
        {
            ["Egress"] = new Dictionary<string, object?>
            {
                ["Bundle"] = bundle,
                ["Path"] = path,
                ["PrivateAllow"] = new[] { "127.0.0.1/32" },
                ["Sandbox"] = "agent-a",
            },
        };
        string file = Path.Combine(_root, $"appsettings.{_hosts.Count}.json");
        File.WriteAllText(file, JsonSerializer.Serialize(new Dictionary<string, object?> { ["Kars"] = kars }));

        var builder = Microsoft.Extensions.Hosting.Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true, ContentRootPath = _root });
        builder.Configuration.AddJsonFile(file, optional: false, reloadOnChange: false);
        builder.Services.AddLogging();
        builder.Services.AddSingleton<TimeProvider>(_time);
        builder.Services.AddKarsPolicy(builder.Configuration);
        builder.Services.AddHttpClient("agent")
            .AddKarsEgressPolicy(o => o.Resolver = _resolver)
            .ConfigurePrimaryHttpMessageHandler((h, _) => ((SocketsHttpHandler)h).UseProxy = false);
        builder.Services.AddHealthChecks().AddKarsPolicyChecks();
        var host = builder.Build();
        _hosts.Add(host);
        return host;
    }

    private Dictionary<string, object?> KeyBundle() => new()
    {
        ["Path"] = Mount,
        ["PublicKeyPath"] = KeyFile,
        ["StatePath"] = State,
        ["RequireTransparencyLog"] = false,
    };

    private async Task<IHost> Started(Dictionary<string, object?> bundle)
    {
        var host = Host(bundle);
        await host.StartAsync();
        return host;
    }

    private async Task<bool> Reaches(IHost host, string name)
    {
        var client = host.Services.GetRequiredService<IHttpClientFactory>().CreateClient("agent");
        try
        {
            using var response = await client.GetAsync(new Uri($"http://{name}:{_server.Port}/"));
            return response.IsSuccessStatusCode;
        }
        catch (EgressDeniedException)
        {
            return false;
        }
    }

    private static async Task<HealthReportEntry> Health(IHost host) =>
        (await host.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync()).Entries[KarsPolicyHealthChecksBuilderExtensions.EgressCheckName];

    private static EgressPolicyMonitor Monitor(IHost host) => host.Services.GetRequiredService<EgressPolicyMonitor>();

    /// <summary>Advances the host's clock in 50 ms steps until the condition holds (at most 5 s of fake time).</summary>
    private TimeSpan AdvanceUntil(Func<bool> condition)
    {
        var elapsed = TimeSpan.Zero;
        while (!condition() && elapsed < TimeSpan.FromSeconds(5))
        {
            _time.Advance(TimeSpan.FromMilliseconds(50));
            elapsed += TimeSpan.FromMilliseconds(50);
        }

        return elapsed;
    }

    private void ShouldNotLeak(HealthReportEntry entry)
    {
        entry.Exception.Should().BeNull();
        entry.Description.Should().NotContain(_root).And.NotContain("allowed.test").And.NotContain("other.test");
        entry.Data.Values.Select(v => v.ToString()).Should().NotContain(v => v!.Contains(_root, StringComparison.Ordinal));
    }

    [Fact]
    public async Task KeySignedBundle_FromConfigurationOnly_AllowsAndDeniesThroughTheHttpClientAndPersistsTheLastKnownGood()
    {
        Swap(l => SignedWithKey(l, 3, "allowed.test"));
        var host = await Started(KeyBundle());

        host.Services.GetRequiredService<IEgressPolicySource>().Should().BeOfType<OciBundleEgressPolicySource>();
        (await Reaches(host, "allowed.test")).Should().BeTrue();
        (await Reaches(host, "other.test")).Should().BeFalse();
        _server.Connections.Should().Be(1, "the denied request never connected");
        Monitor(host).State.Generation.Should().Be(3);
        (await Health(host)).Status.Should().Be(HealthStatus.Healthy);
        File.Exists(Path.Combine(State, "index.json")).Should().BeTrue("the verified bundle is persisted in the state directory");
    }

    [Fact]
    public async Task KeylessBundle_IdentityRegexAndTrustedRootFile_Loads_AnotherIdentityIsUnhealthyNoPolicy()
    {
        var sigstore = new TestSigstore();
        File.WriteAllText(RootFile, sigstore.TrustedRootJson());
        Swap(l =>
        {
            var (manifest, _) = l.AddPolicy(Yaml(1, "allowed.test"));
            l.SignKeyless(manifest, sigstore);
        });
        var keyless = new Dictionary<string, object?>
        {
            ["Path"] = Mount,
            ["TrustedRootPath"] = RootFile,
            ["CertificateIdentityRegex"] = "https://github\\.com/example/policies/\\.github/workflows/sign\\.yml@refs/heads/.+",
            ["CertificateOidcIssuer"] = TestSigstore.Issuer,
            ["StatePath"] = State,
        };
        var host = await Started(keyless);

        (await Reaches(host, "allowed.test")).Should().BeTrue();
        (await Health(host)).Status.Should().Be(HealthStatus.Healthy);

        // Another host whose configuration names another identity: the same layout is refused, nothing is in force.
        keyless["CertificateIdentityRegex"] = null;
        keyless["CertificateIdentity"] = "https://github.com/someone/else/.github/workflows/sign.yml@refs/heads/main";
        keyless["StatePath"] = Path.Combine(_root, "state-2");
        var other = await Started(keyless);

        (await Reaches(other, "allowed.test")).Should().BeFalse();
        Monitor(other).Evaluate("allowed.test", _server.Port, null).Reason.Should().Be(EgressReason.NoPolicy);
        var entry = await Health(other);
        entry.Status.Should().Be(HealthStatus.Unhealthy);
        entry.Description.Should().Contain(nameof(BundleFailureReason.IdentityMismatch));
        entry.Data["bundleFailure"].Should().Be(nameof(BundleFailureReason.IdentityMismatch));
        ShouldNotLeak(entry);
    }

    [Fact]
    public async Task DataLinkSwaps_HigherGenerationPickedUp_TamperedUnsignedWrongKeyLowerOrReusedGenerationKeepTheLastKnownGoodDegraded()
    {
        Swap(l => SignedWithKey(l, 1, "allowed.test"));
        var host = await Started(KeyBundle());
        var monitor = Monitor(host);
        (await Reaches(host, "allowed.test")).Should().BeTrue();

        // A newly signed, higher generation: in force within 2 s of the swap (poll 1 s + debounce 250 ms).
        Swap(l => SignedWithKey(l, 2, "other.test"));
        AdvanceUntil(() => monitor.State.Generation == 2).Should().BeLessThanOrEqualTo(TimeSpan.FromSeconds(2));
        (await Reaches(host, "other.test")).Should().BeTrue();
        (await Reaches(host, "allowed.test")).Should().BeFalse();

        using var otherKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var bad = new (string Why, Action<PolicyLayout> Write, BundleFailureReason Reason)[]
        {
            ("unsigned", l => l.AddPolicy(Yaml(3, "allowed.test")), BundleFailureReason.Unsigned),
            ("another key", l =>
            {
                var (manifest, _) = l.AddPolicy(Yaml(3, "allowed.test"));
                l.SignWithKey(manifest, otherKey);
            }, BundleFailureReason.SignatureInvalid),
            ("tampered layer", l =>
            {
                var (manifest, layer) = l.AddPolicy(Yaml(3, "allowed.test"));
                l.SignWithKey(manifest, _key);
                File.WriteAllText(l.BlobPath(layer), Yaml(3, "allowed.tesT"));
            }, BundleFailureReason.DigestMismatch),
            ("lower generation", l => SignedWithKey(l, 1, "allowed.test"), BundleFailureReason.RollbackRejected),
            ("same generation, other policy", l => SignedWithKey(l, 2, "allowed.test"), BundleFailureReason.RollbackRejected),
        };
        foreach (var (why, write, reason) in bad)
        {
            Swap(write);
            AdvanceUntil(() => monitor.State.Problems.FirstOrDefault()?.BundleFailure == reason);

            monitor.State.Problems.Should().NotBeEmpty(why);
            monitor.State.Problems[0].BundleFailure.Should().Be(reason, why);
            monitor.State.Generation.Should().Be(2, why);
            (await Reaches(host, "other.test")).Should().BeTrue(why + ": the last-known-good stays in force");
            (await Reaches(host, "allowed.test")).Should().BeFalse(why + ": the refused policy is never evaluated");
            var entry = await Health(host);
            entry.Status.Should().Be(HealthStatus.Degraded, why);
            entry.Description.Should().Contain(reason.ToString(), why);
            ShouldNotLeak(entry);

            // Back to the policy in force (the same generation and digest: the same policy, not stale any more).
            Swap(l => SignedWithKey(l, 2, "other.test"));
            AdvanceUntil(() => !monitor.State.IsStale);
            monitor.State.IsStale.Should().BeFalse(why);
        }
    }

    [Fact]
    public async Task InPlaceUpdate_HigherGenerationPickedUp_LowerGenerationRollbackRejected()
    {
        var layout = new PolicyLayout(new FileSystem(), Mount);
        SignedWithKey(layout, 5, "allowed.test");
        var host = await Started(KeyBundle());
        var monitor = Monitor(host);
        monitor.State.Generation.Should().Be(5);

        SignedWithKey(layout, 6, "other.test");
        AdvanceUntil(() => monitor.State.Generation == 6);
        (await Reaches(host, "other.test")).Should().BeTrue();

        SignedWithKey(layout, 4, "allowed.test");
        AdvanceUntil(() => monitor.State.IsStale);

        monitor.State.Problems[0].Kind.Should().Be(EgressPolicyProblemKind.RollbackRejected);
        monitor.State.Problems[0].BundleFailure.Should().Be(BundleFailureReason.RollbackRejected);
        (await Reaches(host, "allowed.test")).Should().BeFalse();
        (await Health(host)).Description.Should().Contain(nameof(BundleFailureReason.RollbackRejected));
    }

    [Fact]
    public async Task Restart_OverTheSameStateDirectory_StartsFromThePersistedLastKnownGood_AndNeverFailsOpen()
    {
        Swap(l => SignedWithKey(l, 4, "allowed.test"));
        var first = await Started(KeyBundle());
        (await Reaches(first, "allowed.test")).Should().BeTrue();
        await first.StopAsync();

        // Restart 1: the layout now holds an unsigned policy that would allow other.test.
        Swap(l => l.AddPolicy(Yaml(9, "allowed.test", "other.test")));
        var second = await Started(KeyBundle());
        (await Reaches(second, "allowed.test")).Should().BeTrue("the persisted last-known-good is in force");
        (await Reaches(second, "other.test")).Should().BeFalse("the unsigned policy is never evaluated");
        var entry = await Health(second);
        entry.Status.Should().Be(HealthStatus.Degraded);
        entry.Description.Should().Contain(nameof(BundleFailureReason.Unsigned));
        Monitor(second).State.Generation.Should().Be(4);
        await second.StopAsync();

        // Restart 2: a validly signed but lower generation: refused against the persisted floor.
        Swap(l => SignedWithKey(l, 3, "allowed.test", "other.test"));
        var third = await Started(KeyBundle());
        (await Reaches(third, "other.test")).Should().BeFalse();
        (await Health(third)).Description.Should().Contain(nameof(BundleFailureReason.RollbackRejected));
        await third.StopAsync();

        // Restart 3: the state directory is gone and the layout is bad: nothing is in force, every destination denied.
        Directory.Delete(State, recursive: true);
        Swap(l => l.AddPolicy(Yaml(9, "allowed.test", "other.test")));
        var fourth = await Started(KeyBundle());
        (await Reaches(fourth, "allowed.test")).Should().BeFalse();
        (await Reaches(fourth, "other.test")).Should().BeFalse();
        Monitor(fourth).Evaluate("allowed.test", _server.Port, null).Reason.Should().Be(EgressReason.NoPolicy);
        entry = await Health(fourth);
        entry.Status.Should().Be(HealthStatus.Unhealthy);
        entry.Description.Should().Contain(nameof(BundleFailureReason.Unsigned));
        ShouldNotLeak(entry);
        _server.Connections.Should().Be(2, "only the two requests made under a verified policy connected");
    }

    [Fact]
    public async Task Restart_WithATamperedPersistedCopyAndABadLayout_RefusesTheCopy_NothingInForce()
    {
        Swap(l => SignedWithKey(l, 4, "allowed.test"));
        var first = await Started(KeyBundle());
        (await Reaches(first, "allowed.test")).Should().BeTrue();
        await first.StopAsync();

        // Someone with write access to the state directory edits the persisted policy to allow other.test.
        string layer = Directory.GetFiles(Path.Combine(State, "blobs", "sha256")).Single(f => File.ReadAllText(f).StartsWith("apiVersion", StringComparison.Ordinal));
        File.WriteAllText(layer, Yaml(4, "allowed.test", "other.test"));
        Swap(l => l.AddPolicy(Yaml(9, "other.test")));
        var second = await Started(KeyBundle());

        (await Reaches(second, "other.test")).Should().BeFalse("the edited copy does not verify and is never used");
        (await Reaches(second, "allowed.test")).Should().BeFalse();
        Monitor(second).State.IsLoaded.Should().BeFalse();
        (await Health(second)).Status.Should().Be(HealthStatus.Unhealthy);
    }

    [Theory]
    [InlineData("missing key file")]
    [InlineData("garbage key file")]
    [InlineData("missing trusted root")]
    [InlineData("garbage trusted root")]
    public async Task UnreadableOrUnparsableTrustFile_FailsStartUp(string damage)
    {
        Swap(l => SignedWithKey(l, 1, "allowed.test"));
        var bundle = KeyBundle();
        string key;
        switch (damage)
        {
            case "missing key file":
                bundle["PublicKeyPath"] = Path.Combine(_root, "absent.pub");
                key = "PublicKeyPath";
                break;
            case "garbage key file":
                File.WriteAllText(KeyFile, "-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n");
                key = "PublicKeyPath";
                break;
            case "missing trusted root":
                bundle["TrustedRootPath"] = Path.Combine(_root, "absent.json");
                bundle["RequireTransparencyLog"] = true;
                key = "TrustedRootPath";
                break;
            default:
                File.WriteAllText(RootFile, "{\"mediaType\":");
                bundle["TrustedRootPath"] = RootFile;
                bundle["RequireTransparencyLog"] = true;
                key = "TrustedRootPath";
                break;
        }

        var host = Host(bundle);
        var act = () => host.StartAsync();

        (await act.Should().ThrowAsync<OptionsValidationException>()).Which.Failures.Should().Contain(f => f.Contains("Kars:Egress:Bundle:" + key, StringComparison.Ordinal));
    }
}
