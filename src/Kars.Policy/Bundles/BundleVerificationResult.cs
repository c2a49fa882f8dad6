namespace Kars.Policy.Bundles;

/// <summary>
/// The outcome of one verification: either verified (with what was proven) or rejected with exactly one
/// <see cref="BundleFailureReason"/> and a one-line human message.
/// </summary>
public sealed class BundleVerificationResult
{
    private BundleVerificationResult(BundleFailureReason? reason, string message, string? artifactDigest, string? signer, DateTimeOffset? signedAt)
    {
        FailureReason = reason;
        Message = message;
        ArtifactDigest = artifactDigest;
        Signer = signer;
        SignedAt = signedAt;
    }

    /// <summary>Gets a value indicating whether every check passed.</summary>
    public bool IsVerified => FailureReason is null;

    /// <summary>Gets the reason of the rejection, or <see langword="null"/> when verified.</summary>
    public BundleFailureReason? FailureReason { get; }

    /// <summary>Gets a one-line description of the outcome, for operators.</summary>
    public string Message { get; }

    /// <summary>Gets the verified artifact digest (<c>sha256:&lt;hex&gt;</c>) when verified: the blob, the DSSE subject, or the OCI manifest.</summary>
    public string? ArtifactDigest { get; }

    /// <summary>Gets the verified signer when verified: the certificate identity (SAN) or <c>key:&lt;sha256 of the SPKI&gt;</c>.</summary>
    public string? Signer { get; }

    /// <summary>Gets the earliest verified signing time (log integrated time or RFC 3161 time), when one was verified.</summary>
    public DateTimeOffset? SignedAt { get; }

    internal static BundleVerificationResult Verified(string artifactDigest, string signer, DateTimeOffset? signedAt) =>
        new(null, $"verified: {artifactDigest} signed by {signer}", artifactDigest, signer, signedAt);

    internal static BundleVerificationResult Failed(BundleFailureReason reason, string message) =>
        new(reason, message, null, null, null);

    /// <inheritdoc/>
    public override string ToString() => FailureReason is { } r ? $"{r}: {Message}" : Message;
}
