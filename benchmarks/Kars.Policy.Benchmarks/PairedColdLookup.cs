using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Kars.Policy.Egress;

namespace Kars.Policy.Benchmarks;

/// <summary>
/// The cold lookup of <see cref="EgressBenchmarks"/> (4,096 random names against 10,000 rules and a 330,000-entry
/// feed) measured side by side in one process: each round times the policy, the naive <see cref="HashSetProbe"/> and
/// <see cref="TablesOnlyDecider"/> (the policy's tables read with nothing around them, a lower bound for the present
/// data structures) back to back, in an order that rotates, and the ratios are taken per round. On a shared host whose speed drifts between a
/// benchmark's separate processes and iterations, a per-round ratio compares the two under the same conditions.
/// </summary>
/// <remarks>
/// <para>Run: <c>dotnet Kars.Policy.Benchmarks.dll paired-cold [rounds]</c>. Two sets: the 4,096 names (the data does
/// not stay in the caches between names) and their first 256 (the data stays cached; nearly every call still misses the
/// policy's per-thread decision cache of 64 direct-mapped entries: only a name alone in its entry, about 2% of them,
/// hits), which shows the cost of the work apart from memory.</para>
/// <para>Not the same quantity as BenchmarkDotNet's ratio: back to back, each side starts its round with the caches
/// the other left (the probe's data is about four times the policy's, so this favours the probe), and thread CPU time
/// still counts time the hypervisor took from the virtual CPU.</para>
/// <para>Time is the thread's CPU time on Linux (<c>CLOCK_THREAD_CPUTIME_ID</c>, so time the thread spent preempted is
/// not counted) and the wall clock elsewhere. The first quarter of the rounds is a warm-up and is not reported.</para>
/// </remarks>
internal static class PairedColdLookup
{
    public const string Command = "paired-cold";

    public static int Run(string[] args)
    {
        int rounds = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 200;
        if (rounds < 8)
        {
            Console.Error.WriteLine("rounds: at least 8 (a quarter are warm-up)");
            return 2;
        }

        var data = new EgressData();
        string folder = Path.Combine(Path.GetTempPath(), "kars-paired-cold-" + Environment.ProcessId);
        try
        {
            string path = data.WriteTo(folder);
            var policy = EgressPolicy.Load(path);
            var probe = new HashSetProbe(data);
            var tables = new TablesOnlyDecider(EgressPolicySnapshot.Create(
                File.ReadAllBytes(path),
                new Dictionary<string, ReadOnlyMemory<byte>> { ["feed.txt"] = File.ReadAllBytes(Path.Combine(folder, "feed.txt")) }));
            int Kars(string[] hosts)
            {
                int allowed = 0;
                foreach (string host in hosts)
                {
                    if (policy.Evaluate(host, 443).IsAllowed)
                    {
                        allowed++;
                    }
                }

                return allowed;
            }

            // Same decisions from both sides, or the comparison means nothing.
            foreach (string host in data.Cold)
            {
                bool allowed = probe.Decide(host);
                if (policy.Evaluate(host, 443).IsAllowed != allowed || tables.Decide(host) != allowed)
                {
                    Console.Error.WriteLine($"decisions differ for {host}");
                    return 1;
                }
            }

            Console.WriteLine($"Paired cold lookup, {rounds} rounds ({rounds / 4} warm-up), {(ThreadCpuClock.IsThreadTime ? "thread CPU time" : "wall clock")}, {Environment.ProcessorCount} cores, .NET {Environment.Version}");
            Report("4,096 names (cold)", data.Cold, 8, rounds, [Kars, probe.Run, tables.Run]);
            Report("256 names (data cached)", [.. data.Cold.Take(256)], 128, rounds, [Kars, probe.Run, tables.Run]);
            return 0;
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    /// <summary>Times the policy, the probe and the tables alone (<paramref name="sides"/>, in that order) in every round,
    /// starting with a different one each round.</summary>
    private static void Report(string title, string[] hosts, int repeats, int rounds, Func<string[], int>[] sides)
    {
        var ns = sides.Select(_ => new List<double>()).ToArray();
        var probeOverKars = new List<double>();
        var karsOverTables = new List<double>();
        int sink = 0;
        double[] times = new double[sides.Length];
        for (int round = 0; round < rounds; round++)
        {
            for (int k = 0; k < sides.Length; k++)
            {
                int side = (round + k) % sides.Length;
                times[side] = Time(sides[side], hosts, repeats, ref sink);
            }

            if (round < rounds / 4)
            {
                continue;
            }

            for (int side = 0; side < sides.Length; side++)
            {
                ns[side].Add(times[side]);
            }

            probeOverKars.Add(times[1] / times[0]);
            karsOverTables.Add(times[0] / times[2]);
        }

        Console.WriteLine();
        Console.WriteLine($"{title}, ns per decision (sink {sink % 10})");
        Console.WriteLine($"{"",-24}{"min",10}{"p10",10}{"median",10}{"p90",10}{"mean",10}");
        Line("Kars.Policy", ns[0], "F1");
        Line("HashSet probe", ns[1], "F1");
        Line("tables alone (bound)", ns[2], "F1");
        Line("probe / Kars (paired)", probeOverKars, "F2");
        Line("Kars / tables (paired)", karsOverTables, "F2");
    }

    private static double Time(Func<string[], int> run, string[] hosts, int repeats, ref int sink)
    {
        long start = ThreadCpuClock.Now();
        for (int i = 0; i < repeats; i++)
        {
            sink += run(hosts);
        }

        return (ThreadCpuClock.Now() - start) / (double)(repeats * hosts.Length);
    }

    private static void Line(string name, List<double> values, string format)
    {
        values.Sort();
        string F(double v) => v.ToString(format, CultureInfo.InvariantCulture);
        Console.WriteLine($"{name,-24}{F(values[0]),10}{F(values[values.Count / 10]),10}{F(values[values.Count / 2]),10}{F(values[values.Count * 9 / 10]),10}{F(values.Average()),10}");
    }

    /// <summary>Nanoseconds of this thread's CPU time (Linux), or of the wall clock.</summary>
    private static class ThreadCpuClock
    {
        private const int ClockThreadCpuTimeId = 3;

        public static bool IsThreadTime { get; } = OperatingSystem.IsLinux() && TryRead(out _);

        public static long Now()
        {
            if (IsThreadTime && TryRead(out long ns))
            {
                return ns;
            }

            return (long)(Stopwatch.GetTimestamp() * (1e9 / Stopwatch.Frequency));
        }

        private static bool TryRead(out long ns)
        {
            if (clock_gettime(ClockThreadCpuTimeId, out Timespec time) != 0)
            {
                ns = 0;
                return false;
            }

            ns = (time.Seconds * 1_000_000_000L) + time.Nanoseconds;
            return true;
        }

        [DllImport("libc", EntryPoint = "clock_gettime")]
        private static extern int clock_gettime(int clock, out Timespec time);

        [StructLayout(LayoutKind.Sequential)]
        private struct Timespec
        {
            public long Seconds;
            public long Nanoseconds;
        }
    }
}
