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
            ref Entry entry = ref cache.Entries[Locate(host, port, out uint check)];
            if (entry.Target.Port == port && entry.Check == check && entry.Mode == mode && (ReferenceEquals(entry.Target.Host, host) || string.Equals(entry.Target.Host, host, StringComparison.Ordinal)))
            {
                decision = new(entry.Verdict, entry.Reason, entry.Target, EgressTargetError.None, entry.Rule, entry.Mode, owner.Digest, owner.Generation, wouldDeny: false);
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
    /// <param name="owner">The compiled policy that decided.</param>
    /// <param name="decision">A cacheable decision of <paramref name="owner"/> for a valid DNS-name target (never a
    /// Learned one, so <see cref="EgressDecision.WouldDeny"/> is false).</param>
    public static void Offer(CompiledPolicy owner, in EgressDecision decision)
    {
        System.Diagnostics.Debug.Assert(!decision.WouldDeny, "only Learned decisions would deny, and they are never cached");
        Offer(owner, decision.Mode, decision.Target, decision.Verdict, decision.Reason, decision.Rule);
    }

    /// <summary>As <see cref="Offer(CompiledPolicy, in EgressDecision)"/>, from the parts of a decision (the snapshot's
    /// host-and-port path builds the decision value only to return it).</summary>
    /// <param name="owner">The compiled policy that decided.</param>
    /// <param name="mode">The mode of the decision.</param>
    /// <param name="target">The valid DNS-name target.</param>
    /// <param name="verdict">The verdict.</param>
    /// <param name="reason">The reason (never <see cref="EgressReason.Learned"/>).</param>
    /// <param name="rule">The rule text, or null.</param>
    public static void Offer(CompiledPolicy owner, EgressMode mode, in EgressTarget target, EgressVerdict verdict, EgressReason reason, string? rule)
    {
        Cache? cache = t_cache;
        if (cache is null || cache.Owner != owner.Identity)
        {
            SetFirst(owner, mode, target, verdict, reason, rule);
            return;
        }

        string host = target.Host;
        int index = Locate(host, target.Port, out uint check);
        uint key = check ^ ((uint)target.Port * 0x9E3779B1U);
        if (cache.Seen[index] != key)
        {
            cache.Seen[index] = key;
            return;
        }

        Store(ref cache.Entries[index], check, mode, target, verdict, reason, rule);
    }

    /// <summary>The first decision of this thread or of another owner: kept out of <see cref="Offer(CompiledPolicy, EgressMode, in EgressTarget, EgressVerdict, EgressReason, string?)"/>,
    /// whose frame would otherwise hold (and clear on every call) a decision value.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void SetFirst(CompiledPolicy owner, EgressMode mode, in EgressTarget target, EgressVerdict verdict, EgressReason reason, string? rule) =>
        Set(owner, new EgressDecision(verdict, reason, target, EgressTargetError.None, rule, mode, owner.Digest, owner.Generation, false));

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

        System.Diagnostics.Debug.Assert(decision.Target.Kind == EgressTargetKind.DnsName && ReferenceEquals(decision.PolicyDigest, owner.Digest) && decision.PolicyGeneration == owner.Generation, "a DNS-name decision of the owner");
        int index = Locate(decision.Target.Host, decision.Target.Port, out uint check);
        Store(ref cache.Entries[index], check, decision.Mode, decision.Target, decision.Verdict, decision.Reason, decision.Rule);
    }

    /// <summary>Writes one entry: what a decision holds beyond its owner's digest and generation. Never a Learned decision
    /// (it must be recorded every time), so no entry would deny and none keeps that flag.</summary>
    private static void Store(ref Entry entry, uint check, EgressMode mode, in EgressTarget target, EgressVerdict verdict, EgressReason reason, string? rule)
    {
        System.Diagnostics.Debug.Assert(target.Kind == EgressTargetKind.DnsName && reason != EgressReason.Learned, "a cacheable DNS-name decision");
        entry.Target = target;
        entry.Rule = rule;
        entry.Check = check;
        entry.Verdict = verdict;
        entry.Reason = reason;
        entry.Mode = mode;
    }

    /// <summary>The entry of a host and port, and the check word kept in it: the length and three characters of the host
    /// (the last, the middle and the one at a quarter), so a different name almost always differs there and a miss is
    /// decided without reading the cached host string (on a cold decision that string is one more memory round trip).
    /// Only a pre-check: a hit still compares the whole host. The three characters are read once for both.</summary>
    /// <param name="host">A host of at least one character.</param>
    /// <param name="port">The port.</param>
    /// <param name="check">The check word.</param>
    /// <returns>The entry index.</returns>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static int Locate(string host, int port, out uint check)
    {
        int length = host.Length;
        uint last = host[length - 1];
        uint middle = host[length >> 1];
        uint quarter = host[length >> 2];
        check = (byte)length | ((uint)(byte)last << 8) | ((uint)(byte)middle << 16) | ((uint)(byte)quarter << 24);
        return (int)(((uint)length * 7 + (last * 31) + (middle * 131) + (quarter * 17) + (uint)port) & (Size - 1));
    }

    private sealed class Cache
    {
        public readonly Entry[] Entries = new Entry[Size];

        /// <summary>Per entry, a word of the host and port last offered there and not stored (see <see cref="Offer(CompiledPolicy, EgressMode, in EgressTarget, EgressVerdict, EgressReason, string?)"/>).</summary>
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
    }
}
