using System.IO.Abstractions;
using System.Net;

namespace Kars.Policy.Egress;

/// <summary>Loads a policy source (native JSON file, kars <c>allowlist.json</c> file, or kars folder) into a compiled snapshot.
/// Keeps the last good contents of each blocklist feed across loads (merged per source).</summary>
internal sealed class PolicyLoader
{
    private readonly IFileSystem _fileSystem;
    private readonly int _maxFeedEntries;
    private readonly IPNetwork[] _privateAllow;
    private readonly Dictionary<string, BlocklistFeed> _lastGoodFeeds = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();

    public PolicyLoader(IFileSystem fileSystem, KarsEgressOptions options)
    {
        _fileSystem = fileSystem;
        _maxFeedEntries = options.MaxFeedEntries;
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

        _privateAllow = [.. networks];
    }

    /// <summary>Loads and compiles. Every problem found is reported at once.</summary>
    /// <exception cref="EgressPolicyLoadException">The policy cannot be loaded.</exception>
    public CompiledPolicy Load(string path)
    {
        lock (_gate)
        {
            var problems = new List<EgressPolicyProblem>();
            PolicyModel? model = null;
            try
            {
                if (_fileSystem.Directory.Exists(path))
                {
                    model = LoadKarsFolder(path, problems);
                }
                else if (_fileSystem.File.Exists(path))
                {
                    byte[] bytes = _fileSystem.File.ReadAllBytes(path);
                    model = KarsPolicyReader.LooksLikeKarsAllowlist(bytes)
                        ? KarsPolicyReader.ReadAllowlist(bytes, path, problems)
                        : NativePolicyReader.Read(bytes, path, text => ResolveFeed(path, text), problems);
                }
                else
                {
                    problems.Add(new EgressPolicyProblem(path, "$", "no policy file or folder at this path"));
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
            {
                problems.Add(new EgressPolicyProblem(path, "$", $"cannot read the policy: {ex.Message}"));
            }

            if (model is null || problems.Count > 0)
            {
                throw new EgressPolicyLoadException(problems.Count > 0 ? problems : [new EgressPolicyProblem(path, "$", "the policy could not be read")]);
            }

            var feeds = LoadFeeds(model, problems);
            if (problems.Count > 0)
            {
                throw new EgressPolicyLoadException(problems);
            }

            return CompiledPolicy.Compile(model, feeds, _privateAllow);
        }
    }

    private string? ResolveFeed(string documentPath, string feedPath)
    {
        try
        {
            string folder = _fileSystem.Path.GetDirectoryName(_fileSystem.Path.GetFullPath(documentPath)) ?? string.Empty;
            return _fileSystem.Path.GetFullPath(_fileSystem.Path.Combine(folder, feedPath));
        }
        catch (Exception ex) when (ex is ArgumentException or NotSupportedException or PathTooLongException)
        {
            return null;
        }
    }

    private List<BlocklistFeed> LoadFeeds(PolicyModel model, List<EgressPolicyProblem> problems)
    {
        var feeds = new List<BlocklistFeed>();
        foreach (var (resolved, text) in model.FeedFiles)
        {
            try
            {
                byte[] bytes = _fileSystem.File.ReadAllBytes(resolved);
                var feed = BlocklistFeed.Parse(text, bytes, _maxFeedEntries);
                _lastGoodFeeds[resolved] = feed;
                feeds.Add(feed);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidDataException or ArgumentException or NotSupportedException)
            {
                if (_lastGoodFeeds.TryGetValue(resolved, out var lastGood))
                {
                    model.Warnings.Add(new EgressPolicyProblem(text, "$", $"the feed failed to load ({ex.Message}); its last good contents ({lastGood.Count} domains) stay in force"));
                    feeds.Add(lastGood);
                }
                else
                {
                    problems.Add(new EgressPolicyProblem(text, "$", $"the feed failed to load and has no last good contents: {ex.Message}"));
                }
            }
        }

        return feeds;
    }

    private PolicyModel? LoadKarsFolder(string folder, List<EgressPolicyProblem> problems)
    {
        if (_fileSystem.File.Exists(_fileSystem.Path.Combine(folder, "oci-layout")))
        {
            problems.Add(new EgressPolicyProblem(folder, "$", "this is an OCI image layout (a signed bundle); the egress loader reads native policy files and kars folders only", "verify and load signed bundles through the bundle loader"));
            return null;
        }

        var files = _fileSystem.Directory.GetFiles(folder, "*.json")
            .Select(f => _fileSystem.Path.GetFileName(f))
            .Order(StringComparer.Ordinal)
            .ToList();

        string? allowlist = files.Contains(KarsPolicyReader.AllowlistFileName)
            ? KarsPolicyReader.AllowlistFileName
            : files.FirstOrDefault(f => !f.StartsWith("approval-", StringComparison.Ordinal));
        if (allowlist is null)
        {
            problems.Add(new EgressPolicyProblem(folder, "$", "the folder holds no allowlist (*.json)", "add allowlist.json"));
            return null;
        }

        string allowlistPath = _fileSystem.Path.Combine(folder, allowlist);
        var model = KarsPolicyReader.ReadAllowlist(_fileSystem.File.ReadAllBytes(allowlistPath), allowlistPath, problems);
        if (model is null)
        {
            return null;
        }

        var approvalFiles = files.Where(f => f.StartsWith("approval-", StringComparison.Ordinal)).Select(f => _fileSystem.Path.Combine(folder, f)).ToList();
        string approvalsFolder = _fileSystem.Path.Combine(folder, "approvals");
        if (_fileSystem.Directory.Exists(approvalsFolder))
        {
            approvalFiles.AddRange(_fileSystem.Directory.GetFiles(approvalsFolder, "approval-*.json").Order(StringComparer.Ordinal));
        }

        foreach (string file in approvalFiles)
        {
            // A broken approval file is skipped (and reported); the others still apply (kars behaviour).
            var fileProblems = new List<EgressPolicyProblem>();
            Approval? approval = null;
            try
            {
                approval = KarsPolicyReader.ReadApproval(_fileSystem.File.ReadAllBytes(file), file, fileProblems);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                fileProblems.Add(new EgressPolicyProblem(file, "$", $"cannot read the approval: {ex.Message}"));
            }

            if (approval is null)
            {
                model.Warnings.AddRange(fileProblems);
            }
            else
            {
                model.Approvals.Add(approval);
            }
        }

        return model;
    }
}
