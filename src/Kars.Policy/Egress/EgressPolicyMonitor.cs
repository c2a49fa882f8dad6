using System.Diagnostics.Metrics;
using System.Net;
using Kars.Policy.Internal;
using Kars.Policy.Hosts;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Primitives;
using NodaTime;
using NodaTime.Extensions;

namespace Kars.Policy.Egress;

/// <summary>
/// Owns an <see cref="IEgressPolicySource"/>, holds the policy in force as one immutable <see cref="EgressPolicyState"/>,
/// reloads when the source changes, and evaluates every destination against the snapshot in force (DESIGN §2.7).
/// </summary>
/// <remarks>
/// <para>Loading: the first load happens on first use (<see cref="State"/>, any <c>Evaluate</c>, or
/// <see cref="Reload"/>), never in the constructor. After that, every change notification of the source schedules a
/// reload after <see cref="KarsEgressOptions.ReloadDelay"/>; more notifications in that time restart the wait
/// (debounce).</para>
/// <para>Every load replaces the whole state with one atomic write, then fires the change token
/// (<see cref="GetChangeToken"/>). A load that fails keeps the last good snapshot and marks the state stale; a policy
/// whose generation is lower than the one in force is refused (<see cref="EgressPolicyProblemKind.RollbackRejected"/>)
/// the same way, and so is, from a signed bundle source, a different policy under the generation in force. With no snapshot at all every decision is <see cref="EgressReason.NoPolicy"/>, in every mode.</para>
/// <para>Thread safety: every member is safe to call concurrently. A decision reads the state once, so it is
/// consistent with exactly one snapshot (its digest, generation and verdict all come from it). Evaluating a canonical
/// DNS name and <see cref="EvaluateResolvedAddress"/> allocate nothing. Learn-mode decisions are reported to
/// <see cref="LearnedHosts"/>, which outlives reloads. The monitor does not dispose its source.</para>
/// <para>Telemetry: every evaluation is counted on <c>kars.policy.egress.decisions</c> (verdict, reason, mode; never the
/// target) and every load on <c>kars.policy.egress.reloads</c>, on the <c>Kars.Policy</c> meter (docs/telemetry.md).
/// With no listener attached this is one flag read per decision.</para>
/// </remarks>
public sealed class EgressPolicyMonitor : IEgressPolicy, IDisposable
{
    private readonly IEgressPolicySource _source;
    private readonly IEgressPolicyLastKnownGoodStore? _lastKnownGood;

    // A signed bundle's generation is part of what was signed: a reused one is refused and problems carry a BundleFailure.
    private readonly bool _signedGenerations;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger _logger;
    private readonly TimeSpan _reloadDelay;
    private readonly EgressMode _modeWithoutPolicy;
    private readonly KarsPolicyMetrics _metrics;
    private readonly Lock _reloadGate = new();
    private readonly Lock _timerGate = new();
    private EgressPolicyState? _state;

    // The generation (and digest) the last-known-good store recorded when its copy could not be used at start-up: the
    // rollback floor until a policy is in force (review finding: a refused copy must not lower the floor).
    private long _recordedGeneration;
    private string? _recordedDigest;
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2213:Disposable fields should be disposed", Justification = "A token source without a timer holds no unmanaged resource; disposing it would make a reader racing with Dispose throw ObjectDisposedException.")]
    private CancellationTokenSource _changed = new();
    private IDisposable? _subscription;
    private ITimer? _debounce;
    private bool _disposed;

