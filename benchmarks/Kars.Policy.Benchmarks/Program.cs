using BenchmarkDotNet.Running;

namespace Kars.Policy.Benchmarks;

internal static class Program
{
    // Run one suite: dotnet run -c Release --project benchmarks/Kars.Policy.Benchmarks -- --filter '*Egress*'
    // The cold lookup as same-process pairs: dotnet run -c Release --project benchmarks/Kars.Policy.Benchmarks -- paired-cold
    private static int Main(string[] args)
    {
        if (args.Length > 1 && args[0] == EgressMemoryProbe.Command)
        {
            return EgressMemoryProbe.Run(args);
        }

        if (args.Length > 0 && args[0] == PairedColdLookup.Command)
        {
            return PairedColdLookup.Run(args);
        }

        BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
        return 0;
    }
}
