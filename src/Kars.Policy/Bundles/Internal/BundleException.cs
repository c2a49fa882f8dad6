namespace Kars.Policy.Bundles;

/// <summary>Thrown inside the verification stack to stop at the first failed check; the verifier turns it into a result.</summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1064:Exceptions should be public", Justification = "Internal control flow only: it is always caught inside the library and turned into a typed BundleFailureReason result.")]
internal sealed class BundleException : Exception
{
    public BundleException(BundleFailureReason reason, string message)
        : base(message) => Reason = reason;

    public BundleFailureReason Reason { get; }

    public static BundleException Malformed(string message) => new(BundleFailureReason.CanonicalFormViolation, message);
}