    /// <summary>Initializes a new monitor over a source. Nothing is loaded until first use.</summary>
    /// <param name="source">Where the policy comes from.</param>
    /// <param name="options">Options (<see cref="KarsEgressOptions.ReloadDelay"/>, <see cref="KarsEgressOptions.LearnedCapacity"/>,
    /// and <see cref="KarsEgressOptions.Mode"/> for decisions made with no policy); <see langword="null"/> for the defaults. Copied.
    /// The mode, trusted prefixes and feed limits that shape a snapshot are the source's options.</param>
    /// <param name="timeProvider">The clock for approvals, learned hosts, load times and the debounce; <see langword="null"/> for <see cref="TimeProvider.System"/>.</param>
    /// <param name="loggerFactory">Where load results go; <see langword="null"/> for none. Target hosts are never logged.</param>
    /// <param name="learnedHosts">The recorder Learn-mode decisions are reported to; <see langword="null"/> for a new one built from <paramref name="options"/> and <paramref name="timeProvider"/>.</param>
    /// <param name="lastKnownGood">The last-known-good store (DESIGN §3); <see langword="null"/> for none.</param>
    /// <param name="meterFactory">Creates the <c>Kars.Policy</c> meter that decisions and reloads are counted on
    /// (docs/telemetry.md); <see langword="null"/> for a process-wide meter of that name.</param>
    /// <exception cref="ArgumentNullException"><paramref name="source"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option is invalid.</exception>
    public EgressPolicyMonitor(
        IEgressPolicySource source,
        KarsEgressOptions? options = null,
        TimeProvider? timeProvider = null,
        ILoggerFactory? loggerFactory = null,
        LearnedHostRecorder? learnedHosts = null,
        IEgressPolicyLastKnownGoodStore? lastKnownGood = null,
        IMeterFactory? meterFactory = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        options ??= new KarsEgressOptions();
        EgressCompileSettings.ValidateTiming(options);
        if (options.Mode is { } mode && !Enum.IsDefined(mode))
        {
            throw new ArgumentOutOfRangeException(nameof(options), mode, "KarsEgressOptions.Mode must be Strict or Learn.");
        }

        _source = source;
        _signedGenerations = source is Bundles.OciBundleEgressPolicySource;
        _lastKnownGood = lastKnownGood;
        _timeProvider = timeProvider ?? TimeProvider.System;
        _logger = (ILogger?)loggerFactory?.CreateLogger<EgressPolicyMonitor>() ?? NullLogger.Instance;
        _reloadDelay = options.ReloadDelay;
        _modeWithoutPolicy = options.Mode ?? EgressMode.Strict;
        _metrics = KarsPolicyMetrics.Get(meterFactory);
        LearnedHosts = learnedHosts ?? new LearnedHostRecorder(options, fileSystem: null, _timeProvider);
    }

    /// <summary>Gets the current state (loading the policy first if this is the first use).</summary>
    public EgressPolicyState State => Volatile.Read(ref _state) ?? EnsureLoaded();

    /// <summary>Gets the recorder Learn-mode decisions are reported to. It outlives reloads.</summary>
    public LearnedHostRecorder LearnedHosts { get; }

    /// <summary>Returns a token that fires on the next state change (a new snapshot, or a failed or refused load).</summary>
    /// <returns>The change token.</returns>
    public IChangeToken GetChangeToken() => new CancellationChangeToken(Volatile.Read(ref _changed).Token);

    /// <summary>Loads the source now and swaps the result in (or, on failure, keeps the last good snapshot and marks it stale).</summary>
    /// <returns><see langword="true"/> when a new snapshot from the source is in force.</returns>
    public bool Reload()
    {
        lock (_reloadGate)
        {
            Subscribe();
            return ReloadCore();
        }
    }

    /// <summary>Stops reacting to source changes. Evaluation keeps working on the state in force.</summary>
    public void Dispose()
    {
        lock (_timerGate)
        {
            _disposed = true;
            _debounce?.Dispose();
            _debounce = null;
        }

        lock (_reloadGate)
        {
            _subscription?.Dispose();
            _subscription = null;
        }
    }

    /// <inheritdoc cref="EgressPolicySnapshot.Evaluate(in EgressTarget, string?)"/>
    public EgressDecision Evaluate(in EgressTarget target, string? sandbox)
    {
        var decision = EvaluateCore(target, sandbox);
        _metrics.EgressDecided(decision);
        return decision;
    }

