namespace Kars.Policy.Bundles;

/// <summary>Thrown inside the verification stack to stop at the first failed check; the verifier turns it into a result.</summary>
internal sealed class BundleException : Exception
{
    public BundleException(BundleFailureReason reason, string message)
        : base(message) => Reason = reason;

    public BundleFailureReason Reason { get; }

    public static BundleException Malformed(string message) => new(BundleFailureReason.CanonicalFormViolation, message);
}
