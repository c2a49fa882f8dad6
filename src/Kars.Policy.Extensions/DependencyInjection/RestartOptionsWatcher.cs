using Kars.Policy.Egress;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Kars.Policy.DependencyInjection;

/// <summary>
/// Makes a configuration reload that changes an option read only at start visible: the egress options (source, watch,
/// sandbox, engine options) and the budget store options. Those are held by the monitor, the source and the store that
/// were built from the options in force, so a reload cannot change them in place; each reload that differs from the
/// options in force logs event 6002 naming the options (never their values) and that a restart is needed.
/// </summary>
/// <remarks>
/// <para>Applying them live was not chosen: a new source or mode means a new monitor, and the egress handlers, the
/// connect callback and the health check hold the one they were given, so a swap could not be atomic for them all.</para>
/// <para>Created with the egress monitor or the default store (whichever the container builds first); the budget
/// options that do apply live are handled by <see cref="BudgetMeterProvider"/>; both are handed the same read of a reload
/// by <see cref="KarsPolicyConfigurationReloads"/>. Safe for concurrent use.</para>
/// </remarks>
internal sealed class RestartOptionsWatcher : IDisposable
{
    private readonly KarsPolicyOptions _inForce;
    private readonly ILogger _logger;
    private readonly IDisposable _subscription;

    public RestartOptionsWatcher(KarsPolicyOptions inForce, KarsPolicyConfigurationReloads reloads, ILoggerFactory? loggerFactory)
    {
        _inForce = inForce;
        _logger = (ILogger?)loggerFactory?.CreateLogger<RestartOptionsWatcher>() ?? NullLogger.Instance;
        _subscription = reloads.Subscribe(Reload);
    }

    public void Dispose() => _subscription.Dispose();

    /// <summary>Lists the configuration keys of the start-only options whose values differ.</summary>
    internal static List<string> Changed(KarsPolicyOptions inForce, KarsPolicyOptions next)
    {
        var changed = new List<string>();
        KarsEgressPolicyOptions a = inForce.Egress, b = next.Egress;
        Check(changed, "Kars:Egress:Enabled", a.Enabled == b.Enabled);
        Check(changed, "Kars:Egress:Path", string.Equals(a.Path, b.Path, StringComparison.Ordinal));
        Check(changed, "Kars:Egress:Watch", a.Watch == b.Watch);
        Check(changed, "Kars:Egress:Sandbox", string.Equals(a.Sandbox, b.Sandbox, StringComparison.Ordinal));
        KarsEgressBundleOptions? x = a.Bundle, y = b.Bundle;
        if (x is null || y is null)
        {
            Check(changed, "Kars:Egress:Bundle", x is null && y is null);
        }
        else
        {
            Check(changed, "Kars:Egress:Bundle:Path", string.Equals(x.Path, y.Path, StringComparison.Ordinal));
            Check(changed, "Kars:Egress:Bundle:PublicKeyPath", string.Equals(x.PublicKeyPath, y.PublicKeyPath, StringComparison.Ordinal));
            Check(changed, "Kars:Egress:Bundle:TrustedRootPath", string.Equals(x.TrustedRootPath, y.TrustedRootPath, StringComparison.Ordinal));
            Check(changed, "Kars:Egress:Bundle:CertificateIdentity", string.Equals(x.CertificateIdentity, y.CertificateIdentity, StringComparison.Ordinal));
            Check(changed, "Kars:Egress:Bundle:CertificateIdentityRegex", string.Equals(x.CertificateIdentityRegex, y.CertificateIdentityRegex, StringComparison.Ordinal));
            Check(changed, "Kars:Egress:Bundle:CertificateOidcIssuer", string.Equals(x.CertificateOidcIssuer, y.CertificateOidcIssuer, StringComparison.Ordinal));
            Check(changed, "Kars:Egress:Bundle:ManifestDigest", string.Equals(x.ManifestDigest, y.ManifestDigest, StringComparison.Ordinal));
            Check(changed, "Kars:Egress:Bundle:ExpectedName", string.Equals(x.ExpectedName, y.ExpectedName, StringComparison.Ordinal));
            Check(changed, "Kars:Egress:Bundle:StatePath", string.Equals(x.StatePath, y.StatePath, StringComparison.Ordinal));
            Check(changed, "Kars:Egress:Bundle:RequireTransparencyLog", x.RequireTransparencyLog == y.RequireTransparencyLog);
            Check(changed, "Kars:Egress:Bundle:RequireSignedCertificateTimestamp", x.RequireSignedCertificateTimestamp == y.RequireSignedCertificateTimestamp);
            Check(changed, "Kars:Egress:Bundle:AllowedPredicateTypes", x.AllowedPredicateTypes.SequenceEqual(y.AllowedPredicateTypes, StringComparer.Ordinal));
        }

        KarsEgressOptions p = a.Policy, q = b.Policy;
        Check(changed, "Kars:Egress:Mode", p.Mode == q.Mode);
        Check(changed, "Kars:Egress:PrivateAllow", p.PrivateAllow.SequenceEqual(q.PrivateAllow, StringComparer.Ordinal));
        Check(changed, "Kars:Egress:LearnedCapacity", p.LearnedCapacity == q.LearnedCapacity);
        Check(changed, "Kars:Egress:MaxFeedEntries", p.MaxFeedEntries == q.MaxFeedEntries);
        Check(changed, "Kars:Egress:MaxDocumentBytes", p.MaxDocumentBytes == q.MaxDocumentBytes);
        Check(changed, "Kars:Egress:MaxFeedBytes", p.MaxFeedBytes == q.MaxFeedBytes);
        Check(changed, "Kars:Egress:AllowFeedsOutsidePolicyFolder", p.AllowFeedsOutsidePolicyFolder == q.AllowFeedsOutsidePolicyFolder);
        Check(changed, "Kars:Egress:TreatOverbroadRulesAsErrors", p.TreatOverbroadRulesAsErrors == q.TreatOverbroadRulesAsErrors);
        Check(changed, "Kars:Egress:WatchInterval", p.WatchInterval == q.WatchInterval);
        Check(changed, "Kars:Egress:ReloadDelay", p.ReloadDelay == q.ReloadDelay);
        KarsBudgetStoreOptions s = inForce.Budgets.Store, t = next.Budgets.Store;
        Check(changed, "Kars:Budgets:Store:Kind", s.Kind == t.Kind);
        Check(changed, "Kars:Budgets:Store:Path", string.Equals(s.Path, t.Path, StringComparison.Ordinal));
        Check(changed, "Kars:Budgets:Store:CompactAfterRecords", s.CompactAfterRecords == t.CompactAfterRecords);
        return changed;

        static void Check(List<string> changed, string key, bool same)
        {
            if (!same)
            {
                changed.Add(key);
            }
        }
    }

    private void Reload(KarsPolicyConfigurationReload reload)
    {
        if (reload.Options is not { } next)
        {
            ExtensionsLog.RestartOptionsCheckFailed(_logger, reload.ReadFailure!);
            return;
        }

        try
        {
            List<string> changed = Changed(_inForce, next);
            if (changed.Count > 0)
            {
                ExtensionsLog.RestartOptionsChanged(_logger, string.Join(", ", changed));
            }
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // Never throw into the configuration's change callback; nothing here changes what is in force.
            ExtensionsLog.RestartOptionsCheckFailed(_logger, ex.GetType().Name);
        }
    }
}
