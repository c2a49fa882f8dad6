using System.Text;
using Kars.Policy.Egress;
using Microsoft.Extensions.Primitives;
using Microsoft.Extensions.Time.Testing;
using static Kars.Policy.Tests.Egress.EgressTestHelpers;

namespace Kars.Policy.Tests.Egress;

/// <summary>The watched directory source on the real file system, with real symbolic links laid out the way the
/// Kubernetes atomic writer lays out a ConfigMap mount: <c>..&lt;timestamp&gt;/</c> folders holding the files,
/// <c>..data</c> pointing at the current one, and each key a symlink through <c>..data</c>.</summary>
public sealed class DirectoryEgressPolicySourceTests : IDisposable
{
    private readonly string _mount = Path.Combine(Path.GetTempPath(), "kars-configmap-" + Guid.NewGuid().ToString("N"));
    private int _version;

    public DirectoryEgressPolicySourceTests() => Directory.CreateDirectory(_mount);

    public void Dispose() => Directory.Delete(_mount, recursive: true);

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
#pragma warning disable SA1300, IDE1006 // the libc name
    private static extern int rename(string oldPath, string newPath);
#pragma warning restore SA1300, IDE1006

    private static void Step(FakeTimeProvider time, TimeSpan total)
    {
        for (var t = TimeSpan.Zero; t < total; t += TimeSpan.FromMilliseconds(50))
        {
            time.Advance(TimeSpan.FromMilliseconds(50));
        }
    }

    private static string Policy(long generation, string host) =>
        $$"""{"schemaVersion":1,"generation":{{generation}},"allow":[{"host":"{{host}}"}]}""";

    /// <summary>Publishes a new version of the ConfigMap as kubelet does: new timestamped folder, <c>..data_tmp</c>
    /// symlink to it, then one atomic rename over <c>..data</c>, then the old folder is removed.</summary>
    private void Publish(string key, string content, DateTime? lastWrite = null)
    {
        string previous = Directory.Exists(Path.Combine(_mount, "..data")) ? new DirectoryInfo(Path.Combine(_mount, "..data")).LinkTarget! : string.Empty;
        string version = $"..2026_11_30_16_00_00.{++_version}";
        Directory.CreateDirectory(Path.Combine(_mount, version));
        string file = Path.Combine(_mount, version, key);
        File.WriteAllText(file, content);
        if (lastWrite is { } time)
        {
            File.SetLastWriteTimeUtc(file, time);
        }

        string temp = Path.Combine(_mount, "..data_tmp");
        Directory.CreateSymbolicLink(temp, version);
        rename(temp, Path.Combine(_mount, "..data")).Should().Be(0, "rename(2) replaces the ..data link atomically");
        if (!File.Exists(Path.Combine(_mount, key)))
        {
            File.CreateSymbolicLink(Path.Combine(_mount, key), Path.Combine("..data", key));
        }

        if (previous.Length > 0)
        {
            Directory.Delete(Path.Combine(_mount, previous), recursive: true);
        }
    }

    [Fact]
    public void ConfigMapSwap_FakeClock_InForceWithinTwoSecondsOfTheChange()
    {
        Publish("egress-policy.json", Policy(1, "a.example.org"));
        var time = new FakeTimeProvider(Start);
        using var source = new DirectoryEgressPolicySource(Path.Combine(_mount, "egress-policy.json"), null, null, time);
        using var monitor = new EgressPolicyMonitor(source, null, time);
        monitor.Evaluate("a.example.org", 443, null).Reason.Should().Be(EgressReason.Allowlisted);

        Publish("egress-policy.json", Policy(2, "b.example.org"));
        var elapsed = TimeSpan.Zero;
        while (monitor.State.Generation != 2 && elapsed < TimeSpan.FromSeconds(5))
        {
            time.Advance(TimeSpan.FromMilliseconds(50));
            elapsed += TimeSpan.FromMilliseconds(50);
        }

        monitor.State.Generation.Should().Be(2);
        elapsed.Should().BeLessThanOrEqualTo(TimeSpan.FromSeconds(2), "the default watch interval and reload delay put a change in force within 2 seconds");
        monitor.Evaluate("b.example.org", 443, null).Reason.Should().Be(EgressReason.Allowlisted);
        monitor.Evaluate("a.example.org", 443, null).Reason.Should().Be(EgressReason.NotAllowlisted);
    }

