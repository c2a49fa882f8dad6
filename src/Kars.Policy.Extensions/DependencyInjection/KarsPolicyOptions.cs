using System.ComponentModel.DataAnnotations;
using Kars.Policy.Budgets;
using Kars.Policy.Egress;
using Microsoft.Extensions.Options;

namespace Kars.Policy.DependencyInjection;

/// <summary>
/// The options <c>AddKarsPolicy</c> binds (configuration section <see cref="DefaultSectionName"/>) and validates at
/// start-up: the egress policy source and the token budgets. The configuration keys are listed in docs/integration.md.
/// </summary>
/// <remarks>This type is mutable and not safe for concurrent modification; the container builds one instance per
/// options change and the components copy what they need.</remarks>
public sealed class KarsPolicyOptions
{
    /// <summary>The configuration section read by <c>AddKarsPolicy(IConfiguration)</c> when given the root: <c>Kars</c>.</summary>
    public const string DefaultSectionName = "Kars";

    /// <summary>Gets the egress options (configuration section <c>Kars:Egress</c>).</summary>
    public KarsEgressPolicyOptions Egress { get; } = new();

    /// <summary>Gets the budget options (configuration section <c>Kars:Budgets</c>).</summary>
    [ValidateObjectMembers]
    public KarsBudgetOptions Budgets { get; } = new();

    /// <summary>Problems found while reading configuration text (unknown keys, values that do not parse); reported by validation.</summary>
    internal List<string> ConfigurationProblems { get; } = [];
}

/// <summary>Egress options of <see cref="KarsPolicyOptions"/>: where the policy comes from and how it is watched.
/// A change of these options after start-up needs a restart (the policy file itself is reloaded on change).</summary>
/// <remarks>This type is mutable and not safe for concurrent modification.</remarks>
public sealed class KarsEgressPolicyOptions
{
    /// <summary>Gets or sets whether the egress policy is registered (<see cref="IEgressPolicy"/>, <see cref="EgressPolicyMonitor"/>).</summary>
    /// <value>The default value is <see langword="true"/>: <see cref="Path"/> is then required, unless the host registered its own <see cref="IEgressPolicySource"/>.</value>
    public bool Enabled { get; set; } = true;

    /// <summary>Gets or sets the policy: a native JSON policy file, a kars <c>allowlist.json</c>, or a kars folder.
    /// Exactly one of <see cref="Path"/> and <see cref="Bundle"/> is set.</summary>
    /// <value>The default value is <see langword="null"/>.</value>
    public string? Path { get; set; }

    /// <summary>Gets or sets the signed policy bundle (configuration section <c>Kars:Egress:Bundle</c>): an OCI image layout
    /// verified with <see cref="Bundles.OciBundleEgressPolicySource"/> and persisted with
    /// <see cref="Bundles.FileEgressPolicyLastKnownGoodStore"/>. Exactly one of <see cref="Path"/> and <see cref="Bundle"/> is set.</summary>
    /// <value>The default value is <see langword="null"/>: no bundle.</value>
    public KarsEgressBundleOptions? Bundle { get; set; }

    /// <summary>Gets or sets whether the folder of <see cref="Path"/> is watched (<see cref="DirectoryEgressPolicySource"/>,
    /// including the Kubernetes ConfigMap <c>..data</c> swap) so that edits are reloaded; otherwise the file is read once
    /// (<see cref="FileEgressPolicySource"/>).</summary>
    /// <value>The default value is <see langword="true"/>.</value>
    public bool Watch { get; set; } = true;

    /// <summary>Gets or sets the sandbox identity that clients added with <c>AddKarsEgressPolicy()</c> attribute
    /// decisions to when neither the client nor the request names one (<c>EgressHttpOptions.Sandbox</c>).</summary>
    /// <value>The default value is <see langword="null"/>: no sandbox.</value>
    public string? Sandbox { get; set; }

    /// <summary>Gets the engine options: <see cref="KarsEgressOptions.Mode"/>, <see cref="KarsEgressOptions.ReloadDelay"/>
    /// (debounce), <see cref="KarsEgressOptions.WatchInterval"/>, <see cref="KarsEgressOptions.PrivateAllow"/>, the size
    /// limits, <see cref="KarsEgressOptions.TreatOverbroadRulesAsErrors"/>. Configuration keys sit directly in
    /// <c>Kars:Egress</c> (for example <c>Kars:Egress:Mode</c>).</summary>
    public KarsEgressOptions Policy { get; } = new();
}

