namespace Kars.Policy.Bundles;

/// <summary>Why a signed bundle or signature was rejected: one member per distinct cause (DESIGN §3).</summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1008:Enums should have zero value", Justification = "A failure reason has no 'None': zero is deliberately not a valid reason, so a default value is never mistaken for a real one.")]
public enum BundleFailureReason
{
    /// <summary>No signature was found for the artifact (no <c>.sig</c> tag, no referrer bundle, no signature annotation).</summary>
    [System.Diagnostics.CodeAnalysis.SuppressMessage("Naming", "CA1720:Identifiers should not contain type names", Justification = "'Unsigned' is the domain term (an artifact with no signature), not a type name.")]
    Unsigned = 1,

    /// <summary>A reference or digest given by the caller is not a well-formed <c>sha256:&lt;64 lower-case hex&gt;</c>.</summary>
    InvalidReference,

    /// <summary>A manifest or blob the check needs is absent from the layout, or a file could not be read.</summary>
    NotFound,

    /// <summary>A recomputed digest differs from the one a descriptor, payload, statement or log entry claims.</summary>
    DigestMismatch,

    /// <summary>A signature does not verify under the given key or the signing certificate's key.</summary>
    SignatureInvalid,

    /// <summary>The certificate's identity (SAN) or OIDC issuer differs from the policy, or the bundle was signed by another kind of signer.</summary>
    IdentityMismatch,

    /// <summary>Transparency-log evidence is missing, forged, inconsistent with the signature, or not from a trusted log.</summary>
    TransparencyLogInvalid,

    /// <summary>Input is malformed: bad JSON, unknown media type, bad base64, a structural rule of the format is broken.</summary>
    CanonicalFormViolation,

    /// <summary>A certificate, timestamp or SCT does not chain to the trusted root, or is not valid at the verified time.</summary>
    UntrustedRoot,

    /// <summary>A bundle's generation is lower than the last-known-good one.</summary>
    RollbackRejected,
}
