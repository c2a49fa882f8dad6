using System.Diagnostics.Metrics;
using System.IO.Abstractions;
using System.Net;
using Microsoft.Extensions.Logging;

namespace Kars.Policy.Egress;

/// <summary>
/// The convenience entry point: an egress policy loaded from one path (a native JSON policy file, a kars
/// <c>allowlist.json</c>, or a kars folder) and evaluated in the order of DESIGN §2.3. It is a thin facade over an
/// <see cref="EgressPolicyMonitor"/> and a <see cref="FileEgressPolicySource"/>; hosts that reload on change, push
/// documents, or plug in adapters use those (or <see cref="IEgressPolicy"/>) directly.
/// </summary>
/// <remarks>
/// <para>Thread safety: every member is safe to call concurrently. Evaluation reads one immutable snapshot;
/// <see cref="Reload"/> builds a new one and swaps it in atomically. A failed reload keeps the last good snapshot and
/// marks the policy stale; with no good snapshot at all every decision is <see cref="EgressReason.NoPolicy"/>.</para>
/// <para>Unlike the monitor, this facade loads in its constructor (that is its purpose).</para>
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001:Types that own disposable fields should be disposable", Justification = "Its file source never signals a change, so the monitor never starts a debounce timer; IDisposable would be a public API change for nothing to release.")]
public sealed class EgressPolicy : IEgressPolicy
{
    private readonly EgressPolicyMonitor _monitor;
    private readonly EgressMode _modeWithoutPolicy;

    /// <summary>Creates a policy and attempts the first load. A load failure does not throw: the policy then denies
    /// everything with <see cref="EgressReason.NoPolicy"/> and <see cref="LastLoadProblems"/> says why.</summary>
    /// <param name="policyPath">A native policy file, a kars <c>allowlist.json</c>, or a kars folder.</param>
    /// <param name="options">Options; <see langword="null"/> for the (fail-closed) defaults. Copied on creation.</param>
    /// <param name="fileSystem">The file system to read from (and to save learned hosts to); <see langword="null"/> for the real one.</param>
    /// <param name="timeProvider">The clock for approvals and learned hosts; <see langword="null"/> for <see cref="TimeProvider.System"/>.</param>
    /// <param name="loggerFactory">Where load results go; <see langword="null"/> for none. Target hosts are never logged.</param>
    /// <param name="meterFactory">Creates the <c>Kars.Policy</c> meter decisions are counted on (docs/telemetry.md); <see langword="null"/> for a process-wide one.</param>
    /// <exception cref="ArgumentNullException"><paramref name="policyPath"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException">An option is invalid (for example a malformed <see cref="KarsEgressOptions.PrivateAllow"/> prefix).</exception>
    public EgressPolicy(string policyPath, KarsEgressOptions? options = null, IFileSystem? fileSystem = null, TimeProvider? timeProvider = null, ILoggerFactory? loggerFactory = null, IMeterFactory? meterFactory = null)
    {
        ArgumentNullException.ThrowIfNull(policyPath);
        PolicyPath = policyPath;
        _modeWithoutPolicy = options?.Mode ?? EgressMode.Strict;
        var source = new FileEgressPolicySource(policyPath, options, fileSystem);
        var recorder = new LearnedHostRecorder(options, fileSystem, timeProvider);
        _monitor = new EgressPolicyMonitor(source, options, timeProvider, loggerFactory, recorder, lastKnownGood: null, meterFactory);
        _monitor.Reload();
    }

    /// <summary>Creates a policy and loads it, throwing when the first load fails.</summary>
    /// <param name="policyPath">A native policy file, a kars <c>allowlist.json</c>, or a kars folder.</param>
    /// <param name="options">Options; <see langword="null"/> for the defaults.</param>
    /// <param name="fileSystem">The file system to read from; <see langword="null"/> for the real one.</param>
    /// <param name="timeProvider">The clock; <see langword="null"/> for <see cref="TimeProvider.System"/>.</param>
    /// <param name="loggerFactory">Where load results go; <see langword="null"/> for none.</param>
    /// <param name="meterFactory">Creates the <c>Kars.Policy</c> meter; <see langword="null"/> for a process-wide one.</param>
    /// <returns>The loaded policy.</returns>
    /// <exception cref="EgressPolicyLoadException">The policy could not be loaded; <see cref="EgressPolicyLoadException.Problems"/> lists every problem.</exception>
    /// <exception cref="ArgumentException">An option is invalid.</exception>
    public static EgressPolicy Load(string policyPath, KarsEgressOptions? options = null, IFileSystem? fileSystem = null, TimeProvider? timeProvider = null, ILoggerFactory? loggerFactory = null, IMeterFactory? meterFactory = null)
    {
        var policy = new EgressPolicy(policyPath, options, fileSystem, timeProvider, loggerFactory, meterFactory);
        if (!policy.IsLoaded)
        {
            throw new EgressPolicyLoadException(policy.LastLoadProblems);
        }

        return policy;
    }

    /// <summary>Gets the path the policy is loaded from.</summary>
    public string PolicyPath { get; }

    /// <summary>Gets the current state: snapshot, stale flag, last problems and load time, read together.</summary>
    public EgressPolicyState State => _monitor.State;

    /// <summary>Gets a value indicating whether a policy snapshot is in force (otherwise every decision is <see cref="EgressReason.NoPolicy"/>).</summary>
    public bool IsLoaded => _monitor.State.IsLoaded;

    /// <summary>Gets a value indicating whether the last reload failed and an older snapshot is still in force.</summary>
    public bool IsStale => _monitor.State.IsStale;

