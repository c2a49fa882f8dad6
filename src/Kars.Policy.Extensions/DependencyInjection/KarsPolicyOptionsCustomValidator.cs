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

        if (string.IsNullOrWhiteSpace(egress.Path) && !_hostRegistered(typeof(IEgressPolicySource)))
        {
            errors.Add("Kars:Egress:Path is required (a policy file, a kars allowlist.json or a kars folder), unless Kars:Egress:Enabled is false or the host registers an IEgressPolicySource.");
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
