using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using Kars.Policy.Egress;

namespace Kars.Policy.Tests.Hosts.Idna;

/// <summary>IdnMapping, string.Normalize and NormalizationForm (ICU-backed, different in globalization-invariant mode)
/// are not on any path of the library: its metadata references none of them. eng/analyzers/BannedSymbols.txt also
/// keeps them from compiling; .ci/run runs the whole suite a second time in invariant mode.</summary>
public sealed class NoPlatformIdnaTests
{
    [Fact]
    public void PolicyAssembly_ReferencesNoIdnMappingOrNormalization()
    {
        string path = typeof(EgressTargetParser).Assembly.Location;
        using var stream = File.OpenRead(path);
        using var pe = new PEReader(stream);
        MetadataReader md = pe.GetMetadataReader();

        var typeRefs = md.TypeReferences
            .Select(h => md.GetTypeReference(h))
            .Select(t => md.GetString(t.Namespace) + "." + md.GetString(t.Name))
            .ToList();
        var memberRefs = md.MemberReferences
            .Select(h => md.GetMemberReference(h))
            .Where(m => m.Parent.Kind == HandleKind.TypeReference)
            .Select(m => TypeName(md, (TypeReferenceHandle)m.Parent) + "::" + md.GetString(m.Name))
            .ToList();

        typeRefs.Should().Contain("System.Globalization.CultureInfo", "the inspection must see the assembly's references");
        typeRefs.Should().NotContain(["System.Globalization.IdnMapping", "System.Text.NormalizationForm"]);
        memberRefs.Should().NotContain(["System.String::Normalize", "System.String::IsNormalized"]);
    }

    [Fact]
    public void BannedSymbols_ListIdnMappingAndNormalize()
    {
        string? dir = AppContext.BaseDirectory;
        while (dir is not null && !File.Exists(Path.Combine(dir, "eng", "analyzers", "BannedSymbols.txt")))
        {
            dir = Path.GetDirectoryName(dir);
        }

        dir.Should().NotBeNull("the tests run from inside the repository");
        string banned = File.ReadAllText(Path.Combine(dir!, "eng", "analyzers", "BannedSymbols.txt"));
        banned.Should().Contain("T:System.Globalization.IdnMapping;").And.Contain("M:System.String.Normalize;");
    }

    private static string TypeName(MetadataReader md, TypeReferenceHandle handle)
    {
        TypeReference t = md.GetTypeReference(handle);
        return md.GetString(t.Namespace) + "." + md.GetString(t.Name);
    }
}
