using System.Net;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Kars.Policy.Egress;

/// <summary>
/// One immutable compiled policy snapshot: the name index (allow rules, <c>blocklist.domains</c>, exceptions, approval
/// hosts; exactly verified), the blocklist feeds' fingerprint index (deny only), CIDR rules, approvals with their time
/// windows, digest and generation. Evaluation reads only this object and allocates nothing for a DNS-name target
/// (apart from the first use of a blocklist entry's rule text, which is then cached).
/// </summary>
internal sealed class CompiledPolicy
{
    /// <summary>The filter class of a name in the name index.</summary>
    internal const byte NameClass = 1;

    /// <summary>The filter class of a name in the blocklist index.</summary>
    internal const byte BlocklistClass = 2;

    private static long s_lastIdentity;

    private readonly NameIndex _index;
    private readonly BlocklistIndex _blocklist;
    private readonly BinaryFuseFilter _filter;
    private readonly RuleInfo[] _rules;
    private readonly CidrRule[] _cidrRules;
    private readonly ApprovalSlot[] _approvalHosts;
    private readonly long[] _approvalStart;
    private readonly long[] _approvalEnd;
    private readonly string[] _blockSources;
    private readonly string?[] _blockTexts;
    private readonly IPNetwork[] _privateAllow;

    /// <summary>Whether a name without a dot is listed anywhere (name index or feeds). Usually not (allow rules and feed
    /// entries have at least two labels), and then the suffix walk skips the last label of a longer name: one filter
    /// query fewer per decision.</summary>
    private readonly bool _singleLabelListed;

    private CompiledPolicy(
        PolicyModel model,
        NameIndex index,
        BlocklistIndex blocklist,
        BinaryFuseFilter filter,
        int nameCount,
        ApprovalSlot[] approvalHosts,
        string[] blockSources,
        IPNetwork[] privateAllow,
        bool singleLabelListed)
    {
        Digest = model.Digest;
        Generation = model.Generation;
        Mode = model.Mode;
        Warnings = [.. model.Warnings];
        _index = index;
        _blocklist = blocklist;
        _filter = filter;
        NameCount = nameCount;
        _rules = [.. model.NameRules.Select(r => new RuleInfo(r.Ports, r.Text))];
        _cidrRules = [.. model.CidrRules];
        _approvalStart = [.. model.Approvals.Select(a => a.EffectiveAt.UtcTicks)];
        _approvalEnd = [.. model.Approvals.Select(a => a.ExpiresAt.UtcTicks)];
        _approvalHosts = approvalHosts;
        _blockSources = blockSources;
        _blockTexts = new string?[index.HandleCapacity];
        _privateAllow = privateAllow;
        _singleLabelListed = singleLabelListed;
    }

    /// <summary>Gets a number that identifies this snapshot within the process (never reused, never 0), so per-thread
    /// caches can be tied to it without holding a reference that would keep it alive.</summary>
    public long Identity { get; } = Interlocked.Increment(ref s_lastIdentity);

    public string Digest { get; }

    public long Generation { get; }

    public EgressMode Mode { get; }

    public IReadOnlyList<EgressPolicyProblem> Warnings { get; }

    /// <summary>Gets the number of distinct names the policy lists (allow rules, blocklist, exceptions, approval hosts).</summary>
    public int NameCount { get; }

    /// <summary>The name index (for measurements that read the tables alone: the paired cold-lookup benchmark).</summary>
    internal NameIndex Index => _index;

    /// <summary>The feeds' fingerprint index (for measurements).</summary>
    internal BlocklistIndex Blocklist => _blocklist;

    /// <summary>The filter in front of both tables (for measurements).</summary>
    internal BinaryFuseFilter Filter => _filter;

    /// <summary>The CIDR allow rules, in document order (read by the resolved-address check).</summary>
    public ReadOnlySpan<CidrRule> CidrRules => _cidrRules;

    /// <summary>The non-public prefixes the host trusts (<see cref="KarsEgressOptions.PrivateAllow"/>).</summary>
    public ReadOnlySpan<IPNetwork> PrivateAllow => _privateAllow;

