using System.Net;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Kars.Policy.Hosts;

namespace Kars.Policy.Egress;

/// <summary>
/// One immutable, compiled egress policy (DESIGN §2.7): rules, blocklist and feeds, approvals, mode, digest,
/// generation and warnings, and the evaluator that decides every destination against it in the order of DESIGN §2.3.
/// </summary>
/// <remarks>
/// <para>A snapshot is built from bytes the caller hands it (<see cref="Create"/>, <see cref="Load"/>) or by an
/// <see cref="IEgressPolicySource"/>; it never reads a file itself. It does not change after it is built, so a
/// decision names exactly one snapshot: its <see cref="EgressDecision.PolicyDigest"/> and
/// <see cref="EgressDecision.PolicyGeneration"/> are this snapshot's.</para>
/// <para>Thread safety: immutable; every member is safe to call concurrently. Evaluating a DNS-name target already in
/// canonical form, and <see cref="EvaluateResolvedAddress"/>, allocate nothing. In Learn mode, a
/// <see cref="EgressReason.Learned"/> decision is reported to the snapshot's <see cref="LearnedHostRecorder"/>, if it has one.</para>
/// <para>Each thread keeps a small cache of its recent decisions that depend only on the snapshot (never approvals,
/// never Learned decisions); a decision from another snapshot is never served from it.</para>
/// </remarks>
public sealed class EgressPolicySnapshot : IEgressPolicy
{
    /// <summary>The largest document <see cref="Load"/> reads from a stream (16 MiB, the same cap as a policy file).</summary>
    private const int MaxStreamBytes = 16 * 1024 * 1024;

    private readonly CompiledPolicy _policy;
    private readonly ResolvedAddressRules _addressRules;
    private readonly TimeProvider _clock;
    private readonly LearnedHostRecorder? _recorder;

    private EgressPolicySnapshot(CompiledPolicy policy, ResolvedAddressRules addressRules, EgressMode mode, TimeProvider clock, LearnedHostRecorder? recorder)
    {
        _policy = policy;
        _addressRules = addressRules;
        Mode = mode;
        _clock = clock;
        _recorder = recorder;
    }

    /// <summary>Gets the policy digest (<c>sha256:</c> + hex): of the document bytes for a native document, the kars
    /// digest for kars files. It covers the document, not the blocklist feed contents.</summary>
    public string Digest => _policy.Digest;

    /// <summary>Gets the document's generation (0 when it has none, as kars files do).</summary>
    public long Generation => _policy.Generation;

    /// <summary>Gets the mode in force: <see cref="KarsEgressOptions.Mode"/> when it was set, else the document's.</summary>
    public EgressMode Mode { get; }

    /// <summary>Gets the non-fatal problems found while building the snapshot (a skipped approval file, a feed kept at its last good contents).</summary>
    public IReadOnlyList<EgressPolicyProblem> Warnings => _policy.Warnings;

    /// <summary>Gets the recorder that <see cref="EgressReason.Learned"/> decisions are reported to, or <see langword="null"/>.</summary>
    public LearnedHostRecorder? LearnedHosts => _recorder;

    /// <summary>The compiled policy (shared by every binding of this snapshot).</summary>
    internal CompiledPolicy Compiled => _policy;

    /// <summary>The number of distinct names in the index (logs).</summary>
    internal int NameCount => _policy.NameCount;

