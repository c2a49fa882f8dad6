using System.Diagnostics;
using System.Globalization;
using Kars.Policy.Egress;

namespace Kars.Policy.Benchmarks;

/// <summary>
/// Measures what loading the 330,000-entry feed adds to a process's memory, in a fresh process of its own (so nothing
/// a benchmark did before is counted): resident set (VmRSS), peak resident set (VmHWM, reset just before the load through
/// <c>/proc/self/clear_refs</c>) and the managed heap after a full collection, before and after one load.
/// </summary>
/// <remarks>The loader's code paths are warmed on a small policy first, so JIT and assembly loading are not counted
/// against the feed. Run directly: <c>dotnet Kars.Policy.Benchmarks.dll egress-feed-memory &lt;policy.json&gt; [kars|naive]</c>
/// (the policy and the benchmark's feed are written there first when the file does not exist);
/// <see cref="EgressFeedLoadBenchmarks"/> runs it in a child process and prints its line into the benchmark log.</remarks>
internal static class EgressMemoryProbe
{
    public const string Command = "egress-feed-memory";

    /// <summary>Runs the probe in a child process and returns its report line.</summary>
    public static string RunChild(string policyPath, string what)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(typeof(EgressMemoryProbe).Assembly.Location);
        start.ArgumentList.Add(Command);
        start.ArgumentList.Add(policyPath);
        start.ArgumentList.Add(what);
        using var process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd();
        string error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        return process.ExitCode == 0 ? output.Trim() : $"probe failed ({process.ExitCode}): {error.Trim()}";
    }

    public static int Run(string[] args)
    {
        string policyPath = args[1];
        string what = args.Length > 2 ? args[2] : "kars";
        string folder = Path.GetDirectoryName(Path.GetFullPath(policyPath))!;
        if (!File.Exists(policyPath))
        {
            // Stand-alone use: write the benchmark's feed (same seed) first.
            Directory.CreateDirectory(folder);
            new EgressData().WriteFeed(Path.Combine(folder, "feed.txt"));
            File.WriteAllText(policyPath, "{\"schemaVersion\":1,\"blocklist\":{\"files\":[\"feed.txt\"]}}");
        }

        // Warm-up: the same code paths on a 3-line feed.
        string warmFolder = Path.Combine(folder, "warm");
        Directory.CreateDirectory(warmFolder);
        File.WriteAllText(Path.Combine(warmFolder, "feed.txt"), "a.example.com\nb.example.net\nc.example.org\n");
        File.WriteAllText(Path.Combine(warmFolder, "policy.json"), "{\"schemaVersion\":1,\"blocklist\":{\"files\":[\"feed.txt\"]}}");
        object warm = Load(what, Path.Combine(warmFolder, "policy.json"));
        GC.KeepAlive(warm);
        warm = null!;

        long managedBefore = GC.GetTotalMemory(forceFullCollection: true);
        long rssBefore = Status("VmRSS");
        File.WriteAllText("/proc/self/clear_refs", "5"); // resets VmHWM to the current RSS
        var watch = Stopwatch.StartNew();
        object loaded = Load(what, policyPath);
        watch.Stop();
        long peak = Status("VmHWM");
        long rssAfterLoad = Status("VmRSS");
        long managedAfter = GC.GetTotalMemory(forceFullCollection: true);
        long rssAfterCollect = Status("VmRSS");
        GC.KeepAlive(loaded);

        Console.WriteLine(string.Create(
            CultureInfo.InvariantCulture,
            $"// FeedMemory {what}: load {watch.Elapsed.TotalMilliseconds:F0} ms; managed retained {(managedAfter - managedBefore) / 1e6:F1} MB; "
            + $"RSS before {rssBefore / 1e6:F1} MB, peak added {(peak - rssBefore) / 1e6:F1} MB, added after load {(rssAfterLoad - rssBefore) / 1e6:F1} MB, "
            + $"added after a full collection {(rssAfterCollect - rssBefore) / 1e6:F1} MB (GC {(System.Runtime.GCSettings.IsServerGC ? "server" : "workstation")})"));
        return 0;
    }

    private static object Load(string what, string policyPath) =>
        what == "naive" ? EgressFeedLoadBenchmarks.NaiveLoad(Path.Combine(Path.GetDirectoryName(policyPath)!, "feed.txt")) : EgressPolicy.Load(policyPath);

    /// <summary>A <c>/proc/self/status</c> field in bytes.</summary>
    private static long Status(string field)
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
            {
                string kb = line[(field.Length + 1)..].Trim().Split(' ')[0];
                return long.Parse(kb, CultureInfo.InvariantCulture) * 1024;
            }
        }

        return 0;
    }
}