    public static CompiledPolicy Compile(PolicyModel model, IReadOnlyList<BlocklistFeed> feeds, IPNetwork[] privateAllow)
    {
        // Names that can allow, lift a deny or choose a rule go into the exactly verified name index; the feeds' names,
        // which can only deny, go into the fingerprint index (see BlocklistIndex).
        int expected = model.NameRules.Count + model.BlockDomains.Count + model.BlocklistExceptions.Count
            + model.Approvals.Sum(a => a.Hosts.Count);
        var builder = new NameIndex.Builder(expected);

        for (int r = 0; r < model.NameRules.Count; r++)
        {
            var rule = model.NameRules[r];
            ref var rules = ref builder.Rules(builder.GetOrAdd(rule.Name));
            switch (rule.Scope)
            {
                case NameScope.Exact: rules.AllowExact = r; break;
                case NameScope.Wildcard: rules.AllowWildcard = r; break;
                default: rules.AllowSubtree = r; break;
            }
        }

        foreach (string domain in model.BlockDomains)
        {
            builder.MarkBlocked(builder.GetOrAdd(domain), 0);
        }

        foreach (string exception in model.BlocklistExceptions)
        {
            builder.MarkException(builder.GetOrAdd(exception));
        }

        var approvalHosts = new List<ApprovalSlot>();
        for (int a = 0; a < model.Approvals.Count; a++)
        {
            var approval = model.Approvals[a];
            foreach (var host in approval.Hosts)
            {
                ref var rules = ref builder.Rules(builder.GetOrAdd(host.Name));
                string pattern = host.Scope == NameScope.Wildcard ? "*." + host.Name : host.Name;
                approvalHosts.Add(new ApprovalSlot(a, host.Port, host.Scope, rules.ApprovalHead, $"approval {approval.Name}: {pattern}:{host.Port}"));
                rules.ApprovalHead = approvalHosts.Count - 1;
            }
        }

        var index = builder.Build(out ulong[] nameFingerprints);
        var sources = new List<string> { "blocklist" };
        var blocklist = new BlocklistIndex.Builder(feeds.Sum(f => f.Count));
        int alsoInIndex = 0;
        bool singleLabelListed = index.HasSingleLabelName;
        Span<char> chars = stackalloc char[256];
        foreach (var feed in feeds)
        {
            int source = sources.Count;
            sources.Add($"blocklist {feed.Source}");
            foreach (var name in feed)
            {
                ReadOnlySpan<char> text = chars[..System.Text.Encoding.ASCII.GetChars(name, chars)];
                ulong fingerprint = NameIndex.FingerprintOf(text);
                singleLabelListed |= !text.Contains('.');
                if (blocklist.Add(fingerprint, source) && index.Probe(fingerprint, text) >= 0)
                {
                    alsoInIndex++;
                }
            }
        }

        var blocklistIndex = blocklist.Build();
        return new CompiledPolicy(model, index, blocklistIndex, BuildFilter(nameFingerprints, blocklistIndex), index.Count + blocklist.Count - alsoInIndex, [.. approvalHosts], [.. sources], privateAllow, singleLabelListed);
    }

    /// <summary>One filter in front of both tables, so a suffix costs one filter query: class bit 0 when the name index
    /// may hold it, bit 1 when the blocklist may. Keys are <see cref="BlocklistIndex.Key"/> of the fingerprint for both
    /// (a name in both tables, or two names whose fingerprints differ only in bit 0, get both bits; the tables decide).</summary>
    private static BinaryFuseFilter BuildFilter(ulong[] nameFingerprints, BlocklistIndex blocklist)
    {
        // Distinct keys, so the filter need not sort 340,000 of them: the blocklist's keys are distinct by construction;
        // a name key that is also a blocklist key marks that key with both classes instead of being listed again.
        var nameKeys = new HashSet<ulong>(nameFingerprints.Select(BlocklistIndex.Key));
        ulong[] keys = new ulong[blocklist.Count + nameKeys.Count];
        byte[] classes = new byte[keys.Length];
        int n = blocklist.CopyKeysTo(keys);
        for (int i = 0; i < n; i++)
        {
            classes[i] = nameKeys.Remove(keys[i]) ? (byte)(BlocklistClass | NameClass) : BlocklistClass;
        }

        foreach (ulong key in nameKeys)
        {
            keys[n] = key;
            classes[n++] = NameClass;
        }

        return BinaryFuseFilter.Build(keys, classes, n);
    }