    /// <summary>Builds a snapshot from a policy document held in memory: a native policy document, or a kars
    /// <c>allowlist.json</c>. No file is read.</summary>
    /// <param name="document">The document's bytes (UTF-8 JSON).</param>
    /// <param name="feeds">The contents of the blocklist feed files the document names in <c>blocklist.files</c>,
    /// keyed by the text the document uses for each; <see langword="null"/> when it names none.</param>
    /// <param name="options">Options (mode override, trusted private prefixes, feed limit); <see langword="null"/> for the defaults. Copied.</param>
    /// <param name="timeProvider">The clock approvals are checked against; <see langword="null"/> for <see cref="TimeProvider.System"/>.</param>
    /// <param name="learnedHosts">Where Learn mode reports what it allowed; <see langword="null"/> to record nothing.</param>
    /// <returns>The snapshot.</returns>
    /// <exception cref="EgressPolicyLoadException">The document or a feed is invalid, or a named feed was not supplied;
    /// <see cref="EgressPolicyLoadException.Problems"/> lists every problem.</exception>
    /// <exception cref="ArgumentException">An option is invalid.</exception>
    public static EgressPolicySnapshot Create(
        ReadOnlyMemory<byte> document,
        IReadOnlyDictionary<string, ReadOnlyMemory<byte>>? feeds = null,
        KarsEgressOptions? options = null,
        TimeProvider? timeProvider = null,
        LearnedHostRecorder? learnedHosts = null)
    {
        var settings = EgressCompileSettings.From(options);
        return Compile(document, feeds, "document", settings).Bind(timeProvider ?? TimeProvider.System, learnedHosts);
    }

    /// <summary>Builds a snapshot from a policy document read from a stream (see <see cref="Create"/>). The stream is
    /// read to its end; it is not closed.</summary>
    /// <param name="document">The stream holding the document.</param>
    /// <param name="feeds">The contents of the blocklist feed files the document names, keyed by the text the document uses.</param>
    /// <param name="options">Options; <see langword="null"/> for the defaults. Copied.</param>
    /// <param name="timeProvider">The clock approvals are checked against; <see langword="null"/> for <see cref="TimeProvider.System"/>.</param>
    /// <param name="learnedHosts">Where Learn mode reports what it allowed; <see langword="null"/> to record nothing.</param>
    /// <returns>The snapshot.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="document"/> is <see langword="null"/>.</exception>
    /// <exception cref="EgressPolicyLoadException">The document or a feed is invalid; every problem is listed.</exception>
    /// <exception cref="IOException">The stream could not be read.</exception>
    /// <remarks>A stream longer than 16 MiB is refused with an <see cref="EgressPolicyLoadException"/> before it is read to its end.</remarks>
    public static EgressPolicySnapshot Load(
        Stream document,
        IReadOnlyDictionary<string, ReadOnlyMemory<byte>>? feeds = null,
        KarsEgressOptions? options = null,
        TimeProvider? timeProvider = null,
        LearnedHostRecorder? learnedHosts = null)
    {
        ArgumentNullException.ThrowIfNull(document);
        var settings = EgressCompileSettings.From(options);
        using var buffer = new MemoryStream();
        byte[] chunk = new byte[81_920];
        int read;
        while ((read = document.Read(chunk, 0, chunk.Length)) > 0)
        {
            if (buffer.Length + read > MaxStreamBytes)
            {
                // Fail closed before an endless or hostile stream exhausts memory.
                throw new EgressPolicyLoadException([new EgressPolicyProblem("document", "$", $"the document is larger than {MaxStreamBytes} bytes", "a policy document is at most 16 MiB; move large lists into feeds")]);
            }

            buffer.Write(chunk, 0, read);
        }

        return Compile(buffer.ToArray(), feeds, "document", settings).Bind(timeProvider ?? TimeProvider.System, learnedHosts);
    }

