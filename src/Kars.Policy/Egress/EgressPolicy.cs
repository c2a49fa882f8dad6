using System.Buffers;
using System.IO.Abstractions;
using System.Runtime.CompilerServices;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Kars.Policy.Hosts;

namespace Kars.Policy.Egress;

/// <summary>
/// An egress policy loaded from a native JSON policy file, a kars <c>allowlist.json</c>, or a kars folder
/// (<c>allowlist.json</c> plus optional <c>approval-*.json</c>), and the evaluator that decides every destination
/// against it in the order of DESIGN §2.3.
/// </summary>
/// <remarks>
/// <para>Thread safety: every member is safe to call concurrently. Evaluation reads one immutable compiled snapshot;
/// <see cref="Reload"/> builds a new snapshot and swaps it in atomically. A failed reload keeps the last good snapshot
/// and marks the policy stale; with no good snapshot at all every decision is <see cref="EgressReason.NoPolicy"/>.</para>
/// <para>Evaluating a DNS-name target already in canonical form allocates nothing (Learn mode allocates only the first
/// time it records a new destination). Each thread keeps a small cache of its recent decisions that depend only on the
/// snapshot (never approvals, never Learned decisions); a reload invalidates it.</para>
/// </remarks>
public sealed class EgressPolicy
{
    private static readonly SearchValues<char> CanonicalNameChars = SearchValues.Create("abcdefghijklmnopqrstuvwxyz0123456789-_.");

    private readonly PolicyLoader _loader;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger _logger;
    private readonly IFileSystem _fileSystem;
    private readonly EgressMode? _modeOverride;
    private readonly LearnedHostStore _learned;
    private readonly Lock _reloadGate = new();
    private CompiledPolicy? _snapshot;
    private IReadOnlyList<EgressPolicyProblem> _lastProblems = [];
    private volatile bool _stale;

    /// <summary>Creates a policy and attempts the first load. A load failure does not throw: the policy then denies
    /// everything with <see cref="EgressReason.NoPolicy"/> and <see cref="LastLoadProblems"/> says why.</summary>
    /// <param name="policyPath">A native policy file, a kars <c>allowlist.json</c>, or a kars folder.</param>
    /// <param name="options">Options; <see langword="null"/> for the (fail-closed) defaults. Copied on creation.</param>
    /// <param name="fileSystem">The file system to read from; <see langword="null"/> for the real one.</param>
    /// <param name="timeProvider">The clock for approvals and learned hosts; <see langword="null"/> for <see cref="TimeProvider.System"/>.</param>
    /// <param name="logger">Where load results go; <see langword="null"/> for none. Target hosts are never logged.</param>
    /// <exception cref="ArgumentNullException"><paramref name="policyPath"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option is invalid (for example a malformed <see cref="KarsEgressOptions.PrivateAllow"/> prefix).</exception>
    public EgressPolicy(string policyPath, KarsEgressOptions? options = null, IFileSystem? fileSystem = null, TimeProvider? timeProvider = null, ILogger<EgressPolicy>? logger = null)
    {
        ArgumentNullException.ThrowIfNull(policyPath);
        options ??= new KarsEgressOptions();
        if (options.LearnedCapacity < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.LearnedCapacity, "KarsEgressOptions.LearnedCapacity must not be negative.");
        }

