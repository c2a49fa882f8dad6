using System.IO.Abstractions;

namespace Kars.Policy.Egress;

/// <summary>
/// Records the destinations Learn mode allowed although no rule covered them (DESIGN §2.5): (sandbox, host, port)
/// with first and last seen instants and a count, deduplicated and bounded. The evaluator reports every
/// <see cref="EgressReason.Learned"/> decision here; hosts read, save or export what was learned.
/// </summary>
/// <remarks>
/// <para>Thread safety: every member is safe to call concurrently. Recording an already-seen destination allocates
/// nothing. Once <see cref="KarsEgressOptions.LearnedCapacity"/> distinct entries are held, new destinations are not
/// recorded and <see cref="Dropped"/> counts them (the oldest record of what an agent needed is kept, not churned).</para>
/// <para>One recorder outlives policy reloads: an <see cref="EgressPolicyMonitor"/> keeps the same recorder for every
/// snapshot it swaps in.</para>
/// </remarks>
public sealed class LearnedHostRecorder
{
    private readonly LearnedHostStore _store;
    private readonly IFileSystem _fileSystem;
    private readonly TimeProvider _timeProvider;

    /// <summary>Initializes a new, empty recorder.</summary>
    /// <param name="options">Options (<see cref="KarsEgressOptions.LearnedCapacity"/> is read); <see langword="null"/> for the defaults. Copied.</param>
    /// <param name="fileSystem">The file system <see cref="Save"/> writes to; <see langword="null"/> for the real one.</param>
    /// <param name="timeProvider">The clock that stamps first and last seen; <see langword="null"/> for <see cref="TimeProvider.System"/>.</param>
    /// <exception cref="ArgumentOutOfRangeException"><see cref="KarsEgressOptions.LearnedCapacity"/> is negative.</exception>
    public LearnedHostRecorder(KarsEgressOptions? options = null, IFileSystem? fileSystem = null, TimeProvider? timeProvider = null)
    {
        int capacity = options?.LearnedCapacity ?? new KarsEgressOptions().LearnedCapacity;
        if (capacity < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(options), capacity, "KarsEgressOptions.LearnedCapacity must not be negative.");
        }

        _store = new LearnedHostStore(capacity);
        _fileSystem = fileSystem ?? new FileSystem();
        _timeProvider = timeProvider ?? TimeProvider.System;
    }

    /// <summary>Gets how many distinct destinations are recorded.</summary>
    public int Count => _store.Count;

    /// <summary>Gets how many new destinations were not recorded because the recorder was full.</summary>
    public long Dropped => _store.Dropped;

    /// <summary>Records one decision for a DNS-name target. IP targets and invalid targets are ignored: an address is
    /// never learned.</summary>
    /// <param name="target">The target Learn mode allowed.</param>
    /// <param name="sandbox">The sandbox that made the request; <see langword="null"/> or empty is stored as <c>unknown</c>.</param>
    public void Record(in EgressTarget target, string? sandbox)
    {
        if (target.Kind == EgressTargetKind.DnsName && target.IsValid)
        {
            _store.Record(sandbox, target.Host, target.Port, _timeProvider.GetUtcNow());
        }
    }

    /// <summary>Returns a copy of the recorded destinations, ordered by sandbox, host and port.</summary>
    /// <returns>The learned destinations.</returns>
    public IReadOnlyList<LearnedHost> GetLearnedHosts() => _store.Snapshot();

    /// <summary>Writes the learned destinations to a JSON file (<c>{"schemaVersion":1,"learned":[…]}</c>), replacing it
    /// atomically (temporary file, then move).</summary>
    /// <param name="path">The file to write.</param>
    /// <exception cref="ArgumentNullException"><paramref name="path"/> is <see langword="null"/>.</exception>
    /// <exception cref="IOException">The file could not be written.</exception>
    public void Save(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        LearnedHostStore.Save(_fileSystem, path, _store.Snapshot());
    }

    /// <summary>Returns a proposed native policy document (Strict mode, one exact rule per learned host with the ports
    /// seen) for an operator to review, sign and deploy.</summary>
    /// <param name="generation">The generation the proposed document carries (normally the one in force plus one).</param>
    /// <returns>The JSON text of the proposed document.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="generation"/> is less than 1.</exception>
    public string ExportPolicy(long generation)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(generation, 1);
        return LearnedHostStore.ExportPolicy(_store.Snapshot(), generation);
    }
}
