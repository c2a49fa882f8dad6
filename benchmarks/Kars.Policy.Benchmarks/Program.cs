using BenchmarkDotNet.Running;

namespace Kars.Policy.Benchmarks;

internal static class Program
{
    // Run one suite: dotnet run -c Release --project benchmarks/Kars.Policy.Benchmarks -- --filter '*Egress*'
    private static void Main(string[] args) => BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
}
