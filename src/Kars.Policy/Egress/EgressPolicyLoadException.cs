namespace Kars.Policy.Egress;

/// <summary>Thrown when an egress policy cannot be loaded; <see cref="Problems"/> lists every problem found, not just the first.</summary>
public sealed class EgressPolicyLoadException : KarsPolicyException
{
    /// <summary>Initializes a new instance with the problems found.</summary>
    /// <param name="problems">Every problem found; at least one.</param>
    public EgressPolicyLoadException(IReadOnlyList<EgressPolicyProblem> problems)
        : base(BuildMessage(problems))
    {
        Problems = problems;
    }

    /// <summary>Initializes a new instance with the problems found and the underlying cause.</summary>
    /// <param name="problems">Every problem found; at least one.</param>
    /// <param name="innerException">The underlying cause, such as an I/O error.</param>
    public EgressPolicyLoadException(IReadOnlyList<EgressPolicyProblem> problems, Exception? innerException)
        : base(BuildMessage(problems), innerException)
    {
        Problems = problems;
    }

    /// <summary>Gets every problem found while loading.</summary>
    public IReadOnlyList<EgressPolicyProblem> Problems { get; }

    private static string BuildMessage(IReadOnlyList<EgressPolicyProblem> problems)
    {
        ArgumentNullException.ThrowIfNull(problems);
        return problems.Count switch
        {
            0 => "the egress policy could not be loaded",
            1 => $"the egress policy could not be loaded: {problems[0]}",
            _ => $"the egress policy could not be loaded ({problems.Count} problems): {problems[0]}; …",
        };
    }
}
