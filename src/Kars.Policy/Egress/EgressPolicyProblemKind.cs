namespace Kars.Policy.Egress;

/// <summary>What kind of problem an <see cref="EgressPolicyProblem"/> is.</summary>
public enum EgressPolicyProblemKind
{
    /// <summary>The document, a feed or a file is missing, unreadable or invalid (every problem the readers report).</summary>
    Invalid = 0,

    /// <summary>The source offered a policy whose generation is lower than the one in force; it was refused and the
    /// policy in force stays (DESIGN §3, <c>RollbackRejected</c>).</summary>
    RollbackRejected = 1,

    /// <summary>The source failed in an unexpected way (an exception other than <see cref="EgressPolicyLoadException"/>).</summary>
    SourceFailed = 2,
}