    /// <inheritdoc cref="EgressPolicySnapshot.Evaluate(Uri, string?)"/>
    public EgressDecision Evaluate(Uri uri, string? sandbox)
    {
        var decision = EvaluateCore(uri, sandbox);
        _metrics.EgressDecided(decision);
        return decision;
    }

    /// <inheritdoc cref="EgressPolicySnapshot.Evaluate(string, string?)"/>
    public EgressDecision Evaluate(string hostOrUrl, string? sandbox)
    {
        var decision = EvaluateCore(hostOrUrl, sandbox);
        _metrics.EgressDecided(decision);
        return decision;
    }

    /// <inheritdoc cref="EgressPolicySnapshot.Evaluate(string, int, string?)"/>
    public EgressDecision Evaluate(string host, int port, string? sandbox)
    {
        var decision = EvaluateCore(host, port, sandbox);
        _metrics.EgressDecided(decision);
        return decision;
    }

    /// <inheritdoc cref="EgressPolicySnapshot.EvaluateResolvedAddress(IPAddress, int, string?)"/>
    public EgressDecision EvaluateResolvedAddress(IPAddress address, int port, string? sandbox)
    {
        var decision = EvaluateResolvedAddressCore(address, port, sandbox);
        _metrics.EgressDecided(decision);
        return decision;
    }

    private EgressDecision EvaluateCore(in EgressTarget target, string? sandbox)
    {
        var snapshot = State.Snapshot;
        if (snapshot is not null)
        {
            return snapshot.Evaluate(target, sandbox);
        }

        // As the string overloads: the target is input, re-derived before it is reported.
        _ = UntrustedTargets.TryCanonicalize(target, out var canonical, out var error);
        return EgressPolicySnapshot.NoPolicy(canonical, error, _modeWithoutPolicy);
    }

    private EgressDecision EvaluateCore(Uri uri, string? sandbox)
    {
        var snapshot = State.Snapshot;
        if (snapshot is not null)
        {
            return snapshot.Evaluate(uri, sandbox);
        }

        // On failure the parser sets target to default and error to the reason; NoPolicy reports either.
        _ = EgressTargetParser.TryParseUri(uri, out var target, out var error);
        return EgressPolicySnapshot.NoPolicy(target, error, _modeWithoutPolicy);
    }

    private EgressDecision EvaluateCore(string hostOrUrl, string? sandbox)
    {
        var snapshot = State.Snapshot;
        if (snapshot is not null)
        {
            return snapshot.Evaluate(hostOrUrl, sandbox);
        }

        _ = EgressTargetParser.TryParse(hostOrUrl, out var target, out var error);
        return EgressPolicySnapshot.NoPolicy(target, error, _modeWithoutPolicy);
    }

    private EgressDecision EvaluateCore(string host, int port, string? sandbox)
    {
        var snapshot = State.Snapshot;
        if (snapshot is not null)
        {
            return snapshot.Evaluate(host, port, sandbox);
        }

        EgressTargetParser.TryParseHost(host, port, out var target, out var error);
        return EgressPolicySnapshot.NoPolicy(target, error, _modeWithoutPolicy);
    }

    private EgressDecision EvaluateResolvedAddressCore(IPAddress address, int port, string? sandbox)
    {
        var snapshot = State.Snapshot;
        if (snapshot is not null)
        {
            return snapshot.EvaluateResolvedAddress(address, port, sandbox);
        }

        return address is not null && port is >= 1 and <= 65535
            ? EgressPolicySnapshot.NoPolicy(EgressTarget.FromAddress(address, port), EgressTargetError.None, _modeWithoutPolicy)
            : EgressPolicySnapshot.NoPolicy(default, address is null ? EgressTargetError.Empty : EgressTargetError.InvalidPort, _modeWithoutPolicy);
    }

    private EgressPolicyState EnsureLoaded()
    {
        lock (_reloadGate)
        {
            if (Volatile.Read(ref _state) is { } state)
            {
                return state;
            }

            Subscribe();
            ReloadCore();
            return Volatile.Read(ref _state)!;
        }
    }

