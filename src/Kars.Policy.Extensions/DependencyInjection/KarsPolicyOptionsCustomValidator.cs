using Kars.Policy.Budgets;
using Kars.Policy.Egress;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Kars.Policy.DependencyInjection;

/// <summary>
/// The rules of <see cref="KarsPolicyOptions"/> that span fields or need the engine: configuration text problems, the
/// egress path and engine options, budget keys and parents, the store. Every problem is reported, not the first.
/// </summary>
internal sealed class KarsPolicyOptionsCustomValidator : IValidateOptions<KarsPolicyOptions>
{
    private static readonly System.Buffers.SearchValues<char> LowerHex = System.Buffers.SearchValues.Create("0123456789abcdef");
    private readonly Func<Type, bool> _hostRegistered;

    /// <param name="hostRegistered">Whether the host registered its own service of a type (then the options that
    /// would build ours are not required).</param>
    public KarsPolicyOptionsCustomValidator(Func<Type, bool> hostRegistered) => _hostRegistered = hostRegistered;

    public ValidateOptionsResult Validate(string? name, KarsPolicyOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var errors = new List<string>(options.ConfigurationProblems);
        ValidateEgress(options.Egress, errors);
        ValidateBudgets(options.Budgets, errors);
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    private void ValidateEgress(KarsEgressPolicyOptions egress, List<string> errors)
    {
        if (!egress.Enabled)
        {
            return;
        }

        bool hasPath = !string.IsNullOrWhiteSpace(egress.Path);
        if (hasPath && egress.Bundle is not null)
        {
            errors.Add("Kars:Egress:Path and Kars:Egress:Bundle are both set: configure exactly one policy source (a policy file or folder, or a signed bundle).");
        }
        else if (!hasPath && egress.Bundle is null && !_hostRegistered(typeof(IEgressPolicySource)))
        {
            errors.Add("Kars:Egress:Path or Kars:Egress:Bundle is required (a policy file, a kars allowlist.json or a kars folder; or a signed OCI bundle), unless Kars:Egress:Enabled is false or the host registers an IEgressPolicySource.");
        }

        if (egress.Bundle is { } bundle)
        {
            ValidateBundle(bundle, errors);
        }

        KarsEgressOptions policy = egress.Policy;
        if (policy.Mode is { } mode && !Enum.IsDefined(mode))
        {
            errors.Add($"Kars:Egress:Mode: {mode} is not Strict or Learn.");
        }

        if (policy.ReloadDelay < TimeSpan.Zero)
        {
            errors.Add($"Kars:Egress:ReloadDelay must be zero or more (was {policy.ReloadDelay}).");
        }

        if (policy.WatchInterval <= TimeSpan.Zero)
        {
            errors.Add($"Kars:Egress:WatchInterval must be positive (was {policy.WatchInterval}).");
        }

        if (policy.LearnedCapacity < 0)
        {
            errors.Add($"Kars:Egress:LearnedCapacity must be zero or more (was {policy.LearnedCapacity}).");
        }

        if (policy.MaxFeedEntries <= 0 || policy.MaxDocumentBytes <= 0 || policy.MaxFeedBytes <= 0)
        {
            errors.Add("Kars:Egress:MaxFeedEntries, MaxDocumentBytes and MaxFeedBytes must be positive.");
        }

        // Prefixes are checked one by one through the engine's own parser, so that every bad one is named.
        foreach (string prefix in policy.PrivateAllow)
        {
            var one = new KarsEgressOptions();
            one.PrivateAllow.Add(prefix);
            try
            {
                _ = new InMemoryEgressPolicySource(ReadOnlyMemory<byte>.Empty, feeds: null, one);
            }
            catch (ArgumentException ex)
            {
                errors.Add($"Kars:Egress:PrivateAllow: '{prefix}' is not a CIDR prefix ({ex.Message}).");
            }
        }

        // Whatever else the engine refuses (its own checks may grow), reported once.
        if (errors.Count == 0)
        {
            try
            {
                using var monitor = new EgressPolicyMonitor(new InMemoryEgressPolicySource(ReadOnlyMemory<byte>.Empty, feeds: null, policy), policy);
            }
            catch (ArgumentException ex)
            {
                errors.Add($"Kars:Egress: {ex.Message}");
            }
        }
    }

    /// <summary>The shape of the bundle options (no I/O: the trust files are read by <see cref="KarsBundleTrustValidator"/>).</summary>
    private static void ValidateBundle(KarsEgressBundleOptions bundle, List<string> errors)
    {
        const string Where = "Kars:Egress:Bundle";
        if (string.IsNullOrWhiteSpace(bundle.Path))
        {
            errors.Add($"{Where}:Path is required (the OCI image layout directory).");
        }

        if (string.IsNullOrWhiteSpace(bundle.StatePath))
        {
            errors.Add($"{Where}:StatePath is required (the directory of the persisted last-known-good policy, the rollback floor across restarts).");
        }
        else if (string.Equals(bundle.StatePath.TrimEnd('/', '\\'), bundle.Path?.TrimEnd('/', '\\'), StringComparison.Ordinal))
        {
            errors.Add($"{Where}:StatePath must not be the layout directory {Where}:Path.");
        }

        bool key = !string.IsNullOrWhiteSpace(bundle.PublicKeyPath);
        bool identity = !string.IsNullOrEmpty(bundle.CertificateIdentity);
        bool pattern = !string.IsNullOrEmpty(bundle.CertificateIdentityRegex);
        bool issuer = !string.IsNullOrEmpty(bundle.CertificateOidcIssuer);
        if (key && (identity || pattern || issuer))
        {
            errors.Add($"{Where}: PublicKeyPath and a keyless identity (CertificateIdentity, CertificateIdentityRegex, CertificateOidcIssuer) are both set: name exactly one signer.");
        }
        else if (!key && !identity && !pattern && !issuer)
        {
            errors.Add($"{Where}: name who must have signed: PublicKeyPath, or CertificateIdentity (or CertificateIdentityRegex) with CertificateOidcIssuer and TrustedRootPath.");
        }
        else if (!key)
        {
            if (identity && pattern)
            {
                errors.Add($"{Where}: CertificateIdentity and CertificateIdentityRegex are both set: give one.");
            }
            else if (!identity && !pattern)
            {
                errors.Add($"{Where}: CertificateIdentity or CertificateIdentityRegex is required with CertificateOidcIssuer.");
            }

            if (!issuer)
            {
                errors.Add($"{Where}:CertificateOidcIssuer is required for a keyless signer.");
            }

            if (string.IsNullOrWhiteSpace(bundle.TrustedRootPath))
            {
                errors.Add($"{Where}:TrustedRootPath is required for a keyless signer (the Fulcio, CT and Rekor keys come only from it).");
            }

            if (pattern && issuer)
            {
                try
                {
                    _ = Bundles.SignerPolicy.ForIdentityPattern(bundle.CertificateIdentityRegex!, bundle.CertificateOidcIssuer!);
                }
                catch (ArgumentException ex)
                {
                    errors.Add($"{Where}:CertificateIdentityRegex does not compile ({ex.Message}).");
                }
            }
        }
        else if (bundle.RequireTransparencyLog && string.IsNullOrWhiteSpace(bundle.TrustedRootPath))
        {
            errors.Add($"{Where}:TrustedRootPath is required while RequireTransparencyLog is true (the key signature's Rekor entry is checked against its log keys); setting RequireTransparencyLog to false is cosign's --insecure-ignore-tlog.");
        }

        if (bundle.ManifestDigest is { } digest && !IsSha256Digest(digest))
        {
            errors.Add($"{Where}:ManifestDigest '{digest}' is not sha256:<64 lower-case hex digits>.");
        }

        if (bundle.ExpectedName is { } name && string.IsNullOrWhiteSpace(name))
        {
            errors.Add($"{Where}:ExpectedName is empty; remove it or name the policy this host runs.");
        }

        foreach (string type in bundle.AllowedPredicateTypes)
        {
            if (string.IsNullOrWhiteSpace(type) || type.Trim().Length != type.Length)
            {
                errors.Add($"{Where}:AllowedPredicateTypes: '{type}' is not a predicate type URI.");
            }
        }
    }

    private static bool IsSha256Digest(string digest) =>
        digest.Length == 71 && digest.StartsWith("sha256:", StringComparison.Ordinal) && !digest.AsSpan(7).ContainsAnyExcept(LowerHex);

    private void ValidateBudgets(KarsBudgetOptions budgets, List<string> errors)
    {
        if (!Enum.IsDefined(budgets.Mode))
        {
            errors.Add($"Kars:Budgets:Mode: {budgets.Mode} is not Enforce or Observe.");
        }

        if (budgets.LeaseDuration is { } lease && (lease <= TimeSpan.Zero || lease > BudgetRequest.MaxLeaseDuration))
        {
            errors.Add($"Kars:Budgets:LeaseDuration must be positive and at most 365 days (was {lease}).");
        }

        foreach (var pair in budgets.Keys)
        {
            string where = $"Kars:Budgets:Keys:{pair.Key}";
            if (string.IsNullOrEmpty(pair.Key) || pair.Key.Length > BudgetLevel.MaxKeyLength)
            {
                errors.Add($"{where}: a budget key is 1 to {BudgetLevel.MaxKeyLength} characters.");
            }

            if (pair.Value is null)
            {
                errors.Add($"{where}: no settings.");
                continue;
            }

            Limits($"{where}:Limits", pair.Value.Limits, errors);
            if (pair.Value.Parent is not { } parent)
            {
                continue;
            }

            if (parent == pair.Key)
            {
                errors.Add($"{where}:Parent names the key itself.");
            }
            else if (!budgets.Keys.TryGetValue(parent, out var parentOptions))
            {
                errors.Add($"{where}:Parent '{parent}' is not listed under Kars:Budgets:Keys.");
            }
            else if (parentOptions?.Parent is not null)
            {
                errors.Add($"{where}:Parent '{parent}' has a parent of its own; one level of parent is supported.");
            }
        }

        if (budgets.Store.Kind == KarsBudgetStoreKind.File && string.IsNullOrWhiteSpace(budgets.Store.Path) && !_hostRegistered(typeof(BudgetStore)))
        {
            errors.Add("Kars:Budgets:Store:Path is required when Kars:Budgets:Store:Kind is File.");
        }

        if (!Enum.IsDefined(budgets.Store.Kind))
        {
            errors.Add($"Kars:Budgets:Store:Kind: {budgets.Store.Kind} is not Memory or File.");
        }
    }

    private static void Limits(string where, KarsBudgetLimitsOptions limits, List<string> errors)
    {
        foreach (var (window, value) in new[] { ("Hour", limits.Hour), ("Day", limits.Day), ("Week", limits.Week), ("Month", limits.Month), ("Year", limits.Year) })
        {
            if (value < 0)
            {
                errors.Add($"{where}:{window} must be zero or more (was {value}).");
            }
        }
    }
}
