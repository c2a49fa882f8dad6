namespace Kars.Policy.Egress;

/// <summary>One problem found while loading an egress policy document: where it is, what is wrong, and how to fix it.</summary>
/// <remarks>Instances are immutable and safe to share between threads.</remarks>
public sealed class EgressPolicyProblem
{
    /// <summary>Initializes a new problem.</summary>
    /// <param name="source">The file (or feed) the problem is in.</param>
    /// <param name="path">The JSON path of the offending value (for example <c>$.allow[3].host</c>), or a line reference for feeds.</param>
    /// <param name="message">What is wrong.</param>
    /// <param name="suggestion">A suggested fix, or <see langword="null"/>.</param>
    public EgressPolicyProblem(string source, string path, string message, string? suggestion = null)
        : this(EgressPolicyProblemKind.Invalid, source, path, message, suggestion)
    {
    }

    /// <summary>Initializes a new problem of a given kind.</summary>
    /// <param name="kind">What kind of problem it is.</param>
    /// <param name="source">The file (or feed, or policy source) the problem is in.</param>
    /// <param name="path">The JSON path of the offending value, a line reference for feeds, or <c>$</c> for the whole document.</param>
    /// <param name="message">What is wrong.</param>
    /// <param name="suggestion">A suggested fix, or <see langword="null"/>.</param>
    internal EgressPolicyProblem(EgressPolicyProblemKind kind, string source, string path, string message, string? suggestion)
        : this(kind, source, path, message, suggestion, bundleFailure: null)
    {
    }

    /// <summary>Initializes a new problem of a given kind found while loading a signed bundle.</summary>
    internal EgressPolicyProblem(EgressPolicyProblemKind kind, string source, string path, string message, string? suggestion, Bundles.BundleFailureReason? bundleFailure)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(message);
        Kind = kind;
        Source = source;
        Path = path;
        Message = message;
        Suggestion = suggestion;
        BundleFailure = bundleFailure;
    }

    /// <summary>Gets what kind of problem this is.</summary>
    public EgressPolicyProblemKind Kind { get; }

    /// <summary>Gets the file (or feed) the problem is in.</summary>
    public string Source { get; }

    /// <summary>Gets the JSON path of the offending value, for example <c>$.allow[3].host</c>.</summary>
    public string Path { get; }

    /// <summary>Gets what is wrong.</summary>
    public string Message { get; }

    /// <summary>Gets why a signed policy bundle was refused (verification, selection, compile or rollback), or
    /// <see langword="null"/> when the problem does not come from a signed-bundle source. A policy with this set was
    /// never evaluated.</summary>
    public Bundles.BundleFailureReason? BundleFailure { get; }

    /// <summary>Gets a suggested fix (for example <c>use "*.example.com"</c>), or <see langword="null"/>.</summary>
    public string? Suggestion { get; }

    /// <summary>Returns <c>source: path: message (suggestion)</c>.</summary>
    /// <returns>A one-line description of the problem.</returns>
    public override string ToString() =>
        Suggestion is null ? $"{Source}: {Path}: {Message}" : $"{Source}: {Path}: {Message} ({Suggestion})";
}
