using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Runtime.CompilerServices;
using Kars.Policy.Budgets;
using Kars.Policy.Egress;

namespace Kars.Policy.Internal;

/// <summary>
/// The instruments of the <c>Kars.Policy</c> meter (docs/telemetry.md). One instance per <see cref="IMeterFactory"/>
/// (so a host's container owns and disposes the meter), or one process-wide instance when no factory is given.
/// </summary>
/// <remarks>
/// <para>Tags are closed sets of constant strings (verdict, reason, mode, token action, store operation, store type
/// name, exception type name): never a host name, budget key, token, URL or anything a caller chose. Recording checks
/// <see cref="Instrument.Enabled"/> first, so with no listener attached a decision costs one field read. Decisions are
/// counted in per-processor slots and reported as an observable counter when a listener collects, so a decision never
/// calls into a listener and allocates nothing either way; budget instruments are plain counters and histograms
/// (their calls are I/O-bound), with tags in a stack-allocated <see cref="TagList"/>.</para>
/// <para>Thread safety: instruments are safe for concurrent use.</para>
/// </remarks>
internal sealed class KarsPolicyMetrics
{
    /// <summary>The meter name.</summary>
    public const string MeterName = "Kars.Policy";

    /// <summary>Tag: the egress verdict (<c>allow</c>, <c>deny</c>).</summary>
    public const string VerdictTag = "kars.policy.egress.verdict";

    /// <summary>Tag: the egress reason (camelCase of <see cref="EgressReason"/>, as <c>kars-policy eval --json</c>).</summary>
    public const string ReasonTag = "kars.policy.egress.reason";

    /// <summary>Tag: the mode (<c>strict</c>/<c>learn</c> for egress, <c>enforce</c>/<c>observe</c> for budgets).</summary>
    public const string ModeTag = "kars.policy.mode";

    /// <summary>Tag: the result of a reload (<c>success</c>, <c>failure</c>).</summary>
    public const string ReloadResultTag = "kars.policy.egress.reload.result";

    /// <summary>Tag: what happened to budget tokens (<c>reserved</c>, <c>charged</c>, <c>released</c>).</summary>
    public const string TokenActionTag = "kars.policy.budget.token.action";

    /// <summary>Tag: the store operation (<c>reserve</c>, <c>settle</c>, <c>abandon</c>, <c>status</c>).</summary>
    public const string StoreOperationTag = "kars.policy.budget.store.operation";

    /// <summary>Tag: the store's type name (<c>InMemoryBudgetStore</c>, <c>FileBudgetStore</c>, <c>RedisBudgetStore</c>, …).</summary>
    public const string StoreTypeTag = "kars.policy.budget.store.type";

    /// <summary>Tag (OpenTelemetry semantic convention): the full name of the exception type of a failed store call.</summary>
    public const string ErrorTypeTag = "error.type";

    private static readonly ConditionalWeakTable<IMeterFactory, KarsPolicyMetrics> PerFactory = new();

    private static readonly string[] ReasonNames = Enum.GetNames<EgressReason>().Select(n => char.ToLowerInvariant(n[0]) + n[1..]).ToArray();

