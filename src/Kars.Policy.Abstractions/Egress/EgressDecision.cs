namespace Kars.Policy.Egress;

/// <summary>
/// The result of evaluating one destination against an egress policy.
/// </summary>
/// <remarks>
/// A decision is a small immutable value; producing one allocates nothing. It names the normalised
/// target, the rule that decided (when one did), the mode, and the digest and generation of the policy
/// snapshot that was used, so a host can log or audit it as is.
/// </remarks>
public readonly struct EgressDecision
{
    /// <summary>Initializes a new decision. Engines create decisions; hosts normally only read them.</summary>
    /// <param name="verdict">Allow or deny.</param>
    /// <param name="reason">Why.</param>
    /// <param name="target">The normalised target (the default value when the input did not parse).</param>
    /// <param name="targetError">Why the input did not parse, or <see cref="EgressTargetError.None"/>.</param>
    /// <param name="rule">The text of the deciding rule, feed entry or approval, if any.</param>
    /// <param name="mode">The mode in force.</param>
    /// <param name="policyDigest">The digest of the policy snapshot used, if any.</param>
    /// <param name="policyGeneration">The generation of the policy snapshot used (0 when none).</param>
    /// <param name="wouldDeny"><see langword="true"/> when Learn mode allowed what Strict mode would deny.</param>
    public EgressDecision(
        EgressVerdict verdict,
        EgressReason reason,
        EgressTarget target,
        EgressTargetError targetError,
        string? rule,
        EgressMode mode,
        string? policyDigest,
        long policyGeneration,
        bool wouldDeny)
    {
        Verdict = verdict;
        Reason = reason;
        Target = target;
        TargetError = targetError;
        Rule = rule;
        Mode = mode;
        PolicyDigest = policyDigest;
        PolicyGeneration = policyGeneration;
        WouldDeny = wouldDeny;
    }

    /// <summary>Gets the verdict. The default value of the struct denies.</summary>
    public EgressVerdict Verdict { get; }

    /// <summary>Gets the reason for the verdict.</summary>
    public EgressReason Reason { get; }

    /// <summary>Gets the normalised target; not valid when <see cref="Reason"/> is <see cref="EgressReason.InvalidTarget"/>.</summary>
    public EgressTarget Target { get; }

    /// <summary>Gets why the input did not parse, or <see cref="EgressTargetError.None"/>.</summary>
    public EgressTargetError TargetError { get; }

    /// <summary>Gets the text of the rule, blocklist entry or approval that decided, or <see langword="null"/>.</summary>
    public string? Rule { get; }

    /// <summary>Gets the mode in force when the decision was made.</summary>
    public EgressMode Mode { get; }

    /// <summary>Gets the digest of the policy snapshot used (<c>sha256:…</c>), or <see langword="null"/> when none was loaded.</summary>
    public string? PolicyDigest { get; }

    /// <summary>Gets the generation of the policy snapshot used, or 0 when none was loaded.</summary>
    public long PolicyGeneration { get; }

    /// <summary>Gets a value indicating whether Strict mode would have denied this allowed destination.</summary>
    public bool WouldDeny { get; }

    /// <summary>Gets a value indicating whether the verdict is <see cref="EgressVerdict.Allow"/>.</summary>
    public bool IsAllowed => Verdict == EgressVerdict.Allow;

    /// <inheritdoc />
    public override string ToString() =>
        $"{Verdict} {Reason} {(Target.IsValid ? Target.ToString() : TargetError.ToString())}";
}
