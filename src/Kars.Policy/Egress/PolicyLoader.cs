using System.IO.Abstractions;
using System.Net;
using Kars.Policy.Internal;

namespace Kars.Policy.Egress;

/// <summary>Loads a policy source (native JSON file, kars <c>allowlist.json</c> file, or kars folder) into a compiled snapshot.
/// Keeps the last good contents of each blocklist feed across loads (merged per source).</summary>
internal sealed class PolicyLoader
{
    private readonly IFileSystem _fileSystem;
    private readonly int _maxFeedEntries;
    private readonly long _maxDocumentBytes;
    private readonly long _maxFeedBytes;
    private readonly bool _feedsMayLeaveFolder;
    private readonly bool _overbroadIsError;
    private readonly IPNetwork[] _privateAllow;
    private readonly Dictionary<string, BlocklistFeed> _lastGoodFeeds = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();

    public PolicyLoader(IFileSystem fileSystem, KarsEgressOptions options)
    {
        _fileSystem = fileSystem;
        _maxFeedEntries = options.MaxFeedEntries;
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MaxDocumentBytes, "options.MaxDocumentBytes");
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(options.MaxFeedBytes, "options.MaxFeedBytes");
        _maxDocumentBytes = options.MaxDocumentBytes;
        _maxFeedBytes = options.MaxFeedBytes;
        _feedsMayLeaveFolder = options.AllowFeedsOutsidePolicyFolder;
        _overbroadIsError = options.TreatOverbroadRulesAsErrors;
        // One validation of the options for every path (PrivateAllow CIDRs, mode, entry cap): the in-memory compile uses it too.
        _privateAllow = EgressCompileSettings.From(options).PrivateAllow;
    }

    /// <summary>Loads and compiles. Every problem found is reported at once.</summary>
    /// <exception cref="EgressPolicyLoadException">The policy cannot be loaded.</exception>
    public CompiledPolicy Load(string path)
    {
        lock (_gate)
        {
            var problems = new List<EgressPolicyProblem>();
            var overbroad = new List<EgressPolicyProblem>();
            PolicyModel? model = null;
            try
            {
                if (_fileSystem.Directory.Exists(path))
                {
                    model = LoadKarsFolder(path, problems, overbroad);
                }
                else
                {
                    var read = BoundedFile.Read(_fileSystem, path, _maxDocumentBytes);
                    if (read.Error == FileReadError.NotFound)
                    {
                        problems.Add(new EgressPolicyProblem(path, "$", "no policy file or folder at this path"));
                    }
                    else if (!read.IsSuccess)
                    {
                        problems.Add(new EgressPolicyProblem(path, "$", $"cannot read the policy: the file {read.Message}"));
                    }
                    else
                    {
                        byte[] bytes = read.Bytes!;
                        model = KarsPolicyReader.LooksLikeKarsAllowlist(bytes)
                            ? KarsPolicyReader.ReadAllowlist(bytes, path, problems, overbroad)
                            : NativePolicyReader.Read(bytes, path, text => ResolveFeed(path, text), problems, overbroad);
                    }
                }
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
            {
                problems.Add(new EgressPolicyProblem(path, "$", $"cannot read the policy: {ex.Message}"));
            }

            // Overbroad rules load with a warning, or are errors when the options say so (reported with the others).
            if (_overbroadIsError)
            {
                problems.AddRange(overbroad);
            }
            else
            {
                model?.Warnings.AddRange(overbroad);
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

    /// <summary>Resolves a feed path against the document's folder; it may not leave the folder unless the options allow it.</summary>
    private FeedPath ResolveFeed(string documentPath, string feedPath)
    {
        try
        {
            string folder = _fileSystem.Path.GetDirectoryName(_fileSystem.Path.GetFullPath(documentPath)) ?? string.Empty;
            return ConfinedPath.TryResolve(_fileSystem, folder, feedPath, _feedsMayLeaveFolder, out string full, out string? error)
                ? new FeedPath(full, null)
                : new FeedPath(null, error);
        }
        catch (Exception ex) when (ex is ArgumentException or NotSupportedException or PathTooLongException)
        {
            return new FeedPath(null, ex.Message);
        }
    }

    private List<BlocklistFeed> LoadFeeds(PolicyModel model, List<EgressPolicyProblem> problems)
    {
        var feeds = new List<BlocklistFeed>();
        foreach (var (resolved, text) in model.FeedFiles)
        {
            string? failure;
            try
            {
                var read = BoundedFile.Read(_fileSystem, resolved, _maxFeedBytes);
                if (read.IsSuccess)
                {
                    var feed = BlocklistFeed.Parse(text, read.Bytes, _maxFeedEntries);
                    _lastGoodFeeds[resolved] = feed;
                    feeds.Add(feed);
                    continue;
                }

                failure = $"the file {read.Message}";
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or InvalidDataException or ArgumentException or NotSupportedException)
            {
                failure = ex.Message;
            }

            if (_lastGoodFeeds.TryGetValue(resolved, out var lastGood))
            {
                model.Warnings.Add(new EgressPolicyProblem(text, "$", $"the feed failed to load ({failure}); its last good contents ({lastGood.Count} domains) stay in force"));
                feeds.Add(lastGood);
            }
            else
            {
                problems.Add(new EgressPolicyProblem(text, "$", $"the feed failed to load and has no last good contents: {failure}"));
            }
        }

        return feeds;
    }

    private PolicyModel? LoadKarsFolder(string folder, List<EgressPolicyProblem> problems, List<EgressPolicyProblem> overbroad)
    {
        if (_fileSystem.File.Exists(_fileSystem.Path.Combine(folder, "oci-layout")))
        {
            problems.Add(new EgressPolicyProblem(folder, "$", "this is an OCI image layout (a signed bundle); the egress loader reads native policy files and kars folders only", "load a signed bundle through OciBundleEgressPolicySource, or evaluate it with kars-policy eval --policy DIR and the verify options"));
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
        var allowlistRead = BoundedFile.Read(_fileSystem, allowlistPath, _maxDocumentBytes);
        if (!allowlistRead.IsSuccess)
        {
            problems.Add(new EgressPolicyProblem(allowlistPath, "$", $"cannot read the allowlist: the file {allowlistRead.Message}"));
            return null;
        }

        var model = KarsPolicyReader.ReadAllowlist(allowlistRead.Bytes!, allowlistPath, problems, overbroad);
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
            // A broken approval file is skipped and reported in Warnings (the CLI prints them); the others still apply
            // (kars behaviour, gap 8). Skipping an approval can only take access away.
            var fileProblems = new List<EgressPolicyProblem>();
            Approval? approval = null;
            var read = BoundedFile.Read(_fileSystem, file, _maxDocumentBytes);
            if (read.IsSuccess)
            {
                approval = KarsPolicyReader.ReadApproval(read.Bytes!, file, fileProblems, overbroad);
            }
            else
            {
                fileProblems.Add(new EgressPolicyProblem(file, "$", $"cannot read the approval: the file {read.Message}"));
            }

            if (approval is null)
            {
                model.Warnings.AddRange(fileProblems.Select(p => new EgressPolicyProblem(p.Source, p.Path, "approval file skipped: " + p.Message, p.Suggestion)));
            }
            else
            {
                model.Approvals.Add(approval);
            }
        }

        return model;
    }
}

/// <summary>A feed path resolved against the policy's folder, or why it was refused.</summary>
internal readonly record struct FeedPath(string? FullPath, string? Error);