    [Fact]
    public async Task ConfigMapSwap_RealClock_KarsFolderReloads()
    {
        Publish("allowlist.json", """{"schemaVersion":1,"endpoints":[{"host":"a.example.org","port":443}]}""");
        using var source = new DirectoryEgressPolicySource(_mount, new KarsEgressOptions { WatchInterval = TimeSpan.FromMilliseconds(100), ReloadDelay = TimeSpan.FromMilliseconds(50) });
        using var monitor = new EgressPolicyMonitor(source, new KarsEgressOptions { ReloadDelay = TimeSpan.FromMilliseconds(50) });
        monitor.Evaluate("a.example.org", 443, null).Reason.Should().Be(EgressReason.Allowlisted);
        string firstDigest = monitor.State.Digest!;
        var swapped = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var subscription = ChangeToken.OnChange(monitor.GetChangeToken, () =>
        {
            if (monitor.State.Digest != firstDigest)
            {
                swapped.TrySetResult();
            }
        });

        Publish("allowlist.json", """{"schemaVersion":1,"endpoints":[{"host":"b.example.org","port":443}]}""");

        await swapped.Task.WaitAsync(TimeSpan.FromSeconds(30));
        monitor.State.IsStale.Should().BeFalse();
        monitor.Evaluate("b.example.org", 443, null).Reason.Should().Be(EgressReason.Allowlisted);
        monitor.Evaluate("a.example.org", 443, null).Reason.Should().Be(EgressReason.NotAllowlisted);
    }

    [Fact]
    public void Poll_SwapToSameSizeAndTime_StillSeen()
    {
        // Same length and the same last-write time: only the link target changed. A poll that compared lstat times or
        // the resolved file's size and time alone would miss this swap (kars gap 10).
        var stamp = new DateTime(2026, 11, 30, 12, 0, 0, DateTimeKind.Utc);
        Publish("egress-policy.json", Policy(1, "a.example.org"), stamp);
        using var source = new DirectoryEgressPolicySource(Path.Combine(_mount, "egress-policy.json"), null, null, new FakeTimeProvider(Start));
        var token = source.GetChangeToken();
        source.Load().Generation.Should().Be(1);

        source.Poll();
        token.HasChanged.Should().BeFalse("nothing changed yet");

        Publish("egress-policy.json", Policy(2, "b.example.org"), stamp);
        source.Poll();

        token.HasChanged.Should().BeTrue();
        source.GetChangeToken().HasChanged.Should().BeFalse("a new token waits for the next change");
        source.Load().Generation.Should().Be(2);
    }

    [Fact]
    public void Poll_InPlaceRewriteOnAMockFileSystem_ReloadsAndAFailedReadKeepsLastGood()
    {
        var fs = FileSystemWith(Doc("""{"host":"a.example.org"}"""));
        var time = new FakeTimeProvider(Start);
        using var source = new DirectoryEgressPolicySource(PolicyPath, null, fs, time);
        using var monitor = new EgressPolicyMonitor(source, null, time);
        monitor.State.Generation.Should().Be(3);

        fs.File.WriteAllText(PolicyPath, "garbage that is longer than the policy it replaces, so the size changes for sure");
        Step(time, TimeSpan.FromSeconds(2));

        monitor.State.IsStale.Should().BeTrue();
        monitor.State.Generation.Should().Be(3);

        fs.File.WriteAllText(PolicyPath, """{"schemaVersion":1,"generation":4,"allow":[{"host":"b.example.org"}]}""");
        Step(time, TimeSpan.FromSeconds(2));

        monitor.State.IsStale.Should().BeFalse();
        monitor.State.Generation.Should().Be(4);
    }

    [Fact]
    public void Constructor_InvalidInterval_Throws()
    {
        FluentActions.Invoking(() => new DirectoryEgressPolicySource(_mount, new KarsEgressOptions { WatchInterval = TimeSpan.Zero }))
            .Should().Throw<ArgumentOutOfRangeException>();
    }

    [Fact]
    public void FileSource_NeverFires_LoadsOnEachCall()
    {
        var fs = FileSystemWith(Doc("""{"host":"a.example.org"}"""));
        IEgressPolicySource source = new FileEgressPolicySource(PolicyPath, null, fs);
        var token = source.GetChangeToken();

        source.Load().Generation.Should().Be(3);
        fs.File.WriteAllText(PolicyPath, """{"schemaVersion":1,"generation":5,"allow":[{"host":"b.example.org"}]}""");

        token.HasChanged.Should().BeFalse();
        source.Load().Generation.Should().Be(5);
        source.Name.Should().Be(PolicyPath);
    }

    [Fact]
    public void InMemorySource_CopiesTheCallersBuffer()
    {
        byte[] buffer = Encoding.UTF8.GetBytes(Policy(1, "a.example.org"));
        var source = new InMemoryEgressPolicySource(buffer);

        Array.Clear(buffer);

        source.Load().Generation.Should().Be(1);
    }
}