    /// <summary>Subscribes to the source's change token once, before the first load, so no change is missed.</summary>
    private void Subscribe()
    {
        if (_subscription is null && !_disposed)
        {
            _subscription = ChangeToken.OnChange(_source.GetChangeToken, ScheduleReload);
        }
    }

    /// <summary>Loads, checks the generation, and swaps one new state in. Never throws (fail closed). Caller holds <see cref="_reloadGate"/>.</summary>
    private bool ReloadCore()
    {
        var previous = Volatile.Read(ref _state);
        EgressPolicySnapshot? loaded = null;
        IReadOnlyList<EgressPolicyProblem> problems = [];
        try
        {
            loaded = _source.Load();
            if (loaded is null)
            {
                problems = [new EgressPolicyProblem(EgressPolicyProblemKind.SourceFailed, _source.Name, "$", "the source returned no policy", null)];
            }
        }
        catch (EgressPolicyLoadException ex)
        {
            problems = ex.Problems.Count > 0 ? ex.Problems : [new EgressPolicyProblem(_source.Name, "$", ex.Message)];
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Whatever a source throws, the previous snapshot stays in force and the problem is reported, never thrown at the host.
            problems = [new EgressPolicyProblem(EgressPolicyProblemKind.SourceFailed, _source.Name, "$", $"unexpected {ex.GetType().Name} while loading: {ex.Message}", null)];
        }

        Instant now = _timeProvider.GetCurrentInstant();
        EgressPolicySnapshot? held = previous?.Snapshot;
        Instant? heldSince = previous?.LoadedAt;
        if (previous is null)
        {
            if (LoadLastKnownGood() is { } lastKnownGood)
            {
                held = lastKnownGood.Bind(_timeProvider, LearnedHosts);
                heldSince = now;
            }
            else
            {
                LoadRecordedGeneration();
            }
        }

        long floorGeneration = held?.Generation ?? _recordedGeneration;
        string? floorDigest = held is not null ? held.Digest : _recordedDigest;
        if (loaded is not null && (held is not null || floorDigest is not null) && RefusedGeneration(loaded, floorGeneration, floorDigest, held is not null ? "in force" : "recorded by the last-known-good store") is { } refusal)
        {
            problems =
            [
                new EgressPolicyProblem(
                    EgressPolicyProblemKind.RollbackRejected,
                    _source.Name,
                    "$.generation",
                    refusal,
                    $"publish the policy with a generation above {floorGeneration}",
                    _signedGenerations ? Bundles.BundleFailureReason.RollbackRejected : null),
            ];
            loaded = null;
        }

        EgressPolicyState next;
        if (loaded is not null)
        {
            var bound = loaded.Bind(_timeProvider, LearnedHosts);
            next = new EgressPolicyState(bound, isStale: false, [], now);
            EgressLog.PolicyLoaded(_logger, _source.Name, bound.Digest, bound.Generation, bound.NameCount);
            foreach (var warning in bound.Warnings)
            {
                EgressLog.PolicyWarning(_logger, warning.ToString());
            }
        }
        else
        {
            next = new EgressPolicyState(held, isStale: held is not null, problems, held is null ? null : heldSince);
            EgressLog.PolicyLoadFailed(
                _logger,
                _source.Name,
                problems.Count,
                problems.Count > 0 ? problems[0].ToString() : "unknown",
                held is not null ? "keeping the last good snapshot (stale)" : "no policy in force: every decision is NoPolicy");
        }

        Volatile.Write(ref _state, next);
        _metrics.EgressReloaded(loaded is not null);
        if (loaded is not null)
        {
            SaveLastKnownGood(next.Snapshot!);
        }

        var fire = Interlocked.Exchange(ref _changed, new CancellationTokenSource());
        try
        {
            fire.Cancel();
        }
        catch (AggregateException ex)
        {
            // A listener's failure is the listener's: the new state is in force either way.
            EgressLog.ChangeListenerFailed(_logger, ex.InnerExceptions.Count, ex.InnerException?.GetType().Name ?? ex.GetType().Name);
        }

        return loaded is not null;
    }