    /// <summary>Evaluates a valid target (DESIGN §2.3 steps 3–7). <paramref name="now"/> is read only when an approval is a candidate.</summary>
    /// <param name="target">A valid target.</param>
    /// <param name="mode">The mode in force.</param>
    /// <param name="now">The clock for approvals.</param>
    /// <param name="learn">Set when the decision is <see cref="EgressReason.Learned"/> (the caller records it).</param>
    /// <param name="cacheable">Set when the decision depends only on this snapshot and the target: no approval was
    /// considered (approvals depend on the clock) and nothing must be recorded.</param>
    public EgressDecision Evaluate(in EgressTarget target, EgressMode mode, TimeProvider now, out bool learn, out bool cacheable)
    {
        learn = false;
        if (target.Kind == EgressTargetKind.IpAddress)
        {
            cacheable = false;
            return EvaluateAddress(target, mode);
        }

        return EvaluateName(target, mode, now, out learn, out cacheable);
    }

    /// <summary>For a name the target factory accepted (canonical shape, see <see cref="CanonicalDnsName"/>), with the
    /// labels the factory found: whether <see cref="DecideName"/> may decide it as it is, without the full parser, that is,
    /// it has no <c>xn--</c> label (only the parser validates punycode) and its last label does not start with a digit;
    /// and its dot mask (0 for a name over 64 characters, whose walk searches for its dots). A name of at most 64
    /// characters is not read again here, apart from the first character of its last label; a longer one is searched
    /// for its last dot.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static bool TakesFastPath(string host, DnsNameLabels labels, out ulong dots)
    {
        dots = labels.DotMask;
        if (labels.HasAceLabel)
        {
            return false;
        }

        int lastLabel = host.Length <= 64 ? CanonicalDnsName.LastLabelStart(dots) : host.LastIndexOf('.') + 1;
        return !char.IsAsciiDigit(host[lastLabel]);
    }

    /// <summary>A target the engine's parser produced (canonical): its dot mask comes from the shape check's own vector
    /// pass, which finds it as it checks the characters.</summary>
    private EgressDecision EvaluateName(in EgressTarget target, EgressMode mode, TimeProvider clock, out bool learn, out bool cacheable)
    {
        ulong dots = 0;
        if (target.Host.Length <= 64)
        {
            bool canonical = CanonicalDnsName.ScanShortName(target.Host, out dots, out _);
            System.Diagnostics.Debug.Assert(canonical, "a valid DNS-name target's host is canonical");
        }

        return EvaluateName(target, dots, mode, clock, out learn, out cacheable);
    }

    private EgressDecision EvaluateName(in EgressTarget target, ulong dots, EgressMode mode, TimeProvider clock, out bool learn, out bool cacheable)
    {
        // The decision value is built here, once; the snapshot's host-and-port path builds it itself from the same parts
        // (a Learned decision is the one that would deny in Strict mode).
        string? rule = DecideName(target.Host, target.Port, dots, mode, clock, out NameOutcome outcome);
        learn = outcome.Learn;
        cacheable = outcome.Cacheable;
        return Decide(target, outcome.Verdict, outcome.Reason, rule, mode, wouldDeny: outcome.Learn);
    }