        if (options.MaxFeedEntries < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxFeedEntries, "KarsEgressOptions.MaxFeedEntries must be positive.");
        }

        PolicyPath = policyPath;
        _fileSystem = fileSystem ?? new FileSystem();
        _timeProvider = timeProvider ?? TimeProvider.System;
        _logger = (ILogger?)logger ?? NullLogger.Instance;
        _modeOverride = options.Mode;
        _learned = new LearnedHostStore(options.LearnedCapacity);
        _loader = new PolicyLoader(_fileSystem, options);
        Reload();
    }

    /// <summary>Creates a policy and loads it, throwing when the first load fails.</summary>
    /// <param name="policyPath">A native policy file, a kars <c>allowlist.json</c>, or a kars folder.</param>
    /// <param name="options">Options; <see langword="null"/> for the defaults.</param>
    /// <param name="fileSystem">The file system to read from; <see langword="null"/> for the real one.</param>
    /// <param name="timeProvider">The clock; <see langword="null"/> for <see cref="TimeProvider.System"/>.</param>
    /// <param name="logger">Where load results go; <see langword="null"/> for none.</param>
    /// <returns>The loaded policy.</returns>
    /// <exception cref="EgressPolicyLoadException">The policy could not be loaded; <see cref="EgressPolicyLoadException.Problems"/> lists every problem.</exception>
    /// <exception cref="ArgumentException">An option is invalid.</exception>
    public static EgressPolicy Load(string policyPath, KarsEgressOptions? options = null, IFileSystem? fileSystem = null, TimeProvider? timeProvider = null, ILogger<EgressPolicy>? logger = null)
    {
        var policy = new EgressPolicy(policyPath, options, fileSystem, timeProvider, logger);
        if (!policy.IsLoaded)
        {
            throw new EgressPolicyLoadException(policy.LastLoadProblems);
        }

        return policy;
    }

    /// <summary>Gets the path the policy is loaded from.</summary>
    public string PolicyPath { get; }

    /// <summary>Gets a value indicating whether a policy snapshot is in force (otherwise every decision is <see cref="EgressReason.NoPolicy"/>).</summary>
    public bool IsLoaded => Volatile.Read(ref _snapshot) is not null;

    /// <summary>Gets a value indicating whether the last reload failed and an older snapshot is still in force.</summary>
    public bool IsStale => _stale;

    /// <summary>Gets the digest of the snapshot in force (<c>sha256:…</c>), or <see langword="null"/>.</summary>
    public string? Digest => Volatile.Read(ref _snapshot)?.Digest;

    /// <summary>Gets the generation of the snapshot in force, or 0.</summary>
    public long Generation => Volatile.Read(ref _snapshot)?.Generation ?? 0;

    /// <summary>Gets the mode in force: the options' override, else the document's, else <see cref="EgressMode.Strict"/>.</summary>
    public EgressMode Mode => _modeOverride ?? Volatile.Read(ref _snapshot)?.Mode ?? EgressMode.Strict;

    /// <summary>Gets the problems of the last failed load, or an empty list when the last load succeeded.</summary>
    public IReadOnlyList<EgressPolicyProblem> LastLoadProblems => Volatile.Read(ref _lastProblems);

    /// <summary>Gets the non-fatal problems of the snapshot in force (a skipped approval file, a feed kept at its last good contents).</summary>
    public IReadOnlyList<EgressPolicyProblem> Warnings => Volatile.Read(ref _snapshot)?.Warnings ?? [];

    /// <summary>Gets how many new learned destinations were not recorded because the learned store was full.</summary>
    public long LearnedHostsDropped => _learned.Dropped;

    /// <summary>Reloads the policy from <see cref="PolicyPath"/> and swaps the new snapshot in atomically.
    /// On failure the previous snapshot stays in force and <see cref="IsStale"/> becomes <see langword="true"/>.</summary>
    /// <returns><see langword="true"/> when the new snapshot is in force.</returns>
    public bool Reload()
    {
        lock (_reloadGate)
        {
            try
            {
                var compiled = _loader.Load(PolicyPath);
                Volatile.Write(ref _snapshot, compiled);
                Volatile.Write(ref _lastProblems, Array.Empty<EgressPolicyProblem>());
                _stale = false;
                EgressLog.PolicyLoaded(_logger, PolicyPath, compiled.Digest, compiled.Generation, compiled.NameCount);
                foreach (var warning in compiled.Warnings)
                {
                    EgressLog.PolicyWarning(_logger, warning.ToString());
                }

                return true;
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // Fail closed and keep going: whatever went wrong (a typed load error, or anything unexpected from a
                // reader), the previous snapshot stays in force and the problem is reported, never thrown at the host.
                var problems = ex is EgressPolicyLoadException load
                    ? load.Problems
                    : [new EgressPolicyProblem(PolicyPath, "$", $"unexpected {ex.GetType().Name} while loading: {ex.Message}")];
                Volatile.Write(ref _lastProblems, problems);
                _stale = Volatile.Read(ref _snapshot) is not null;
                EgressLog.PolicyLoadFailed(
                    _logger,
                    PolicyPath,
                    problems.Count,
                    problems.Count > 0 ? problems[0].ToString() : ex.Message,
                    _stale ? "keeping the last good snapshot (stale)" : "no policy in force: every decision is NoPolicy");
                return false;
            }
        }
    }

    /// <summary>Decides a parsed target with no sandbox.</summary>
    /// <param name="target">The target; the default value is denied as <see cref="EgressReason.InvalidTarget"/>.</param>
    /// <returns>The decision.</returns>
    public EgressDecision Evaluate(in EgressTarget target) => Evaluate(target, null);

    /// <summary>Decides a parsed target.</summary>
    /// <param name="target">The target; the default value is denied as <see cref="EgressReason.InvalidTarget"/>.</param>
    /// <param name="sandbox">The sandbox making the request (used to record learned hosts), or <see langword="null"/>.</param>
    /// <returns>The decision.</returns>
    public EgressDecision Evaluate(in EgressTarget target, string? sandbox) =>
        target.IsValid ? EvaluateValid(target, sandbox) : Invalid(EgressTargetError.Empty);

    /// <summary>Decides a URL (<c>https://host/…</c>), a <c>host:port</c> authority, or a bare host (port 443).</summary>
    /// <param name="hostOrUrl">The destination text.</param>
    /// <returns>The decision; unparsable input is denied as <see cref="EgressReason.InvalidTarget"/>.</returns>
    public EgressDecision Evaluate(string hostOrUrl) =>
        EgressTargetParser.TryParse(hostOrUrl, out var target, out var error) ? EvaluateValid(target, null) : Invalid(error);

    /// <summary>Decides an absolute <c>http</c>/<c>https</c> URI.</summary>
    /// <param name="uri">The URI.</param>
    /// <returns>The decision; an unusable URI is denied as <see cref="EgressReason.InvalidTarget"/>.</returns>
    public EgressDecision Evaluate(Uri uri) =>
        EgressTargetParser.TryParseUri(uri, out var target, out var error) ? EvaluateValid(target, null) : Invalid(error);

    /// <summary>Decides a host and port (see <see cref="Evaluate(string, int, string?)"/>) with no sandbox.</summary>
    /// <param name="host">The host name or IP literal (IPv6 in brackets).</param>
    /// <param name="port">The port, 1–65535.</param>
    /// <returns>The decision.</returns>
    public EgressDecision Evaluate(string host, int port) => Evaluate(host, port, null);

    /// <summary>Decides a host and port. A host already in canonical form (lower-case ASCII DNS name) takes an
    /// allocation-free path; anything else (IP literals, upper case, IDN) is parsed fully first.</summary>
    /// <param name="host">The host name or IP literal (IPv6 in brackets).</param>
    /// <param name="port">The port, 1–65535.</param>
    /// <param name="sandbox">The sandbox making the request, or <see langword="null"/>.</param>
    /// <returns>The decision.</returns>
    public EgressDecision Evaluate(string host, int port, string? sandbox)
    {
        var snapshot = Volatile.Read(ref _snapshot);
        if (snapshot is not null && host is not null)
        {
            if (DecisionCache.TryGet(snapshot, host, port, out var cached))
            {
                return cached;
            }

            if (port is >= 1 and <= 65535 && IsCanonicalName(host))
            {
                return EvaluateCanonical(snapshot, EgressTargetParser.FromCanonicalDnsName(host, port), sandbox);
            }
        }

        return EgressTargetParser.TryParseHost(host, port, out var target, out var error) ? EvaluateValid(target, sandbox) : Invalid(error);
    }

    /// <summary>Returns a snapshot of the destinations Learn mode recorded, ordered by sandbox, host and port.</summary>
    /// <returns>The learned destinations.</returns>
    public IReadOnlyList<LearnedHost> GetLearnedHosts() => _learned.Snapshot();

    /// <summary>Writes the learned destinations to a JSON file (<c>{"schemaVersion":1,"learned":[…]}</c>), replacing it atomically.</summary>
    /// <param name="path">The file to write.</param>
    /// <exception cref="IOException">The file could not be written.</exception>
    public void SaveLearnedHosts(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        LearnedHostStore.Save(_fileSystem, path, _learned.Snapshot());
    }

    /// <summary>Returns a proposed native policy document (Strict mode, one exact rule per learned host with its ports)
    /// for an operator to review, sign and deploy.</summary>
    /// <returns>The JSON text of the proposed document.</returns>
    public string ExportLearnedPolicy() => LearnedHostStore.ExportPolicy(_learned.Snapshot(), Generation + 1);

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private EgressDecision EvaluateValid(in EgressTarget target, string? sandbox)
    {
        var snapshot = Volatile.Read(ref _snapshot);
        if (snapshot is null)
        {
            return new EgressDecision(EgressVerdict.Deny, EgressReason.NoPolicy, target, EgressTargetError.None, null, _modeOverride ?? EgressMode.Strict, null, 0, false);
        }

        if (target.Kind == EgressTargetKind.DnsName && DecisionCache.TryGet(snapshot, target.Host, target.Port, out var cached))
        {
            return cached;
        }

        return EvaluateCanonical(snapshot, target, sandbox);
    }

    private EgressDecision EvaluateCanonical(CompiledPolicy snapshot, in EgressTarget target, string? sandbox)
    {
        var decision = snapshot.Evaluate(target, _modeOverride ?? snapshot.Mode, _timeProvider, out bool learn, out bool cacheable);
        if (learn)
        {
            _learned.Record(sandbox, target.Host, target.Port, _timeProvider.GetUtcNow());
        }
        else if (cacheable)
        {
            DecisionCache.Set(snapshot, target.Host, target.Port, decision);
        }

        return decision;
    }

    private EgressDecision Invalid(EgressTargetError error)
    {
        var snapshot = Volatile.Read(ref _snapshot);
        return new EgressDecision(
            EgressVerdict.Deny,
            snapshot is null ? EgressReason.NoPolicy : EgressReason.InvalidTarget,
            default,
            error == EgressTargetError.None ? EgressTargetError.Malformed : error,
            null,
            _modeOverride ?? snapshot?.Mode ?? EgressMode.Strict,
            snapshot?.Digest,
            snapshot?.Generation ?? 0,
            false);
    }

    /// <summary>A canonical DNS name that cannot be read as an IP address: its last label does not start with a digit.
    /// Names with an <c>xn--</c> label take the full parser, which validates the punycode.
    /// Vectorised checks for the common case; names longer than 63 characters also get the full label-length check.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool IsCanonicalName(string host)
    {
        if (host.Length is 0 or > 253
            || host.AsSpan().IndexOfAnyExcept(CanonicalNameChars) >= 0
            || host[0] == '.'
            || host[^1] == '.'
            || host.Contains("..", StringComparison.Ordinal)
            || host.Contains("xn--", StringComparison.Ordinal)
            || (host.Length > 63 && !DnsNames.IsCanonical(host)))
        {
            return false;
        }

        int lastDot = host.LastIndexOf('.');
        return !char.IsAsciiDigit(host[lastDot + 1]);
    }
}