    /// <summary>Why <paramref name="loaded"/> may not replace <paramref name="held"/>, or <see langword="null"/> when it may.</summary>
    /// <remarks>A lower generation is always refused. An equal generation with another digest is refused for a source
    /// whose documents carry a generation (a signed bundle: kars rule 8, generation monotonic across rotations), so
    /// that a second, different policy signed under a generation already in force (an old one re-signed, or a
    /// replay) cannot displace it; the same generation with the same digest is the same policy. Plain files and
    /// folders carry no generation (it is 0 or whatever the author wrote) and keep accepting an equal one.</remarks>
    private string? RefusedGeneration(EgressPolicySnapshot loaded, long generation, string? digest, string where)
    {
        if (loaded.Generation < generation)
        {
            return $"generation {loaded.Generation} ({loaded.Digest}) is lower than generation {generation} {where}; refused";
        }

        if (loaded.Generation == generation
            && _signedGenerations
            && !string.Equals(loaded.Digest, digest, StringComparison.Ordinal))
        {
            return $"generation {loaded.Generation} is already {where} with another policy ({digest}); a different policy ({loaded.Digest}) under the same generation is refused";
        }

        return null;
    }

    /// <summary>Reads the generation the store recorded when its copy cannot be used (refused, unreadable), so a lower
    /// (or, for a bundle, a different same-generation) policy is still refused until a policy is in force.</summary>
    private void LoadRecordedGeneration()
    {
        if (_lastKnownGood is null)
        {
            return;
        }

        try
        {
            if (_lastKnownGood.TryGetRecordedGeneration(out long generation, out string? digest) && digest is not null)
            {
                _recordedGeneration = generation;
                _recordedDigest = digest;
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            EgressLog.LastKnownGoodFailed(_logger, "read the recorded generation", $"{ex.GetType().Name}: {ex.Message}");
        }
    }

    private EgressPolicySnapshot? LoadLastKnownGood()
    {
        if (_lastKnownGood is null)
        {
            return null;
        }

        try
        {
            return _lastKnownGood.Load();
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            EgressLog.LastKnownGoodFailed(_logger, "load", $"{ex.GetType().Name}: {ex.Message}");
            return null;
        }
    }

    private void SaveLastKnownGood(EgressPolicySnapshot snapshot)
    {
        if (_lastKnownGood is null)
        {
            return;
        }

        try
        {
            _lastKnownGood.Save(snapshot);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            EgressLog.LastKnownGoodFailed(_logger, "save", $"{ex.GetType().Name}: {ex.Message}");
        }
    }

    /// <summary>A source change: (re)start the debounce wait; the reload runs when it ends.</summary>
    private void ScheduleReload()
    {
        lock (_timerGate)
        {
            if (_disposed)
            {
                return;
            }

            if (_reloadDelay == TimeSpan.Zero)
            {
                ThreadPool.UnsafeQueueUserWorkItem(static monitor => monitor.ReloadFromTimer(), this, preferLocal: false);
                return;
            }

            if (_debounce is null)
            {
                _debounce = _timeProvider.CreateTimer(static state => ((EgressPolicyMonitor)state!).ReloadFromTimer(), this, _reloadDelay, Timeout.InfiniteTimeSpan);
            }
            else
            {
                _debounce.Change(_reloadDelay, Timeout.InfiniteTimeSpan);
            }
        }
    }

    private void ReloadFromTimer()
    {
        lock (_timerGate)
        {
            if (_disposed)
            {
                return;
            }
        }

        try
        {
            lock (_reloadGate)
            {
                ReloadCore();
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // ReloadCore already turns every source failure into state; this only guards the timer thread (an
            // exception escaping a timer callback would end the process) against a failing logger or listener.
        }
    }
}
