using System.Runtime.CompilerServices;

namespace Kars.Policy.Egress;

/// <summary>
/// A small per-thread, direct-mapped cache of recent decisions for canonical DNS names, so an agent that talks to a
/// few dozen hosts pays a string comparison instead of a full evaluation. Per thread, so there is no sharing and no
/// torn read; tied to one compiled snapshot by its <see cref="CompiledPolicy.Identity"/>, so a reload invalidates it, and
/// keyed by the mode as well (two snapshots over one compiled policy may run in different modes).
/// Only decisions that depend on nothing but the snapshot and the (host, port) are stored: never a decision that
/// considered an approval (time-dependent), never a Learned decision (it must be recorded every time), never an IP
/// target.
/// </summary>
/// <remarks>The cache holds the snapshot's identity number, never a reference to the snapshot: a thread that evaluated
/// once and then went idle must not keep a replaced snapshot (tens of megabytes with a large feed) alive. The decisions
/// it holds reference only small strings (host, rule text).</remarks>
internal static class DecisionCache
{
    private const int Size = 64;

    /// <summary>This thread's cache: one thread-static read per call (a thread-static access can cost a call into the
    /// runtime; the entries and their owner used to be two).</summary>
    [ThreadStatic]
    private static Cache? t_cache;

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static bool TryGet(CompiledPolicy owner, EgressMode mode, string host, int port, out EgressDecision decision)
    {
        Cache? cache = t_cache;
        if (cache is not null && cache.Owner == owner.Identity && host.Length > 0)
        {
            ref Entry entry = ref cache.Entries[Index(host, port)];
            if (entry.Target.Port == port && entry.Check == Check(host) && entry.Mode == mode && (ReferenceEquals(entry.Target.Host, host) || string.Equals(entry.Target.Host, host, StringComparison.Ordinal)))
            {
                decision = new(entry.Verdict, entry.Reason, entry.Target, EgressTargetError.None, entry.Rule, entry.Mode, owner.Digest, owner.Generation, entry.WouldDeny);
                return true;
            }
        }

        decision = default;
        return false;
    }

    /// <summary>Stores a decision on the second miss of its host and port in a row at its entry: the first miss only
    /// notes a word of them beside the entry (no reference written). A host seen once among thousands (the cold case)
    /// then costs no entry write; a host an agent keeps using is stored on its second decision and answered from then
    /// on.</summary>
    public static void Offer(CompiledPolicy owner, in EgressDecision decision)
    {
        Cache? cache = t_cache;
        if (cache is null || cache.Owner != owner.Identity)
        {
            Set(owner, decision);
            return;
        }

        string host = decision.Target.Host;
        int index = Index(host, decision.Target.Port);
        uint key = Check(host) ^ ((uint)decision.Target.Port * 0x9E3779B1U);
        if (cache.Seen[index] != key)
        {
            cache.Seen[index] = key;
            return;
        }

        Store(owner, ref cache.Entries[index], decision);
    }

    /// <summary>Stores a decision the owner made for a valid DNS-name target (its digest and generation are the owner's,
    /// so they are not stored: fewer references written per entry).</summary>
    public static void Set(CompiledPolicy owner, in EgressDecision decision)
    {
        Cache? cache = t_cache;
        if (cache is null)
        {
            cache = new Cache { Owner = owner.Identity };
            t_cache = cache;
        }
        else if (cache.Owner != owner.Identity)
        {
            Array.Clear(cache.Entries);
            Array.Clear(cache.Seen);
            cache.Owner = owner.Identity;
        }

        Store(owner, ref cache.Entries[Index(decision.Target.Host, decision.Target.Port)], decision);
    }

    private static void Store(CompiledPolicy owner, ref Entry entry, in EgressDecision decision)
    {
        System.Diagnostics.Debug.Assert(decision.Target.Kind == EgressTargetKind.DnsName && ReferenceEquals(decision.PolicyDigest, owner.Digest) && decision.PolicyGeneration == owner.Generation, "a DNS-name decision of the owner");
        entry.Target = decision.Target;
        entry.Rule = decision.Rule;
        entry.Check = Check(decision.Target.Host);
        entry.Verdict = decision.Verdict;
        entry.Reason = decision.Reason;
        entry.Mode = decision.Mode;
        entry.WouldDeny = decision.WouldDeny;
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Index(string host, int port) =>
        ((host.Length * 7) + (host[^1] * 31) + (host[host.Length >> 1] * 131) + (host[host.Length >> 2] * 17) + port) & (Size - 1);

    /// <summary>The length and three characters of the host in one word, kept in the entry beside the port: a different
    /// name almost always differs here, so a miss is decided without reading the cached host string (on a cold decision
    /// that string is one more memory round trip). Only a pre-check: a hit still compares the whole host.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static uint Check(string host) =>
        (byte)host.Length | ((uint)(byte)host[^1] << 8) | ((uint)(byte)host[host.Length >> 1] << 16) | ((uint)(byte)host[host.Length >> 2] << 24);

    private sealed class Cache
    {
        public readonly Entry[] Entries = new Entry[Size];

        /// <summary>Per entry, a word of the host and port last offered there and not stored (see <see cref="Offer"/>).</summary>
        public readonly uint[] Seen = new uint[Size];
        public long Owner;
    }

    /// <summary>One cached decision: what a decision holds beyond the owner's digest and generation. Three references
    /// (the target's host and address, the latter always null here, and the rule text), written once per miss.</summary>
    private struct Entry
    {
        public EgressTarget Target;
        public string? Rule;
        public uint Check;
        public EgressVerdict Verdict;
        public EgressReason Reason;
        public EgressMode Mode;
        public bool WouldDeny;
    }
}
