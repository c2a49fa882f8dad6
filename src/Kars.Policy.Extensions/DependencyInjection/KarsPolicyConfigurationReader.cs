using System.Globalization;
using Kars.Policy.Budgets;
using Kars.Policy.Egress;
using Microsoft.Extensions.Configuration;

namespace Kars.Policy.DependencyInjection;

/// <summary>
/// Reads the <c>Kars</c> configuration section into <see cref="KarsPolicyOptions"/>, collecting every problem (unknown
/// key, value that does not parse) into <see cref="KarsPolicyOptions.ConfigurationProblems"/> instead of throwing, so
/// that start-up validation reports them all at once.
/// </summary>
/// <remarks>
/// Not the configuration binder: the binder parses enums with <see cref="Enum.Parse(Type, string, bool)"/>, which reads
/// <c>"1"</c> or <c>"Strict,Learn"</c> as a value (a bitwise OR) and silently changes the mode, throws on the first bad
/// value, and ignores misspelled keys. Here an enum is exactly one declared name in any case (as the engine's
/// <c>StrictEnum</c>), numbers and times use the invariant culture, and an unknown key is a problem: a typo in a
/// security setting must not pass unnoticed.
/// </remarks>
internal static class KarsPolicyConfigurationReader
{
    private static readonly string[] EgressKeys =
    [
        "Enabled", "Path", "Watch", "Sandbox", "Mode", "PrivateAllow", "LearnedCapacity", "MaxFeedEntries", "MaxDocumentBytes",
        "MaxFeedBytes", "AllowFeedsOutsidePolicyFolder", "TreatOverbroadRulesAsErrors", "WatchInterval", "ReloadDelay", "Bundle",
    ];

    private static readonly string[] BundleKeys =
    [
        "Path", "PublicKeyPath", "TrustedRootPath", "CertificateIdentity", "CertificateIdentityRegex", "CertificateOidcIssuer",
        "ManifestDigest", "ExpectedName", "StatePath", "RequireTransparencyLog", "RequireSignedCertificateTimestamp", "AllowedPredicateTypes",
    ];

    private static readonly string[] BudgetKeys = ["Mode", "PerRequestTokens", "LeaseDuration", "Limits", "Keys", "Store", "MaxCachedKeys"];
    private static readonly string[] WindowKeys = ["Hour", "Day", "Week", "Month", "Year"];
    private static readonly string[] KeyKeys = ["Parent", "Limits"];
    private static readonly string[] StoreKeys = ["Kind", "Path", "CompactAfterRecords"];

    public static void Read(IConfiguration section, KarsPolicyOptions options)
    {
        var problems = options.ConfigurationProblems;
        problems.Clear();
        Unknown(section, ["Egress", "Budgets"], problems);
        ReadEgress(section.GetSection("Egress"), options.Egress, problems);
        ReadBudgets(section.GetSection("Budgets"), options.Budgets, problems);
    }

    private static void ReadEgress(IConfigurationSection section, KarsEgressPolicyOptions egress, List<string> problems)
    {
        Unknown(section, EgressKeys, problems);
        KarsEgressOptions policy = egress.Policy;
        Bool(section, "Enabled", v => egress.Enabled = v, problems);
        Text(section, "Path", v => egress.Path = v);
        Bool(section, "Watch", v => egress.Watch = v, problems);
        Text(section, "Sandbox", v => egress.Sandbox = v);
        Enum<EgressMode>(section, "Mode", v => policy.Mode = v, problems);
        var prefixes = section.GetSection("PrivateAllow");
        if (prefixes.Value is { } single)
        {
            policy.PrivateAllow.Add(single);
        }

        foreach (var child in prefixes.GetChildren())
        {
            if (child.Value is { } prefix)
            {
                policy.PrivateAllow.Add(prefix);
            }
        }

        Int(section, "LearnedCapacity", v => policy.LearnedCapacity = v, problems);
        Int(section, "MaxFeedEntries", v => policy.MaxFeedEntries = v, problems);
        Long(section, "MaxDocumentBytes", v => policy.MaxDocumentBytes = v, problems);
        Long(section, "MaxFeedBytes", v => policy.MaxFeedBytes = v, problems);
        Bool(section, "AllowFeedsOutsidePolicyFolder", v => policy.AllowFeedsOutsidePolicyFolder = v, problems);
        Bool(section, "TreatOverbroadRulesAsErrors", v => policy.TreatOverbroadRulesAsErrors = v, problems);
        Time(section, "WatchInterval", v => policy.WatchInterval = v, problems);
        Time(section, "ReloadDelay", v => policy.ReloadDelay = v, problems);
        if (section.GetSection("Bundle") is { } bundle && bundle.Exists())
        {
            egress.Bundle = ReadBundle(bundle, problems);
        }
    }