    /// <summary>Decides a canonical DNS name (a valid target's host) and returns the rule that decided it, or null; the
    /// verdict, reason and what the caller must do next come back in <paramref name="outcome"/>, one word. No decision
    /// value is built here: the caller builds it once, in the place it returns it from, instead of a stack temporary here
    /// that is then copied out (docs/benchmarks.md, 2026-12-01 05:35).</summary>
    /// <param name="host">The host of a valid DNS-name target.</param>
    /// <param name="port">The port.</param>
    /// <param name="dots">The dot mask of the name (<see cref="DnsNameLabels.DotMask"/>) when it has at most 64 characters.</param>
    /// <param name="mode">The mode in force.</param>
    /// <param name="clock">The clock for approvals.</param>
    /// <param name="outcome">The verdict, reason and flags.</param>
    /// <remarks>Not inlined into its callers: as an inlinee it used up the caller's inlining budget, and the filter
    /// checks and probes it must inline became calls.</remarks>
    [MethodImpl(MethodImplOptions.NoInlining)]
    internal string? DecideName(string host, int port, ulong dots, EgressMode mode, TimeProvider clock, out NameOutcome outcome)
    {
        if (IsLoopbackName(host))
        {
            // RFC 6761: localhost and every name below it resolve to loopback, so they are non-public in every mode
            // (without this, Learn mode would allow them).
            outcome = new NameOutcome(EgressVerdict.Deny, EgressReason.NonPublicAddress, learn: false, cacheable: true);
            return null;
        }

        var match = new Match(port);
        Walk(host, dots, clock, ref match);
        bool cacheable = match.Now == long.MinValue && !match.ConsiderApprovals;
        if ((match.BlockEntry >= 0 || match.FeedEntry >= 0) && !match.Excepted)
        {
            outcome = new NameOutcome(EgressVerdict.Deny, EgressReason.Blocklisted, false, cacheable);
            return match.BlockEntry >= 0 ? BlockText(match.BlockEntry) : _blocklist.Text(match.FeedEntry, host.AsSpan(match.FeedStart), _blockSources);
        }

        if (match.AllowRule >= 0)
        {
            outcome = new NameOutcome(EgressVerdict.Allow, EgressReason.Allowlisted, false, cacheable);
            return _rules[match.AllowRule].Text;
        }

        if (match.ApprovalSlot >= 0)
        {
            outcome = new NameOutcome(EgressVerdict.Allow, EgressReason.Approved, false, cacheable);
            return _approvalHosts[match.ApprovalSlot].Text;
        }

        if (mode == EgressMode.Learn)
        {
            outcome = new NameOutcome(EgressVerdict.Allow, EgressReason.Learned, learn: true, cacheable: false);
            return null;
        }

        if (match.OtherPortRule >= 0)
        {
            outcome = new NameOutcome(EgressVerdict.Deny, EgressReason.PortNotAllowed, false, cacheable);
            return _rules[match.OtherPortRule].Text;
        }

        if (match.OtherPortApproval >= 0)
        {
            outcome = new NameOutcome(EgressVerdict.Deny, EgressReason.PortNotAllowed, false, cacheable);
            return _approvalHosts[match.OtherPortApproval].Text;
        }

        outcome = new NameOutcome(EgressVerdict.Deny, EgressReason.NotAllowlisted, false, cacheable);
        return null;
    }

    /// <summary>
    /// One walk over the suffixes of a name, right to left: "com", "example.com", "www.example.com". Label starts come
    /// from a dot bit mask (names up to 64 characters) or a backward search (longer names). Each suffix's fingerprint is
    /// checked against the filter as soon as it is known; only a suffix that may be present is probed in the tables.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Walk(string host, ulong dots, TimeProvider clock, ref Match match)
    {
        ReadOnlySpan<char> name = host;
        ref char first = ref MemoryMarshal.GetReference(name);
        int length = name.Length;
        bool shortName = length <= 64;
        int pos = length;
        int searchEnd = length;
        ulong hash = NameIndex.StartHash;
        BinaryFuseFilter filter = _filter;

        // The last label of a longer name is a suffix of its own ("com"): checked only when a single-label name is listed.
        bool skipLastLabel = !_singleLabelListed;
        while (true)
        {
            int start;
            if (shortName)
            {
                start = NameIndex.NextLabelStart(ref dots);
            }
            else
            {
                start = name[..searchEnd].LastIndexOf('.') + 1;
                searchEnd = Math.Max(0, start - 1);
            }

            hash = NameIndex.ConsumeWords(hash, ref first, ref pos, start);
            if (skipLastLabel)
            {
                skipLastLabel = false;
                if (start != 0)
                {
                    // Its characters stay in the running hash (the words consumed above, the rest with the next label).
                    continue;
                }
            }

            ulong fingerprint = NameIndex.SuffixFingerprint(hash, ref first, pos, start, length - start);
            uint classes = filter.Classes(BlocklistIndex.Key(fingerprint));
            if (classes != 0)
            {
                ProbeSuffix(classes, fingerprint, start, name, clock, ref match);
            }

            if (start == 0)
            {
                return;
            }
        }
    }