/// <summary>
/// A signed egress policy bundle (DESIGN §3, docs/bundles.md): where the OCI image layout is, who must have signed it,
/// and where its last-known-good copy is kept. Relative paths are relative to the process's working directory, as
/// <see cref="KarsEgressPolicyOptions.Path"/> is. The trust material (<see cref="PublicKeyPath"/>,
/// <see cref="TrustedRootPath"/>) is read once, when the options are validated at start-up: a file that cannot be read
/// or parsed fails the start. A change of these options takes effect at the next start.
/// </summary>
/// <remarks>This type is mutable and not safe for concurrent modification.</remarks>
public sealed class KarsEgressBundleOptions
{
    /// <summary>Gets or sets the OCI image layout directory (or a Kubernetes volume whose <c>..data</c> holds one). It is
    /// always watched, including the <c>..data</c> swap.</summary>
    /// <value>The default value is <see langword="null"/>; required.</value>
    public string? Path { get; set; }

    /// <summary>Gets or sets a PEM public key file (<c>cosign.pub</c>): the bundle must be signed with that key. Set this,
    /// or <see cref="CertificateIdentity"/> (or <see cref="CertificateIdentityRegex"/>) with <see cref="CertificateOidcIssuer"/>.</summary>
    /// <value>The default value is <see langword="null"/>.</value>
    public string? PublicKeyPath { get; set; }

    /// <summary>Gets or sets the Sigstore <c>trusted_root.json</c> file: Fulcio CAs, CT logs, Rekor logs and timestamp
    /// authorities. Required for keyless signatures, and for key signatures while <see cref="RequireTransparencyLog"/> is
    /// <see langword="true"/> (the Rekor entry is verified against its log keys).</summary>
    /// <value>The default value is <see langword="null"/>.</value>
    public string? TrustedRootPath { get; set; }

    /// <summary>Gets or sets the keyless signer's certificate identity (a SAN: e-mail, URI), compared ordinally.</summary>
    /// <value>The default value is <see langword="null"/>.</value>
    public string? CertificateIdentity { get; set; }

    /// <summary>Gets or sets a .NET regular expression the keyless signer's whole certificate identity must match (anchored
    /// with <c>\A(?:…)\z</c>), instead of <see cref="CertificateIdentity"/>.</summary>
    /// <value>The default value is <see langword="null"/>.</value>
    public string? CertificateIdentityRegex { get; set; }

    /// <summary>Gets or sets the keyless signer's OIDC issuer URL, compared ordinally.</summary>
    /// <value>The default value is <see langword="null"/>.</value>
    public string? CertificateOidcIssuer { get; set; }

    /// <summary>Gets or sets the policy manifest to load, <c>sha256:&lt;64 lower-case hex&gt;</c>; otherwise the one policy
    /// manifest of the layout is loaded.</summary>
    /// <value>The default value is <see langword="null"/>.</value>
    public string? ManifestDigest { get; set; }

    /// <summary>Gets or sets the name of the policy this host runs: the signed kars allowlist's <c>metadata.name</c> must
    /// equal it, and a native JSON policy (which names nothing) is refused
    /// (<see cref="Bundles.BundleFailureReason.IdentityMismatch"/>). Without it or <see cref="ManifestDigest"/>, whoever can
    /// write the layout may put there any policy the signer ever signed (another sandbox's, staging's).</summary>
    /// <value>The default value is <see langword="null"/> (no name is checked).</value>
    public string? ExpectedName { get; set; }

    /// <summary>Gets or sets the state directory of the persisted last-known-good copy (the rollback floor across
    /// restarts). Keep it writable by the service account only; it must not be the layout directory.</summary>
    /// <value>The default value is <see langword="null"/>; required.</value>
    public string? StatePath { get; set; }

    /// <summary>Gets or sets whether transparency-log evidence is required for key-signed bundles
    /// (<see cref="Bundles.SigstoreVerifierOptions.RequireTransparencyLog"/>; <see langword="false"/> is cosign's
    /// <c>--insecure-ignore-tlog</c>). Keyless bundles always need it.</summary>
    /// <value>The default value is <see langword="true"/>.</value>
    public bool RequireTransparencyLog { get; set; } = true;

    /// <summary>Gets or sets whether a Fulcio certificate must carry an embedded SCT
    /// (<see cref="Bundles.SigstoreVerifierOptions.RequireSignedCertificateTimestamp"/>).</summary>
    /// <value>The default value is <see langword="true"/>.</value>
    public bool RequireSignedCertificateTimestamp { get; set; } = true;

    /// <summary>Gets the in-toto predicate types a DSSE signature of the bundle may carry. Empty: only
    /// <see cref="Bundles.OciBundleEgressPolicySource.CosignSignPredicateType"/> (<c>cosign sign</c>), so that an attestation
    /// of another kind by the same signer does not vouch for a policy. There is no setting for "any".</summary>
    public IList<string> AllowedPredicateTypes { get; } = [];
}

/// <summary>Budget options of <see cref="KarsPolicyOptions"/>: the limits file of DESIGN §7 as options, and the store.
/// Limits, keys, mode, per-request cap and lease duration are reloaded on change; the store is not (restart).</summary>
/// <remarks>This type is mutable and not safe for concurrent modification.</remarks>
public sealed class KarsBudgetOptions
{
    /// <summary>Gets or sets the mode: <see cref="BudgetMode.Enforce"/> or <see cref="BudgetMode.Observe"/>.</summary>
    /// <value>The default value is <see cref="BudgetMode.Enforce"/>.</value>
    public BudgetMode Mode { get; set; }