    /// <summary>Parses and compiles a document held in memory (the in-memory path of every source).</summary>
    /// <exception cref="EgressPolicyLoadException">Every problem found.</exception>
    internal static EgressPolicySnapshot Compile(ReadOnlyMemory<byte> document, IReadOnlyDictionary<string, ReadOnlyMemory<byte>>? feeds, string name, EgressCompileSettings settings)
    {
        byte[] bytes = MemoryMarshal.TryGetArray(document, out ArraySegment<byte> segment) && segment.Offset == 0 && segment.Count == segment.Array!.Length
            ? segment.Array
            : document.ToArray();
        var problems = new List<EgressPolicyProblem>();

        // Overbroad rules load with a warning (into the model), or are errors when the options say so.
        List<EgressPolicyProblem>? overbroad = settings.OverbroadIsError ? [] : null;
        PolicyModel? model = KarsPolicyReader.LooksLikeKarsAllowlist(bytes)
            ? KarsPolicyReader.ReadAllowlist(bytes, name, problems, overbroad)
            : NativePolicyReader.Read(bytes, name, static text => new FeedPath(text, null), problems, overbroad);
        if (overbroad is not null)
        {
            problems.AddRange(overbroad);
        }

        if (model is null || problems.Count > 0)
        {
            throw new EgressPolicyLoadException(problems.Count > 0 ? problems : [new EgressPolicyProblem(name, "$", "the policy could not be read")]);
        }

        var compiledFeeds = new List<BlocklistFeed>();
        foreach (var (key, text) in model.FeedFiles)
        {
            if (feeds is null || !feeds.TryGetValue(key, out ReadOnlyMemory<byte> content))
            {
                problems.Add(new EgressPolicyProblem(text, "$", "the document names this feed but its contents were not supplied", "pass the feed's contents keyed by the text the document uses"));
                continue;
            }

            try
            {
                compiledFeeds.Add(BlocklistFeed.Parse(text, content.Span, settings.MaxFeedEntries));
            }
            catch (InvalidDataException ex)
            {
                problems.Add(new EgressPolicyProblem(text, "$", $"the feed failed to load: {ex.Message}"));
            }
        }

        if (problems.Count > 0)
        {
            throw new EgressPolicyLoadException(problems);
        }

        return FromCompiled(CompiledPolicy.Compile(model, compiledFeeds, settings.PrivateAllow), settings);
    }

    /// <summary>Wraps a compiled policy (from the file loader) with the mode override of the settings.</summary>
    internal static EgressPolicySnapshot FromCompiled(CompiledPolicy policy, EgressCompileSettings settings) =>
        new(policy, ResolvedAddressRules.From(policy), settings.Mode ?? policy.Mode, TimeProvider.System, null);

    /// <summary>The same compiled policy and mode with another clock and recorder (a monitor binds every snapshot it
    /// holds to its own). The decision cache stays valid: cached decisions depend on neither.</summary>
    internal EgressPolicySnapshot Bind(TimeProvider clock, LearnedHostRecorder? recorder) =>
        ReferenceEquals(clock, _clock) && ReferenceEquals(recorder, _recorder) ? this : new(_policy, _addressRules, Mode, clock, recorder);

    /// <summary>Decides a parsed target.</summary>
    /// <param name="target">The target; the default value is denied as <see cref="EgressReason.InvalidTarget"/>.</param>
    /// <param name="sandbox">The sandbox making the request (recorded with learned hosts), or <see langword="null"/>.</param>
    /// <returns>The decision.</returns>
    /// <remarks>The target is treated as input, not trusted as canonical: it is decided exactly as its
    /// <see cref="EgressTarget.Host"/> and <see cref="EgressTarget.Port"/> would be by
    /// <see cref="Evaluate(string, int, string?)"/> (a name whose <c>xn--</c> label is not valid punycode is
    /// <see cref="EgressReason.InvalidTarget"/>). A target already decided on this thread is answered from the decision
    /// cache without allocating.</remarks>
    public EgressDecision Evaluate(in EgressTarget target, string? sandbox)
    {
        if (target.Kind == EgressTargetKind.DnsName && target.IsValid && DecisionCache.TryGet(_policy, Mode, target.Host, target.Port, out var cached))
        {
            return cached;
        }

        return UntrustedTargets.TryCanonicalize(target, out var canonical, out var error) ? EvaluateParsed(canonical, sandbox) : Invalid(error);
    }

    /// <summary>Decides a target this engine's parser produced (canonical by construction).</summary>
    private EgressDecision EvaluateParsed(in EgressTarget target, string? sandbox)
    {
        if (!target.IsValid)
        {
            return Invalid(EgressTargetError.Empty);
        }

        if (target.Kind == EgressTargetKind.DnsName && DecisionCache.TryGet(_policy, Mode, target.Host, target.Port, out var cached))
        {
            return cached;
        }

        return EvaluateCanonical(target, sandbox);
    }