    /// <summary>Process-wide: never disposed, like the meters the BCL creates for itself without a factory.</summary>
    private static readonly Lazy<KarsPolicyMetrics> Shared = new(static () => new KarsPolicyMetrics(new Meter(MeterName, Version)), LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Decision slots per stripe: verdict (2) × reason (16) × mode (2), padded to keep stripes on separate cache lines.</summary>
    private const int DecisionSlots = 64;
    private const int StripeWidth = DecisionSlots + 8;

    private static readonly KeyValuePair<string, object?>[][] DecisionTags = BuildDecisionTags();

    private readonly ObservableCounter<long> _egressDecisions;
    private readonly long[] _decisionCounts;
    private readonly int _stripeMask;
    private readonly Counter<long> _egressReloads;
    private readonly Counter<long> _budgetTokens;
    private readonly Histogram<double> _storeDuration;

    private KarsPolicyMetrics(Meter meter)
    {
        Meter = meter;
        int stripes = (int)Math.Min(64, System.Numerics.BitOperations.RoundUpToPowerOf2((uint)Math.Max(1, Environment.ProcessorCount)));
        _stripeMask = stripes - 1;
        _decisionCounts = new long[stripes * StripeWidth];
        _egressDecisions = meter.CreateObservableCounter(
            "kars.policy.egress.decisions",
            ObserveDecisions,
            unit: "{decision}",
            description: "Egress decisions made through EgressPolicyMonitor or EgressPolicy, by verdict, reason and mode.");
        _egressReloads = meter.CreateCounter<long>(
            "kars.policy.egress.reloads",
            unit: "{reload}",
            description: "Egress policy loads and reloads by result; a failure keeps the last good snapshot (stale) or leaves no policy.");
        _budgetTokens = meter.CreateCounter<long>(
            "kars.policy.budget.tokens",
            unit: "{token}",
            description: "Budget tokens reserved at admission, charged at settlement (actual usage, or the hold when abandoned or expired) and released (the unused part of a hold).");
        _storeDuration = meter.CreateHistogram<double>(
            "kars.policy.budget.store.duration",
            unit: "s",
            description: "Duration of budget store calls made through a BudgetMeter (and the leases it issues).",
            tags: null,
            advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5] });
    }

    /// <summary>Gets the meter.</summary>
    public Meter Meter { get; }

    /// <summary>Returns the instruments of <paramref name="meterFactory"/>'s <c>Kars.Policy</c> meter, or the process-wide ones.</summary>
    /// <param name="meterFactory">The factory (usually from the host's container), or <see langword="null"/>.</param>
    /// <returns>The instruments; one instance per factory.</returns>
    public static KarsPolicyMetrics Get(IMeterFactory? meterFactory)
    {
        if (meterFactory is null)
        {
            return Shared.Value;
        }

        return PerFactory.GetValue(meterFactory, static factory => new KarsPolicyMetrics(factory.Create(new MeterOptions(MeterName) { Version = Version })));
    }

    private static string? Version => typeof(KarsPolicyMetrics).Assembly.GetName().Version?.ToString();

    /// <summary>Records one egress decision.</summary>
    /// <param name="decision">The decision.</param>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public void EgressDecided(in EgressDecision decision)
    {
        if (_egressDecisions.Enabled)
        {
            RecordDecision(decision.Verdict, decision.Reason, decision.Mode);
        }
    }

    /// <summary>Records one load or reload of an egress policy.</summary>
    /// <param name="success">Whether a new snapshot is in force.</param>
    public void EgressReloaded(bool success)
    {
        if (_egressReloads.Enabled)
        {
            _egressReloads.Add(1, new KeyValuePair<string, object?>(ReloadResultTag, success ? "success" : "failure"));
        }
    }

    /// <summary>Records budget tokens.</summary>
    /// <param name="action">The constant action string (<see cref="Reserved"/>, <see cref="Charged"/>, <see cref="Released"/>).</param>
    /// <param name="tokens">The tokens (nothing is recorded for 0 or less).</param>
    /// <param name="mode">The budget mode.</param>
    public void BudgetTokens(string action, long tokens, BudgetMode mode)
    {
        if (tokens > 0 && _budgetTokens.Enabled)
        {
            _budgetTokens.Add(tokens, new KeyValuePair<string, object?>(TokenActionTag, action), new KeyValuePair<string, object?>(ModeTag, mode == BudgetMode.Observe ? "observe" : "enforce"));
        }
    }

    /// <summary>Records the duration of one store call that began at <paramref name="startTimestamp"/> (0: not measured).</summary>
    /// <param name="operation">The constant operation string.</param>
    /// <param name="storeType">The store's type name.</param>
    /// <param name="startTimestamp">The <see cref="Stopwatch.GetTimestamp"/> at the start, or 0.</param>
    /// <param name="error">The failure, or <see langword="null"/>.</param>
    public void StoreCallEnded(string operation, string storeType, long startTimestamp, Exception? error)
    {
        if (startTimestamp == 0 || !_storeDuration.Enabled)
        {
            return;
        }

        var tags = new TagList
        {
            { StoreOperationTag, operation },
            { StoreTypeTag, storeType },
        };
        if (error is not null)
        {
            tags.Add(ErrorTypeTag, error.GetType().FullName);
        }

        _storeDuration.Record(Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds, in tags);
    }

    /// <summary>The start timestamp of a store call when durations are listened to; 0 otherwise (no clock read).</summary>
    /// <returns>The timestamp or 0.</returns>
    public long StoreCallStarting() => _storeDuration.Enabled ? Stopwatch.GetTimestamp() : 0;

    /// <summary>Token action: held at admission.</summary>
    public const string Reserved = "reserved";

    /// <summary>Token action: charged at settlement.</summary>
    public const string Charged = "charged";

    /// <summary>Token action: the unused part of a hold, returned at settlement.</summary>
    public const string Released = "released";

    /// <summary>Counts one decision in this processor's stripe (an uncontended interlocked add); the totals are
    /// reported when a listener collects (<see cref="ObserveDecisions"/>). A <see cref="Counter{T}"/> would call every
    /// listener on the decision path, several times the cost of the warm decision itself.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void RecordDecision(EgressVerdict verdict, EgressReason reason, EgressMode mode)
    {
        int slot = ((int)reason & 15) << 2 | ((int)mode & 1) << 1 | ((int)verdict & 1);
        int stripe = Thread.GetCurrentProcessorId() & _stripeMask;
        Interlocked.Increment(ref _decisionCounts[(stripe * StripeWidth) + slot]);
    }

    private IEnumerable<Measurement<long>> ObserveDecisions()
    {
        var measurements = new List<Measurement<long>>();
        for (int slot = 0; slot < DecisionSlots; slot++)
        {
            long total = 0;
            for (int stripe = 0; stripe <= _stripeMask; stripe++)
            {
                total += Volatile.Read(ref _decisionCounts[(stripe * StripeWidth) + slot]);
            }

            if (total > 0 && DecisionTags[slot] is { } tags)
            {
                measurements.Add(new Measurement<long>(total, tags));
            }
        }

        return measurements;
    }

    private static KeyValuePair<string, object?>[][] BuildDecisionTags()
    {
        var tags = new KeyValuePair<string, object?>[DecisionSlots][];
        for (int slot = 0; slot < DecisionSlots; slot++)
        {
            int reason = slot >> 2;
            tags[slot] =
            [
                new(VerdictTag, (slot & 1) == 1 ? "allow" : "deny"),
                new(ReasonTag, reason < ReasonNames.Length ? ReasonNames[reason] : "unknown"),
                new(ModeTag, (slot & 2) != 0 ? "learn" : "strict"),
            ];
        }

        return tags;
    }
}
