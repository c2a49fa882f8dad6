using System.Net;

namespace Kars.Policy.Egress;

/// <summary>The validated, copied part of <see cref="KarsEgressOptions"/> that shapes a compiled snapshot: the mode
/// override, the trusted private prefixes and the feed limit. Immutable.</summary>
internal sealed class EgressCompileSettings
{
    private EgressCompileSettings(EgressMode? mode, IPNetwork[] privateAllow, int maxFeedEntries, bool overbroadIsError)
    {
        Mode = mode;
        PrivateAllow = privateAllow;
        MaxFeedEntries = maxFeedEntries;
        OverbroadIsError = overbroadIsError;
    }

    public static EgressCompileSettings Default { get; } = From(null);

    public EgressMode? Mode { get; }

    public IPNetwork[] PrivateAllow { get; }

    public int MaxFeedEntries { get; }

    /// <summary>Whether overbroad rules are load errors (<see cref="KarsEgressOptions.TreatOverbroadRulesAsErrors"/>).</summary>
    public bool OverbroadIsError { get; }

    /// <summary>Validates and copies the options.</summary>
    /// <exception cref="ArgumentException">An option is invalid; the message lists every problem.</exception>
    public static EgressCompileSettings From(KarsEgressOptions? options)
    {
        options ??= new KarsEgressOptions();
        if (options.MaxFeedEntries < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxFeedEntries, "KarsEgressOptions.MaxFeedEntries must be positive.");
        }

        if (options.Mode is { } mode && !Enum.IsDefined(mode))
        {
            throw new ArgumentOutOfRangeException(nameof(options), mode, "KarsEgressOptions.Mode must be Strict or Learn.");
        }

        var problems = new List<EgressPolicyProblem>();
        var networks = new List<IPNetwork>();
        for (int i = 0; i < options.PrivateAllow.Count; i++)
        {
            if (HostPatterns.TryParseCidr(options.PrivateAllow[i] ?? string.Empty, out var network, out string? error, out string? suggestion))
            {
                networks.Add(network);
            }
            else
            {
                problems.Add(new EgressPolicyProblem("options", $"PrivateAllow[{i}]", error!, suggestion));
            }
        }

        if (problems.Count > 0)
        {
            throw new ArgumentException(new EgressPolicyLoadException(problems).Message, nameof(options));
        }

        return new EgressCompileSettings(options.Mode, [.. networks], options.MaxFeedEntries, options.TreatOverbroadRulesAsErrors);
    }

    /// <summary>Validates the timing options a watcher or monitor reads.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An interval is out of range.</exception>
    public static void ValidateTiming(KarsEgressOptions options)
    {
        if (options.WatchInterval <= TimeSpan.Zero || options.WatchInterval > TimeSpan.FromDays(1))
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.WatchInterval, "KarsEgressOptions.WatchInterval must be positive and at most one day.");
        }

        if (options.ReloadDelay < TimeSpan.Zero || options.ReloadDelay > TimeSpan.FromHours(1))
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.ReloadDelay, "KarsEgressOptions.ReloadDelay must be between zero and one hour.");
        }
    }
}