    /// <summary>Decides an absolute <c>http</c>/<c>https</c> URI (its host and effective port).</summary>
    /// <param name="uri">The URI.</param>
    /// <param name="sandbox">The sandbox making the request, or <see langword="null"/>.</param>
    /// <returns>The decision; an unusable URI (or <see langword="null"/>) is denied as <see cref="EgressReason.InvalidTarget"/>.</returns>
    public EgressDecision Evaluate(Uri uri, string? sandbox) =>
        EgressTargetParser.TryParseUri(uri, out var target, out var error) ? EvaluateParsed(target, sandbox) : Invalid(error);

    /// <summary>Decides a URL (<c>https://host/…</c>), a <c>host:port</c> authority, or a bare host (port 443).</summary>
    /// <param name="hostOrUrl">The destination text.</param>
    /// <param name="sandbox">The sandbox making the request, or <see langword="null"/>.</param>
    /// <returns>The decision; unparsable input is denied as <see cref="EgressReason.InvalidTarget"/>.</returns>
    public EgressDecision Evaluate(string hostOrUrl, string? sandbox) =>
        EgressTargetParser.TryParse(hostOrUrl, out var target, out var error) ? EvaluateParsed(target, sandbox) : Invalid(error);

    /// <summary>Decides a host and port. A host already in canonical form (lower-case ASCII DNS name) takes an
    /// allocation-free path; anything else (IP literals, upper case, IDN) is parsed fully first.</summary>
    /// <param name="host">The host name or IP literal (IPv6 in brackets).</param>
    /// <param name="port">The port, 1–65535.</param>
    /// <param name="sandbox">The sandbox making the request, or <see langword="null"/>.</param>
    /// <returns>The decision.</returns>
    public EgressDecision Evaluate(string host, int port, string? sandbox)
    {
        if (host is not null)
        {
            if (DecisionCache.TryGet(_policy, Mode, host, port, out var cached))
            {
                return cached;
            }

            if (port is >= 1 and <= 65535)
            {
                return EvaluateUncached(host, port, sandbox);
            }
        }

        return EgressTargetParser.TryParseHost(host, port, out var target, out var error) ? EvaluateParsed(target, sandbox) : Invalid(error);
    }

    /// <summary>
    /// Decides an address a DNS name resolved to, at connect time, the way the policy decides an IP literal: a
    /// non-public address is <see cref="EgressReason.NonPublicAddress"/> unless it is inside
    /// <see cref="KarsEgressOptions.PrivateAllow"/>; then a <c>cidr</c> rule on the port allows it
    /// (<see cref="EgressReason.Allowlisted"/>), a rule on another port gives <see cref="EgressReason.PortNotAllowed"/>,
    /// and anything else is <see cref="EgressReason.NotAllowlisted"/> in every mode (addresses are never learned).
    /// The blocklist does not apply: it names domains. Allocates nothing.
    /// </summary>
    /// <remarks>An IPv4-mapped IPv6 address (<c>::ffff:a.b.c.d</c>) decides exactly as its IPv4 address, for the
    /// non-public ranges and for <c>cidr</c> rules of either family. The decision's target is the address as given;
    /// its <see cref="EgressTarget.Host"/> text is produced only when read.</remarks>
    /// <param name="address">The resolved address; <see langword="null"/> is denied as <see cref="EgressReason.InvalidTarget"/>.</param>
    /// <param name="port">The port about to be connected to, 1–65535; another value is denied as <see cref="EgressReason.InvalidTarget"/>.</param>
    /// <param name="sandbox">The sandbox making the connection, or <see langword="null"/> (addresses are never recorded).</param>
    /// <returns>The decision.</returns>
    public EgressDecision EvaluateResolvedAddress(IPAddress address, int port, string? sandbox)
    {
        if (address is null)
        {
            return Invalid(EgressTargetError.Empty);
        }

        if (port is < 1 or > 65535)
        {
            return Invalid(EgressTargetError.InvalidPort);
        }

        var target = EgressTarget.FromAddress(address, port);
        if (!ResolvedAddressRules.TryRead(address, out UInt128 value))
        {
            return Invalid(EgressTargetError.Malformed);
        }

        if (ResolvedAddressRules.IsNonPublic(address) && !_addressRules.InPrivateAllow(value))
        {
            return Decide(target, EgressVerdict.Deny, EgressReason.NonPublicAddress, null);
        }

        int rule = _addressRules.Match(value, port, _policy, out bool portMatches);
        if (rule < 0)
        {
            return Decide(target, EgressVerdict.Deny, EgressReason.NotAllowlisted, null);
        }

        string text = _policy.CidrRules[rule].Text;
        return portMatches
            ? Decide(target, EgressVerdict.Allow, EgressReason.Allowlisted, text)
            : Decide(target, EgressVerdict.Deny, EgressReason.PortNotAllowed, text);
    }

