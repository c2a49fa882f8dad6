using NodaTime;

namespace Kars.Policy.Egress;

/// <summary>
/// What an <see cref="EgressPolicyMonitor"/> holds at one moment: the snapshot in force (or none), whether it is stale,
/// the problems of the last failed load, and when the snapshot was loaded. The monitor replaces the whole record
/// with one atomic write, so a reader never sees a snapshot from one load with the problems of another.
/// </summary>
/// <remarks>Instances are immutable and safe to share between threads.</remarks>
public sealed class EgressPolicyState
{
    internal EgressPolicyState(EgressPolicySnapshot? snapshot, bool isStale, IReadOnlyList<EgressPolicyProblem> problems, Instant? loadedAt)
    {
        Snapshot = snapshot;
        IsStale = isStale;
        Problems = problems;
        LoadedAt = loadedAt;
    }

    /// <summary>Gets the snapshot in force, or <see langword="null"/> when no policy ever loaded (every decision is then
    /// <see cref="EgressReason.NoPolicy"/>).</summary>
    public EgressPolicySnapshot? Snapshot { get; }

    /// <summary>Gets a value indicating whether a snapshot is in force.</summary>
    public bool IsLoaded => Snapshot is not null;

    /// <summary>Gets a value indicating whether the last load failed (or was refused) and an older snapshot is still in force.</summary>
    public bool IsStale { get; }

    /// <summary>Gets the problems of the last load when it failed or was refused; empty when it succeeded.</summary>
    public IReadOnlyList<EgressPolicyProblem> Problems { get; }

    /// <summary>Gets the generation of the snapshot in force, or 0 when there is none.</summary>
    public long Generation => Snapshot?.Generation ?? 0;

    /// <summary>Gets the digest of the snapshot in force, or <see langword="null"/>.</summary>
    public string? Digest => Snapshot?.Digest;

    /// <summary>Gets when the snapshot in force was swapped in (by the monitor's clock), or <see langword="null"/> when there is none.</summary>
    public Instant? LoadedAt { get; }
}
