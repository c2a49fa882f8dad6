using System.Reflection;
using System.Runtime.CompilerServices;
using System.Text.RegularExpressions;
using Kars.Policy.Egress;

namespace Kars.Policy.Tests;

/// <summary>
/// Issue 8: no <c>InternalsVisibleTo</c> between shipped packages; only test and benchmark assemblies may see
/// internals. <c>eng/InternalsVisibleTo.targets</c> fails the build for <c>InternalsVisibleTo</c> items; these tests
/// also check the built engine assemblies and every attribute or item written anywhere under <c>src/</c> and
/// <c>eng/</c>.
/// </summary>
public sealed partial class InternalsVisibleToTests
{
    [Theory]
    [InlineData(typeof(EgressTarget))]
    [InlineData(typeof(EgressPolicy))]
    public void BuiltAssembly_GrantsInternalsOnlyToTestsAndBenchmarks(Type typeInAssembly)
    {
        var friends = typeInAssembly.Assembly.GetCustomAttributes<InternalsVisibleToAttribute>()
            .Select(a => a.AssemblyName.Split(',')[0].Trim())
            .ToList();

        friends.Should().NotBeEmpty("the test project itself is a friend");
        friends.Where(f => !IsTestOrBenchmark(f)).Should().BeEmpty();
    }

    [Fact]
    public void Sources_GrantInternalsOnlyToTestsAndBenchmarks()
    {
        string root = RepositoryRoot();
        var files = new[] { "src", "eng" }
            .SelectMany(d => Directory.EnumerateFiles(Path.Combine(root, d), "*", SearchOption.AllDirectories))
            .Where(f => f.EndsWith(".cs", StringComparison.Ordinal) || f.EndsWith("proj", StringComparison.Ordinal)
                || f.EndsWith(".props", StringComparison.Ordinal) || f.EndsWith(".targets", StringComparison.Ordinal))
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)
                && !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}", StringComparison.Ordinal))
            .ToList();
        files.Should().Contain(f => f.EndsWith("Kars.Policy.csproj", StringComparison.Ordinal));

        var offenders = new List<string>();
        foreach (string file in files)
        {
            foreach (Match match in Grant().Matches(File.ReadAllText(file)))
            {
                string friend = match.Groups["item"].Success ? match.Groups["item"].Value : match.Groups["attr"].Value;
                if (!IsTestOrBenchmark(friend.Split(',')[0].Trim()))
                {
                    offenders.Add($"{Path.GetRelativePath(root, file)}: {friend}");
                }
            }
        }

        offenders.Should().BeEmpty();
    }

    [Theory]
    [InlineData("Kars.Policy.Tests", true)]
    [InlineData("$(AssemblyName).Tests", true)]
    [InlineData("Kars.Policy.Benchmarks", true)]
    [InlineData("Kars.Policy", false)]
    [InlineData("Kars.Policy.Cli", false)]
    [InlineData("Kars.Policy.TestsHelper", false)]
    public void IsTestOrBenchmark_NamesOnlyTestAndBenchmarkAssemblies(string name, bool expected)
    {
        IsTestOrBenchmark(name).Should().Be(expected);
        Grant().IsMatch($"""<InternalsVisibleTo Include="{name}" />""").Should().BeTrue();
        Grant().IsMatch($"""[assembly: InternalsVisibleTo("{name}")]""").Should().BeTrue();
    }

    private static bool IsTestOrBenchmark(string name) =>
        name.EndsWith(".Tests", StringComparison.Ordinal) || name.EndsWith(".Benchmarks", StringComparison.Ordinal);

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Kars.Policy.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("Kars.Policy.sln not found above " + AppContext.BaseDirectory);
    }

    [GeneratedRegex("""<InternalsVisibleTo\s+Include\s*=\s*"(?<item>[^"]+)"|InternalsVisibleTo(?:Attribute)?\s*\(\s*"(?<attr>[^"]+)""")]
    private static partial Regex Grant();
}