    /// <summary>The decision when no snapshot is in force (DESIGN §2.3 step 1), in every mode.</summary>
    internal static EgressDecision NoPolicy(in EgressTarget target, EgressTargetError error, EgressMode mode) =>
        new(EgressVerdict.Deny, EgressReason.NoPolicy, target, error, null, mode, null, 0, false);

    /// <summary>A host and valid port the decision cache did not answer. Kept out of <see cref="Evaluate(string, int, string?)"/>
    /// so a cache hit does not pay for this path's locals.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private EgressDecision EvaluateUncached(string host, int port, string? sandbox)
    {
        // A canonical name is decided without the parser, with the label boundaries the target factory found while it
        // checked the name (for a name of up to 64 characters without two hyphens in a row, the check is one pass and
        // the engine does not scan the name again); anything else, and an xn-- name (only the parser validates
        // punycode), is parsed fully.
        if (EgressTarget.TryCreateDnsName(host, port, out var target, out var labels) && CompiledPolicy.TakesFastPath(host, labels, out ulong dots))
        {
            string? rule = _policy.DecideName(host, port, dots, Mode, _clock, out var outcome);
            if (outcome.Learn)
            {
                _recorder?.Record(target, sandbox);
            }
            else if (outcome.Cacheable)
            {
                DecisionCache.Offer(_policy, Mode, target, outcome.Verdict, outcome.Reason, rule);
            }

            // Built here, not through CompiledPolicy.Decide: written from an inlined helper, the JIT stores the value's
            // four references through checked write barriers; written here, straight into the return buffer. The two
            // must stay alike (Evaluate_LearnModeThroughEveryOverload_SameLearnedDecisionEachRecorded compares them).
            return new EgressDecision(outcome.Verdict, outcome.Reason, target, EgressTargetError.None, rule, Mode, Digest, Generation, wouldDeny: outcome.Learn);
        }

        return ParseAndEvaluate(host, port, sandbox);
    }

    /// <summary>A host that is not a canonical name (or needs the full parser): parsed, then decided. Kept out of
    /// <see cref="EvaluateUncached"/> so its locals do not widen that method's frame.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private EgressDecision ParseAndEvaluate(string host, int port, string? sandbox) =>
        EgressTargetParser.TryParseHost(host, port, out var target, out var error) ? EvaluateParsed(target, sandbox) : Invalid(error);

    private EgressDecision EvaluateCanonical(in EgressTarget target, string? sandbox)
    {
        if (!target.IsValid)
        {
            return Invalid(EgressTargetError.Malformed);
        }

        var decision = _policy.Evaluate(target, Mode, _clock, out bool learn, out bool cacheable);
        return Finish(decision, learn, cacheable, sandbox);
    }

    /// <summary>Reports a Learned decision to the recorder, or caches a decision that depends only on the snapshot.</summary>
    private EgressDecision Finish(in EgressDecision decision, bool learn, bool cacheable, string? sandbox)
    {
        if (learn)
        {
            _recorder?.Record(decision.Target, sandbox);
        }
        else if (cacheable)
        {
            DecisionCache.Offer(_policy, decision);
        }

        return decision;
    }

    private EgressDecision Decide(in EgressTarget target, EgressVerdict verdict, EgressReason reason, string? rule) =>
        new(verdict, reason, target, EgressTargetError.None, rule, Mode, Digest, Generation, false);

    private EgressDecision Invalid(EgressTargetError error) =>
        new(
            EgressVerdict.Deny,
            EgressReason.InvalidTarget,
            default,
            error == EgressTargetError.None ? EgressTargetError.Malformed : error,
            null,
            Mode,
            Digest,
            Generation,
            false);
}
