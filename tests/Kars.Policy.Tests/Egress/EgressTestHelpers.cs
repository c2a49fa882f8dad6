using System.IO.Abstractions.TestingHelpers;
using Kars.Policy.Egress;
using Microsoft.Extensions.Time.Testing;

namespace Kars.Policy.Tests.Egress;

internal static class EgressTestHelpers
{
    public const string PolicyPath = "/policies/policy.json";

    public static readonly DateTimeOffset Start = new(2030, 1, 1, 12, 0, 0, TimeSpan.Zero);

    /// <summary>A DNS-name target for a name that is already canonical, through the public factory (throws otherwise).</summary>
    public static EgressTarget DnsTarget(string canonicalName, int port = 443) =>
        EgressTarget.TryCreateDnsName(canonicalName, port, out var target)
            ? target
            : throw new ArgumentException($"'{canonicalName}' is not a canonical DNS name.", nameof(canonicalName));

    public static MockFileSystem FileSystemWith(string json, params (string Path, string Text)[] extra)
    {
        var fs = new MockFileSystem();
        fs.AddFile(PolicyPath, new MockFileData(json));
        foreach (var (path, text) in extra)
        {
            fs.AddFile(path, new MockFileData(text));
        }

        return fs;
    }

    public static EgressPolicy Load(string json, KarsEgressOptions? options = null, FakeTimeProvider? time = null, params (string Path, string Text)[] extra) =>
        EgressPolicy.Load(PolicyPath, options, FileSystemWith(json, extra), time ?? new FakeTimeProvider(Start));

    public static IReadOnlyList<EgressPolicyProblem> Problems(string json, params (string Path, string Text)[] extra)
    {
        var policy = new EgressPolicy(PolicyPath, null, FileSystemWith(json, extra), new FakeTimeProvider(Start));
        policy.IsLoaded.Should().BeFalse();
        return policy.LastLoadProblems;
    }

    public static string Doc(string allow, string extra = "") =>
        $$"""{"schemaVersion":1,"generation":3,"allow":[{{allow}}]{{(extra.Length > 0 ? "," + extra : string.Empty)}}}""";
}