    /// <summary>Gets or sets the largest reservation one request may make, or <see langword="null"/> for no cap.</summary>
    /// <value>The default value is <see langword="null"/>.</value>
    [Range(0L, BudgetStore.MaxTokens)]
    public long? PerRequestTokens { get; set; }

    /// <summary>Gets or sets how long a hold lives before it is charged in full, or <see langword="null"/> for 10 minutes.</summary>
    /// <value>The default value is <see langword="null"/>.</value>
    public TimeSpan? LeaseDuration { get; set; }

    /// <summary>Gets the limits of keys that are not listed in <see cref="Keys"/>.</summary>
    [ValidateObjectMembers]
    public KarsBudgetLimitsOptions Limits { get; } = new();

    /// <summary>Gets the listed keys, each with its own limits and an optional parent (one level) whose limits apply too.</summary>
    public IDictionary<string, KarsBudgetKeyOptions> Keys { get; } = new Dictionary<string, KarsBudgetKeyOptions>(StringComparer.Ordinal);

    /// <summary>Gets the store options. A <see cref="BudgetStore"/> the host registers itself (for example Redis) wins over them.</summary>
    [ValidateObjectMembers]
    public KarsBudgetStoreOptions Store { get; } = new();

    /// <summary>Gets or sets how many keys' resolved levels the meter caches.</summary>
    /// <value>The default value is 100,000.</value>
    [Range(0, int.MaxValue)]
    public int MaxCachedKeys { get; set; } = 100_000;
}

/// <summary>Token limits per window; <see langword="null"/> leaves a window unlimited.</summary>
/// <remarks>This type is mutable and not safe for concurrent modification.</remarks>
public sealed class KarsBudgetLimitsOptions
{
    /// <summary>Gets or sets the hourly limit.</summary>
    /// <value>The default value is <see langword="null"/>.</value>
    [Range(0L, long.MaxValue)]
    public long? Hour { get; set; }

    /// <summary>Gets or sets the daily limit.</summary>
    /// <value>The default value is <see langword="null"/>.</value>
    [Range(0L, long.MaxValue)]
    public long? Day { get; set; }

    /// <summary>Gets or sets the weekly (ISO-8601) limit.</summary>
    /// <value>The default value is <see langword="null"/>.</value>
    [Range(0L, long.MaxValue)]
    public long? Week { get; set; }

    /// <summary>Gets or sets the monthly limit.</summary>
    /// <value>The default value is <see langword="null"/>.</value>
    [Range(0L, long.MaxValue)]
    public long? Month { get; set; }

    /// <summary>Gets or sets the yearly limit.</summary>
    /// <value>The default value is <see langword="null"/>.</value>
    [Range(0L, long.MaxValue)]
    public long? Year { get; set; }

    internal BudgetLimits ToLimits() => new(Hour, Day, Week, Month, Year);
}

/// <summary>One listed budget key.</summary>
/// <remarks>This type is mutable and not safe for concurrent modification.</remarks>
public sealed class KarsBudgetKeyOptions
{
    /// <summary>Gets or sets the parent key (a tenant), which must be listed and have no parent of its own.</summary>
    /// <value>The default value is <see langword="null"/>.</value>
    public string? Parent { get; set; }

    /// <summary>Gets the key's own limits.</summary>
    public KarsBudgetLimitsOptions Limits { get; } = new();
}

/// <summary>Which budget store <c>AddKarsPolicy</c> registers when the host registered none.</summary>
public enum KarsBudgetStoreKind
{
    /// <summary>An <see cref="InMemoryBudgetStore"/>: counters are lost on restart and not shared between replicas.</summary>
    Memory = 0,

    /// <summary>A <see cref="FileBudgetStore"/> in <see cref="KarsBudgetStoreOptions.Path"/>: durable, one process per folder.</summary>
    File = 1,
}

/// <summary>Budget store options.</summary>
/// <remarks>This type is mutable and not safe for concurrent modification.</remarks>
public sealed class KarsBudgetStoreOptions
{
    /// <summary>Gets or sets the store kind.</summary>
    /// <value>The default value is <see cref="KarsBudgetStoreKind.Memory"/>.</value>
    public KarsBudgetStoreKind Kind { get; set; }

    /// <summary>Gets or sets the folder of a <see cref="KarsBudgetStoreKind.File"/> store.</summary>
    /// <value>The default value is <see langword="null"/>.</value>
    public string? Path { get; set; }

    /// <summary>Gets or sets how many log records of a file store trigger a compaction.</summary>
    /// <value>The default value is 100,000.</value>
    [Range(1L, long.MaxValue)]
    public long CompactAfterRecords { get; set; } = 100_000;
}
