namespace Kars.Policy.Egress;

/// <summary>Options of the egress components: policy sources and snapshots (mode, trusted private ranges, feed limits,
/// watching), the <see cref="EgressPolicyMonitor"/> (reload debounce) and the <see cref="LearnedHostRecorder"/>. Every default fails closed.</summary>
/// <remarks>Each component copies (and validates) these values when it is created; changing the instance afterwards has no effect.
/// This type is mutable and not safe for concurrent modification.</remarks>
public sealed class KarsEgressOptions
{
    /// <summary>Gets or sets the mode that overrides the document's <c>mode</c>, or <see langword="null"/> to use the document's.</summary>
    /// <value>The default value is <see langword="null"/>: the document decides, and a document without <c>mode</c> is <see cref="EgressMode.Strict"/>.</value>
    public EgressMode? Mode { get; set; }

    /// <summary>Gets the CIDR prefixes (for example <c>10.20.0.0/16</c>) the host trusts even though they are non-public.
    /// An IP target inside one skips the non-public-address check; it still needs a <c>cidr</c> allow rule.</summary>
    /// <value>The default value is empty: every non-public address is denied.</value>
    public IList<string> PrivateAllow { get; } = [];

    /// <summary>Gets or sets how many distinct (sandbox, host, port) entries Learn mode records; further new entries are counted as dropped.</summary>
    /// <value>The default value is 4096.</value>
    public int LearnedCapacity { get; set; } = 4096;

    /// <summary>Gets or sets the largest number of entries one blocklist feed file may hold; a larger feed fails to load (and keeps its last good contents).</summary>
    /// <value>The default value is 2,000,000.</value>
    public int MaxFeedEntries { get; set; } = 2_000_000;

    /// <summary>Gets or sets the largest policy document or kars file (<c>allowlist.json</c>, <c>approval-*.json</c>),
    /// in bytes, that is read; a larger file is a load error. The cap is checked while reading.</summary>
    /// <value>The default value is 16 MiB.</value>
    public long MaxDocumentBytes { get; set; } = 16L * 1024 * 1024;

    /// <summary>Gets or sets the largest blocklist feed file, in bytes, that is read; a larger feed fails to load (and
    /// keeps its last good contents). The cap is checked while reading.</summary>
    /// <value>The default value is 256 MiB.</value>
    public long MaxFeedBytes { get; set; } = 256L * 1024 * 1024;

    /// <summary>Gets or sets whether <c>blocklist.files</c> may name absolute paths or paths outside the policy
    /// document's folder (through <c>..</c> or a symbolic link that leads out).</summary>
    /// <value>The default value is <see langword="false"/>: feeds must live in the policy's folder or below it
    /// (symbolic links that stay inside, such as a Kubernetes ConfigMap mount's, keep working).</value>
    public bool AllowFeedsOutsidePolicyFolder { get; set; }

    /// <summary>Gets or sets whether overbroad rules (a CIDR that opens a whole address family or a large share of it,
    /// a wildcard or kars entry on a public suffix such as <c>*.co.uk</c> or <c>*.github.io</c>) are load errors
    /// instead of warnings.</summary>
    /// <value>The default value is <see langword="false"/>: such rules load, with a warning in <see cref="EgressPolicy.Warnings"/>.</value>
    public bool TreatOverbroadRulesAsErrors { get; set; }

    /// <summary>Gets or sets how often a <see cref="DirectoryEgressPolicySource"/> checks its folder for changes (following
    /// symbolic links, so the Kubernetes ConfigMap <c>..data</c> swap is seen). Must be positive.</summary>
    /// <value>The default value is 1 second: with the default <see cref="ReloadDelay"/>, a change is in force within 2 seconds.</value>
    public TimeSpan WatchInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Gets or sets how long an <see cref="EgressPolicyMonitor"/> waits after a change notification before it
    /// reloads; further notifications in that time restart the wait, so a burst of file events causes one reload. Zero reloads at once.</summary>
    /// <value>The default value is 250 milliseconds.</value>
    public TimeSpan ReloadDelay { get; set; } = TimeSpan.FromMilliseconds(250);
}