    /// <summary>Gets the digest of the snapshot in force (<c>sha256:…</c>), or <see langword="null"/>.</summary>
    public string? Digest => _monitor.State.Digest;

    /// <summary>Gets the generation of the snapshot in force, or 0.</summary>
    public long Generation => _monitor.State.Generation;

    /// <summary>Gets the mode in force: the options' override, else the document's, else <see cref="EgressMode.Strict"/>.</summary>
    public EgressMode Mode => _monitor.State.Snapshot?.Mode ?? _modeWithoutPolicy;

    /// <summary>Gets the problems of the last failed load, or an empty list when the last load succeeded.</summary>
    public IReadOnlyList<EgressPolicyProblem> LastLoadProblems => _monitor.State.Problems;

    /// <summary>Gets the non-fatal problems of the snapshot in force (a skipped approval file, a feed kept at its last good contents).</summary>
    public IReadOnlyList<EgressPolicyProblem> Warnings => _monitor.State.Snapshot?.Warnings ?? [];

    /// <summary>Gets the recorder Learn-mode decisions are reported to (read, save or export what was learned).</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1721:Property names should not match get methods", Justification = "Both are shipped API: GetLearnedHosts() is the snapshot export, LearnedHosts the recorder; renaming would break callers.")]
    public LearnedHostRecorder LearnedHosts => _monitor.LearnedHosts;

    /// <summary>Gets how many new learned destinations were not recorded because the recorder was full.</summary>
    public long LearnedHostsDropped => _monitor.LearnedHosts.Dropped;

    /// <summary>Reloads the policy from <see cref="PolicyPath"/> and swaps the new snapshot in atomically.
    /// On failure the previous snapshot stays in force and <see cref="IsStale"/> becomes <see langword="true"/>.</summary>
    /// <returns><see langword="true"/> when the new snapshot is in force.</returns>
    public bool Reload() => _monitor.Reload();

    /// <summary>Decides a parsed target with no sandbox.</summary>
    /// <param name="target">The target; the default value is denied as <see cref="EgressReason.InvalidTarget"/>.</param>
    /// <returns>The decision.</returns>
    public EgressDecision Evaluate(in EgressTarget target) => _monitor.Evaluate(target, null);

    /// <inheritdoc cref="EgressPolicySnapshot.Evaluate(in EgressTarget, string?)"/>
    public EgressDecision Evaluate(in EgressTarget target, string? sandbox) => _monitor.Evaluate(target, sandbox);

    /// <summary>Decides a URL (<c>https://host/…</c>), a <c>host:port</c> authority, or a bare host (port 443), with no sandbox.</summary>
    /// <param name="hostOrUrl">The destination text.</param>
    /// <returns>The decision; unparsable input is denied as <see cref="EgressReason.InvalidTarget"/>.</returns>
    public EgressDecision Evaluate(string hostOrUrl) => _monitor.Evaluate(hostOrUrl, null);

    /// <inheritdoc cref="EgressPolicySnapshot.Evaluate(string, string?)"/>
    public EgressDecision Evaluate(string hostOrUrl, string? sandbox) => _monitor.Evaluate(hostOrUrl, sandbox);

    /// <summary>Decides an absolute <c>http</c>/<c>https</c> URI with no sandbox.</summary>
    /// <param name="uri">The URI.</param>
    /// <returns>The decision; an unusable URI is denied as <see cref="EgressReason.InvalidTarget"/>.</returns>
    public EgressDecision Evaluate(Uri uri) => _monitor.Evaluate(uri, null);

    /// <inheritdoc cref="EgressPolicySnapshot.Evaluate(Uri, string?)"/>
    public EgressDecision Evaluate(Uri uri, string? sandbox) => _monitor.Evaluate(uri, sandbox);

    /// <summary>Decides a host and port with no sandbox.</summary>
    /// <param name="host">The host name or IP literal (IPv6 in brackets).</param>
    /// <param name="port">The port, 1–65535.</param>
    /// <returns>The decision.</returns>
    public EgressDecision Evaluate(string host, int port) => _monitor.Evaluate(host, port, null);

    /// <inheritdoc cref="EgressPolicySnapshot.Evaluate(string, int, string?)"/>
    public EgressDecision Evaluate(string host, int port, string? sandbox) => _monitor.Evaluate(host, port, sandbox);

    /// <inheritdoc cref="EgressPolicySnapshot.EvaluateResolvedAddress(IPAddress, int, string?)"/>
    public EgressDecision EvaluateResolvedAddress(IPAddress address, int port, string? sandbox) => _monitor.EvaluateResolvedAddress(address, port, sandbox);

    /// <summary>Returns a copy of the destinations Learn mode recorded, ordered by sandbox, host and port.</summary>
    /// <returns>The learned destinations.</returns>
    public IReadOnlyList<LearnedHost> GetLearnedHosts() => _monitor.LearnedHosts.GetLearnedHosts();

    /// <summary>Writes the learned destinations to a JSON file (<c>{"schemaVersion":1,"learned":[…]}</c>), replacing it atomically.</summary>
    /// <param name="path">The file to write.</param>
    /// <exception cref="ArgumentNullException"><paramref name="path"/> is <see langword="null"/>.</exception>
    /// <exception cref="IOException">The file could not be written.</exception>
    public void SaveLearnedHosts(string path) => _monitor.LearnedHosts.Save(path);

    /// <summary>Returns a proposed native policy document (Strict mode, one exact rule per learned host with its ports,
    /// generation = the one in force + 1) for an operator to review, sign and deploy.</summary>
    /// <returns>The JSON text of the proposed document.</returns>
    public string ExportLearnedPolicy() => _monitor.LearnedHosts.ExportPolicy(Generation + 1);
}
