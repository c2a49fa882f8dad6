using System.Diagnostics.Metrics;
using BenchmarkDotNet.Attributes;
using Kars.Policy.Egress;

namespace Kars.Policy.Benchmarks;

/// <summary>
/// What counting decisions on the <c>Kars.Policy</c> meter costs on the warm egress path: the same policy and names
/// (<see cref="EgressData.Warm"/>) evaluated with no listener (baseline: the instrument is disabled, one field read) and
/// with a <see cref="MeterListener"/> whose callback adds to a counter (the cheapest real consumer; an OpenTelemetry
/// aggregator does more work per measurement, which is its cost, not the library's).
/// </summary>
[MemoryDiagnoser]
public class EgressTelemetryBenchmarks
{
    private EgressData _data = null!;
    private string _folder = null!;
    private string[] _warm = null!;
    private BenchMeterFactory _quiet = null!;
    private BenchMeterFactory _listened = null!;
    private EgressPolicy _withoutListener = null!;
    private EgressPolicy _withListener = null!;
    private MeterListener _listener = null!;
    private long _measured;

    [GlobalSetup]
    public void Setup()
    {
        _data = new EgressData();
        _folder = Path.Combine(Path.GetTempPath(), "kars-egress-telemetry-bench-" + Environment.ProcessId);
        string path = _data.WriteTo(_folder);
        _warm = _data.Warm;
        _quiet = new BenchMeterFactory();
        _listened = new BenchMeterFactory();
        _withoutListener = EgressPolicy.Load(path, meterFactory: _quiet);
        _withListener = EgressPolicy.Load(path, meterFactory: _listened);
        _listener = new MeterListener
        {
            InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Scope == _listened)
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            },
        };
        _listener.SetMeasurementEventCallback<long>((_, value, _, _) => Interlocked.Add(ref _measured, value));
        _listener.Start();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _listener.Dispose();
        _quiet.Dispose();
        _listened.Dispose();
        Directory.Delete(_folder, recursive: true);
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = 8)]
    public int Warm_NoListener() => Run(_withoutListener);

    [Benchmark(OperationsPerInvoke = 8)]
    public int Warm_WithListener() => Run(_withListener);

    private int Run(EgressPolicy policy)
    {
        int allowed = 0;
        foreach (string host in _warm)
        {
            if (policy.Evaluate(host, 443).IsAllowed)
            {
                allowed++;
            }
        }

        return allowed;
    }

    private sealed class BenchMeterFactory : IMeterFactory
    {
        private readonly List<Meter> _meters = [];

        public Meter Create(MeterOptions options)
        {
            var meter = new Meter(new MeterOptions(options.Name) { Version = options.Version, Scope = this });
            _meters.Add(meter);
            return meter;
        }

        public void Dispose()
        {
            foreach (var meter in _meters)
            {
                meter.Dispose();
            }
        }
    }
}