    private static KarsEgressBundleOptions ReadBundle(IConfigurationSection section, List<string> problems)
    {
        Unknown(section, BundleKeys, problems);
        var bundle = new KarsEgressBundleOptions();
        if (section.Value is { Length: > 0 })
        {
            problems.Add($"{section.Path}: a section (Path, PublicKeyPath or the keyless identity, StatePath, ...), not a value.");
        }

        Text(section, "Path", v => bundle.Path = v);
        Text(section, "PublicKeyPath", v => bundle.PublicKeyPath = v);
        Text(section, "TrustedRootPath", v => bundle.TrustedRootPath = v);
        Text(section, "CertificateIdentity", v => bundle.CertificateIdentity = v);
        Text(section, "CertificateIdentityRegex", v => bundle.CertificateIdentityRegex = v);
        Text(section, "CertificateOidcIssuer", v => bundle.CertificateOidcIssuer = v);
        Text(section, "ManifestDigest", v => bundle.ManifestDigest = v);
        Text(section, "ExpectedName", v => bundle.ExpectedName = v);
        Text(section, "StatePath", v => bundle.StatePath = v);
        Bool(section, "RequireTransparencyLog", v => bundle.RequireTransparencyLog = v, problems);
        Bool(section, "RequireSignedCertificateTimestamp", v => bundle.RequireSignedCertificateTimestamp = v, problems);
        var types = section.GetSection("AllowedPredicateTypes");
        if (types.Value is { Length: > 0 } single)
        {
            bundle.AllowedPredicateTypes.Add(single);
        }

        foreach (var child in types.GetChildren())
        {
            if (child.Value is { Length: > 0 } type)
            {
                bundle.AllowedPredicateTypes.Add(type);
            }
        }

        return bundle;
    }

    private static void ReadBudgets(IConfigurationSection section, KarsBudgetOptions budgets, List<string> problems)
    {
        Unknown(section, BudgetKeys, problems);
        Enum<BudgetMode>(section, "Mode", v => budgets.Mode = v, problems);
        Long(section, "PerRequestTokens", v => budgets.PerRequestTokens = v, problems);
        Time(section, "LeaseDuration", v => budgets.LeaseDuration = v, problems);
        Int(section, "MaxCachedKeys", v => budgets.MaxCachedKeys = v, problems);
        ReadLimits(section.GetSection("Limits"), budgets.Limits, problems);
        foreach (var key in section.GetSection("Keys").GetChildren())
        {
            Unknown(key, KeyKeys, problems);
            var entry = new KarsBudgetKeyOptions();
            Text(key, "Parent", v => entry.Parent = v);
            ReadLimits(key.GetSection("Limits"), entry.Limits, problems);
            budgets.Keys[key.Key] = entry;
        }

        var store = section.GetSection("Store");
        Unknown(store, StoreKeys, problems);
        Enum<KarsBudgetStoreKind>(store, "Kind", v => budgets.Store.Kind = v, problems);
        Text(store, "Path", v => budgets.Store.Path = v);
        Long(store, "CompactAfterRecords", v => budgets.Store.CompactAfterRecords = v, problems);
    }

    private static void ReadLimits(IConfigurationSection section, KarsBudgetLimitsOptions limits, List<string> problems)
    {
        Unknown(section, WindowKeys, problems);
        Long(section, "Hour", v => limits.Hour = v, problems);
        Long(section, "Day", v => limits.Day = v, problems);
        Long(section, "Week", v => limits.Week = v, problems);
        Long(section, "Month", v => limits.Month = v, problems);
        Long(section, "Year", v => limits.Year = v, problems);
    }

    private static void Unknown(IConfiguration section, string[] known, List<string> problems)
    {
        foreach (var child in section.GetChildren())
        {
            if (!known.Contains(child.Key, StringComparer.OrdinalIgnoreCase))
            {
                problems.Add($"{child.Path}: unknown setting (expected one of {string.Join(", ", known)}).");
            }
        }

    }

    private static void Text(IConfiguration section, string key, Action<string> set)
    {
        if (section[key] is { Length: > 0 } text)
        {
            set(text);
        }
    }

    private static void Bool(IConfigurationSection section, string key, Action<bool> set, List<string> problems)
    {
        if (section[key] is not { } text)
        {
            return;
        }

        if (bool.TryParse(text, out bool value))
        {
            set(value);
        }
        else
        {
            problems.Add($"{section.Path}:{key}: '{text}' is not true or false.");
        }
    }

    private static void Int(IConfigurationSection section, string key, Action<int> set, List<string> problems)
    {
        if (section[key] is not { } text)
        {
            return;
        }

        if (int.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out int value))
        {
            set(value);
        }
        else
        {
            problems.Add($"{section.Path}:{key}: '{text}' is not a whole number.");
        }
    }

    private static void Long(IConfigurationSection section, string key, Action<long> set, List<string> problems)
    {
        if (section[key] is not { } text)
        {
            return;
        }

        if (long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long value))
        {
            set(value);
        }
        else
        {
            problems.Add($"{section.Path}:{key}: '{text}' is not a whole number.");
        }
    }

    private static void Time(IConfigurationSection section, string key, Action<TimeSpan> set, List<string> problems)
    {
        if (section[key] is not { } text)
        {
            return;
        }

        // The constant ("c") format only: [-][d.]hh:mm:ss[.fffffff]. A bare "1" would otherwise mean one day.
        if (TimeSpan.TryParseExact(text, "c", CultureInfo.InvariantCulture, out TimeSpan value) && text.Contains(':', StringComparison.Ordinal))
        {
            set(value);
        }
        else
        {
            problems.Add($"{section.Path}:{key}: '{text}' is not a time span (hh:mm:ss[.fffffff], for example 00:00:00.250).");
        }
    }

    private static void Enum<TEnum>(IConfigurationSection section, string key, Action<TEnum> set, List<string> problems)
        where TEnum : struct, Enum
    {
        if (section[key] is not { } text)
        {
            return;
        }

        // Exactly one declared name, any case: never a number, a comma list or padding (the engine's StrictEnum rule).
        foreach (string name in System.Enum.GetNames<TEnum>())
        {
            if (string.Equals(name, text, StringComparison.OrdinalIgnoreCase))
            {
                set(System.Enum.Parse<TEnum>(name));
                return;
            }
        }

        problems.Add($"{section.Path}:{key}: '{text}' is not one of {string.Join(", ", System.Enum.GetNames<TEnum>())}.");
    }
}
