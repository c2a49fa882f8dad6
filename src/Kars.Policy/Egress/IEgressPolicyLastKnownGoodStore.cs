using System.Diagnostics.CodeAnalysis;

namespace Kars.Policy.Egress;

/// <summary>
/// Keeps the last-known-good policy across restarts (DESIGN §3), so that a restart with a missing or unverifiable
/// policy neither fails open nor denies everything, and so that a rollback below the last-known-good generation is
/// refused even after a restart. An <see cref="EgressPolicyMonitor"/> calls it; the engine ships
/// <see cref="Bundles.FileEgressPolicyLastKnownGoodStore"/>, which persists the verified bundle a
/// <see cref="Bundles.OciBundleEgressPolicySource"/> loaded and verifies it again on load.
/// </summary>
/// <remarks>Implementations must be safe for concurrent use. An exception from either member is logged by the
/// monitor and otherwise ignored: it never changes the policy in force.</remarks>
public interface IEgressPolicyLastKnownGoodStore
{
    /// <summary>Returns the persisted last-known-good snapshot, or <see langword="null"/> when there is none. The monitor
    /// calls this once, on its first load: the snapshot is the fallback when the source fails, and its generation is
    /// the floor below which the source's policy is refused.</summary>
    /// <returns>The last-known-good snapshot, or <see langword="null"/>.</returns>
    EgressPolicySnapshot? Load();

    /// <summary>Persists the snapshot the monitor just swapped in (an implementation stores what it needs to rebuild it,
    /// for example the verified bundle whose digest the snapshot carries).</summary>
    /// <param name="snapshot">The snapshot now in force.</param>
    void Save(EgressPolicySnapshot snapshot);

    /// <summary>
    /// Reads the generation and digest of the last saved policy from the store's own record, without rebuilding the
    /// snapshot. The monitor calls this at start-up only when <see cref="Load"/> returned nothing or failed (a copy that
    /// no longer verifies after a key rotation, a corrupt blob, an I/O error), so that the rollback floor survives a
    /// copy it cannot use: a lower generation, or a different bundle of the same generation, is still refused.
    /// </summary>
    /// <param name="generation">The recorded generation.</param>
    /// <param name="digest">The recorded policy digest.</param>
    /// <returns><see langword="true"/> when a record was read; the default implementation records nothing.</returns>
    bool TryGetRecordedGeneration(out long generation, [NotNullWhen(true)] out string? digest)
    {
        generation = 0;
        digest = null;
        return false;
    }
}
