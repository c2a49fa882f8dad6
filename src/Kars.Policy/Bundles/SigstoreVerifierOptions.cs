namespace Kars.Policy.Bundles;

/// <summary>How strict a <see cref="SigstoreVerifier"/> is, beyond the per-call <see cref="SignerPolicy"/>. The defaults are cosign's.</summary>
public sealed class SigstoreVerifierOptions
{
    /// <summary>
    /// Gets or sets a value indicating whether key-signed artifacts need transparency-log evidence (a Rekor entry that
    /// verifies). Default <see langword="true"/>, as <c>cosign verify --key</c>; <see langword="false"/> is
    /// <c>--insecure-ignore-tlog</c>. Keyless verification always needs a verified log entry or timestamp, and any log
    /// evidence that is present must verify whatever this says.
    /// </summary>
    public bool RequireTransparencyLog { get; set; } = true;

    /// <summary>
    /// Gets or sets a value indicating whether a Fulcio certificate must carry an embedded SCT from a CT log of the
    /// trusted root. Default <see langword="true"/>.
    /// </summary>
    public bool RequireSignedCertificateTimestamp { get; set; } = true;

    /// <summary>
    /// Gets or sets the in-toto predicate types a DSSE statement may carry, or <see langword="null"/> (the default) for
    /// any, as <c>cosign verify</c>. Set it to pin what a signature means (for example
    /// <c>https://sigstore.dev/cosign/sign/v1</c>).
    /// </summary>
    public IReadOnlyCollection<string>? AllowedPredicateTypes { get; set; }

    /// <summary>Gets or sets the largest bundle, signature, manifest or payload read, in bytes. Default 4 MiB.</summary>
    public int MaxDocumentBytes { get; set; } = 4 * 1024 * 1024;
}