    /// <summary>Probes the name index and the blocklist for a suffix the filter may hold (its classes say which). The name
    /// index comes first, so a name in <c>blocklist.domains</c> and in a feed shows <c>blocklist: …</c> as before; the
    /// shortest blocklisted suffix gives the rule text, and once one is found the blocklist is not probed again.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void ProbeSuffix(uint classes, ulong fingerprint, int start, ReadOnlySpan<char> name, TimeProvider clock, ref Match match)
    {
        if ((classes & NameClass) != 0)
        {
            int record = _index.Probe(fingerprint, name[start..]);
            if (record >= 0)
            {
                Visit(record, start == 0, clock, ref match);
            }
        }

        if ((classes & BlocklistClass) != 0 && match.BlockEntry < 0 && match.FeedEntry < 0)
        {
            int entry = _blocklist.Probe(fingerprint);
            if (entry >= 0)
            {
                match.FeedEntry = entry;
                match.FeedStart = start;
            }
        }
    }

    /// <summary>Applies one matching name (a suffix of the target, or the target itself when <paramref name="exact"/>).
    /// Called right to left, so a later (longer, more specific) match replaces an earlier one.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Visit(int record, bool exact, TimeProvider clock, ref Match match)
    {
        if (match.BlockEntry < 0 && match.FeedEntry < 0 && _index.IsBlocked(record))
        {
            match.BlockEntry = record;
        }

        if (exact && _index.IsException(record))
        {
            match.Excepted = true;
        }

        var rules = _index.Rules(record);
        Consider(rules.AllowSubtree, match.Port, ref match.AllowRule, ref match.OtherPortRule);
        Consider(exact ? rules.AllowExact : rules.AllowWildcard, match.Port, ref match.AllowRule, ref match.OtherPortRule);
        if (rules.ApprovalHead >= 0)
        {
            match.ConsiderApprovals = true;
            ConsiderApprovals(rules.ApprovalHead, exact, match.Port, clock, ref match.Now, ref match.Excepted, ref match.ApprovalSlot, ref match.OtherPortApproval);
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private void ConsiderApprovals(int head, bool exact, int port, TimeProvider clock, ref long now, ref bool excepted, ref int approvalSlot, ref int otherPortApproval)
    {
        for (int s = head; s >= 0; s = _approvalHosts[s].Next)
        {
            ref readonly ApprovalSlot slot = ref _approvalHosts[s];
            bool scopeMatches = slot.Scope switch
            {
                NameScope.Exact => exact,
                NameScope.Wildcard => !exact,
                _ => true,
            };
            if (!scopeMatches)
            {
                continue;
            }

            if (now == long.MinValue)
            {
                now = clock.GetUtcNow().UtcTicks;
            }

            if (now < _approvalStart[slot.Approval] || now >= _approvalEnd[slot.Approval])
            {
                continue;
            }

            if (slot.Port == port)
            {
                // An approval is a (host, port) grant: it lifts a blocklist entry for the exact name on that port only.
                excepted |= exact;
                approvalSlot = s;
            }
            else
            {
                otherPortApproval = s;
            }
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private void Consider(int rule, int port, ref int allowRule, ref int otherPortRule)
    {
        if (rule < 0)
        {
            return;
        }

        if (_rules[rule].Ports.Contains(port))
        {
            allowRule = rule;
        }
        else
        {
            otherPortRule = rule;
        }
    }

    private EgressDecision EvaluateAddress(in EgressTarget target, EgressMode mode)
    {
        IPAddress address = target.Address!;
        if (Hosts.NonPublicAddresses.Contains(address) && !InPrivateAllow(address))
        {
            return Decide(target, EgressVerdict.Deny, EgressReason.NonPublicAddress, null, mode, false);
        }

        int otherPort = -1;
        for (int i = 0; i < _cidrRules.Length; i++)
        {
            if (!_cidrRules[i].Network.Contains(address))
            {
                continue;
            }

            if (_cidrRules[i].Ports.Contains(target.Port))
            {
                return Decide(target, EgressVerdict.Allow, EgressReason.Allowlisted, _cidrRules[i].Text, mode, false);
            }

            otherPort = i;
        }

        // IP targets are never learned: an address no CIDR covers is denied in every mode.
        return otherPort >= 0
            ? Decide(target, EgressVerdict.Deny, EgressReason.PortNotAllowed, _cidrRules[otherPort].Text, mode, false)
            : Decide(target, EgressVerdict.Deny, EgressReason.NotAllowlisted, null, mode, false);
    }

    private bool InPrivateAllow(IPAddress address)
    {
        foreach (var network in _privateAllow)
        {
            if (network.Contains(address))
            {
                return true;
            }
        }

        return false;
    }

    private string BlockText(int record)
    {
        string? text = Volatile.Read(ref _blockTexts[record]);
        if (text is null)
        {
            text = BuildBlockText(record);
            Volatile.Write(ref _blockTexts[record], text);
        }

        return text;
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private string BuildBlockText(int record) => $"{_blockSources[_index.BlockSource(record)]}: {_index.NameOf(record)}";

    /// <summary><c>localhost</c> or a name ending in <c>.localhost</c> (canonical, lower case).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static bool IsLoopbackName(string host) =>
        host.Length >= 9 && host.EndsWith("localhost", StringComparison.Ordinal) && (host.Length == 9 || host[^10] == '.');

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private EgressDecision Decide(in EgressTarget target, EgressVerdict verdict, EgressReason reason, string? rule, EgressMode mode, bool wouldDeny) =>
        new(verdict, reason, target, EgressTargetError.None, rule, mode, Digest, Generation, wouldDeny);

    /// <summary>A name's verdict and reason, and whether the decision must be recorded (Learned) or may be cached, in one
    /// word.</summary>
    internal readonly struct NameOutcome
    {
        private const int LearnBit = 1 << 16;
        private const int CacheableBit = 1 << 17;
        private readonly int _bits;

        public NameOutcome(EgressVerdict verdict, EgressReason reason, bool learn, bool cacheable)
        {
            System.Diagnostics.Debug.Assert((uint)verdict <= 0xFF && (uint)reason <= 0xFF, "verdict and reason fit their bytes");
            _bits = (int)verdict | ((int)reason << 8) | (learn ? LearnBit : 0) | (cacheable ? CacheableBit : 0);
        }

        public EgressVerdict Verdict => (EgressVerdict)(_bits & 0xFF);

        public EgressReason Reason => (EgressReason)((_bits >> 8) & 0xFF);

        public bool Learn => (_bits & LearnBit) != 0;

        public bool Cacheable => (_bits & CacheableBit) != 0;
    }

    /// <summary>What the suffixes of one target matched so far.</summary>
    private struct Match(int port)
    {
        public readonly int Port = port;
        public int BlockEntry = -1;
        public int FeedEntry = -1;
        public int FeedStart;
        public bool Excepted;
        public int AllowRule = -1;
        public int OtherPortRule = -1;
        public bool ConsiderApprovals;
        public long Now = long.MinValue;
        public int ApprovalSlot = -1;
        public int OtherPortApproval = -1;
    }

    /// <summary>A name rule's ports and text side by side, so deciding on a rule and naming it read one cache line.</summary>
    private readonly record struct RuleInfo(PortSet Ports, string Text);

    /// <summary>One (approval, host, port) in the per-name linked list.</summary>
    private readonly record struct ApprovalSlot(int Approval, int Port, NameScope Scope, int Next, string Text);
}
