using System.Text;
using Kars.Policy.Bundles;
using Kars.Policy.Egress;

namespace Kars.Policy.Tests.Bundles;

/// <summary>Issue 10: the strict kars canonical EgressAllowlist YAML v1 parser: valid documents, and one test per rule.</summary>
public class KarsAllowlistYamlTests
{
    private const string Valid = """
        apiVersion: kars.dev/v1alpha1
        kind: EgressAllowlist
        metadata:
          generation: 1
        spec:
          endpoints:
            - host: api.github.com
              port: 443
            - host: registry.npmjs.org
              port: 443

        """;

    private static KarsAllowlistParseResult Parse(string text) => KarsAllowlistYaml.Parse(Encoding.UTF8.GetBytes(text));

    private static string Doc(string endpoints, string metadata = "  generation: 1\n") =>
        $"apiVersion: kars.dev/v1alpha1\nkind: EgressAllowlist\nmetadata:\n{metadata}spec:\n  endpoints:\n{endpoints}";

    private static string Entry(string host, string port = "443") => $"    - host: {host}\n      port: {port}\n";

    private static void ShouldFailWith(string text, string expected, int? line = null)
    {
        var result = Parse(text);
        result.IsValid.Should().BeFalse();
        result.Failure.Should().Be(KarsAllowlistFailure.CanonicalFormViolation);
        result.Violations.Should().Contain(v => v.Message.Contains(expected, StringComparison.Ordinal) && (line == null || v.Line == line),
            $"the violations were: {string.Join(" | ", result.Violations)}");
    }

    [Fact]
    public void Parse_KarsTwoEndpointDocument_IsValid()
    {
        var result = Parse(Valid);

        result.IsValid.Should().BeTrue(string.Join(" | ", result.Violations));
        result.Failure.Should().Be(KarsAllowlistFailure.None);
        result.Generation.Should().Be(1);
        result.Endpoints.Select(e => (e.Host, e.Port)).Should().Equal(("api.github.com", 443), ("registry.npmjs.org", 443));
    }

    [Fact]
    public void Parse_NameSamePortsEmptyListAndDocumentStart_AreValid()
    {
        Parse("---\n" + Doc(Entry("a.example.com", "80") + Entry("a.example.com", "443"), "  name: my-sandbox\n  generation: 18446744073709551\n")).IsValid.Should().BeTrue();
        Parse("apiVersion: kars.dev/v1alpha1\nkind: EgressAllowlist\nmetadata:\n  generation: 2\nspec:\n  endpoints: []\n").IsValid.Should().BeTrue();
    }

    [Fact]
    public void ToPolicyModel_HostsCoverSubdomainsAsInKars()
    {
        var model = KarsAllowlistYaml.ToPolicyModel(Parse(Doc(Entry("a.example.com", "80") + Entry("a.example.com", "443") + Entry("github.io"))), "sha256:00", "bundle");

        model.Generation.Should().Be(1);
        model.Mode.Should().Be(EgressMode.Strict);
        model.NameRules.Should().HaveCount(2);
        model.NameRules[0].Scope.Should().Be(NameScope.Subtree);
        model.NameRules[0].Ports.ToString().Should().Be("80,443");
        model.Warnings.Should().ContainSingle().Which.Message.Should().Contain("public suffix \"github.io\"");
    }

    [Fact]
    public void Parse_Crlf_Violation() => ShouldFailWith(Valid.Replace("\n", "\r\n", StringComparison.Ordinal), "CRLF line endings forbidden");

    [Fact]
    public void Parse_NoTrailingNewline_Violation() => ShouldFailWith(Valid.TrimEnd('\n'), "missing trailing newline");

    [Fact]
    public void Parse_TwoTrailingNewlines_Violation() => ShouldFailWith(Valid + "\n", "more than one trailing newline");

    [Fact]
    public void Parse_Comment_Violation() => ShouldFailWith("# header\n" + Valid, "comments forbidden", 1);

    [Fact]
    public void Parse_IndentedComment_Violation() => ShouldFailWith(Valid.Replace("spec:\n", "spec:\n  # note\n", StringComparison.Ordinal), "comments forbidden", 6);

    [Fact]
    public void Parse_Tab_Violation() => ShouldFailWith(Valid.Replace("  generation", "\tgeneration", StringComparison.Ordinal), "tabs");

    [Fact]
    public void Parse_BlankLine_Violation() => ShouldFailWith(Valid.Replace("spec:", "\nspec:", StringComparison.Ordinal), "empty lines");

    [Fact]
    public void Parse_KindBeforeApiVersion_Violation() =>
        ShouldFailWith("kind: EgressAllowlist\napiVersion: kars.dev/v1alpha1\nmetadata:\n  generation: 1\nspec:\n  endpoints: []\n", "out of order");

    [Fact]
    public void Parse_MissingSpec_Violation() =>
        ShouldFailWith("apiVersion: kars.dev/v1alpha1\nkind: EgressAllowlist\nmetadata:\n  generation: 1\n", "top-level keys missing or out of order");

    [Fact]
    public void Parse_UnknownTopLevelKey_Violation() => ShouldFailWith(Valid + "status: ok\n", "unknown top-level key \"status\"");

    [Fact]
    public void Parse_WrongApiVersion_Violation() => ShouldFailWith(Valid.Replace("kars.dev/v1alpha1", "kars.dev/v1", StringComparison.Ordinal), "apiVersion must be", 1);

    [Fact]
    public void Parse_WrongKind_Violation() => ShouldFailWith(Valid.Replace("EgressAllowlist", "InferencePolicy", StringComparison.Ordinal), "kind must be", 2);

    [Fact]
    public void Parse_MissingGeneration_Violation() => ShouldFailWith(Doc(Entry("a.example.com"), metadata: "  name: x\n"), "generation is missing");

    [Fact]
    public void Parse_GenerationZero_Violation() => ShouldFailWith(Doc(Entry("a.example.com"), metadata: "  generation: 0\n"), "generation must be > 0", 4);

    [Theory]
    [InlineData("-1")]
    [InlineData("01")]
    [InlineData("1.0")]
    [InlineData("\"1\"")]
    [InlineData("99999999999999999999")]
    public void Parse_GenerationNotAPlainInteger_Violation(string generation) =>
        ShouldFailWith(Doc(Entry("a.example.com"), metadata: $"  generation: {generation}\n"), "generation must be a plain unsigned integer");

    [Fact]
    public void Parse_Unsorted_Violation() => ShouldFailWith(Doc(Entry("b.example.com") + Entry("a.example.com")), "not sorted", 9);

    [Fact]
    public void Parse_UnsortedPorts_Violation() => ShouldFailWith(Doc(Entry("a.example.com", "443") + Entry("a.example.com", "80")), "not sorted");

    [Fact]
    public void Parse_Duplicate_Violation() => ShouldFailWith(Doc(Entry("a.example.com") + Entry("a.example.com")), "duplicate entry");

    [Fact]
    public void Parse_Wildcard_Violation() => ShouldFailWith(Doc(Entry("'*.example.com'")), "wildcards are not allowed");

    [Fact]
    public void Parse_PlainWildcard_Violation() => ShouldFailWith(Doc(Entry("*.example.com")), "wildcards are not allowed");

    [Fact]
    public void Parse_Uppercase_Violation() => ShouldFailWith(Doc(Entry("API.example.com")), "invalid byte 'A'");

    [Fact]
    public void Parse_TrailingDot_Violation() => ShouldFailWith(Doc(Entry("example.com.")), "trailing dot");

    [Fact]
    public void Parse_LeadingDot_Violation() => ShouldFailWith(Doc(Entry(".example.com")), "leading dot");

    [Fact]
    public void Parse_EmptyLabel_Violation() => ShouldFailWith(Doc(Entry("a..example.com")), "empty label");

    [Fact]
    public void Parse_SingleLabelOrIp_Violation()
    {
        ShouldFailWith(Doc(Entry("localhost")), "single-label");
        ShouldFailWith(Doc(Entry("1.2.3.4")), "IP address");
    }

    [Theory]
    [InlineData("0")]
    [InlineData("65536")]
    [InlineData("99999")]
    [InlineData("0443")]
    [InlineData("https")]
    public void Parse_BadPort_Violation(string port) => ShouldFailWith(Doc(Entry("a.example.com", port)), "port must be an integer in 1..65535");

    [Fact]
    public void Parse_ExtraKeyProtocol_Violation() =>
        ShouldFailWith(Doc("    - host: a.example.com\n      port: 443\n      protocol: tcp\n"), "exactly the keys host then port");

    [Fact]
    public void Parse_PortBeforeHost_Violation() =>
        ShouldFailWith(Doc("    - port: 443\n      host: a.example.com\n"), "key order");

    [Fact]
    public void Parse_FlowStyle_Violation() =>
        ShouldFailWith(Doc(string.Empty).Replace("  endpoints:\n", "  endpoints: [{host: a.example.com, port: 443}]\n", StringComparison.Ordinal), "block sequence");

    [Fact]
    public void Parse_InvalidUtf8_Violation()
    {
        byte[] bytes = Encoding.UTF8.GetBytes(Valid);
        bytes[^3] = 0xFF;

        var result = KarsAllowlistYaml.Parse(bytes);

        result.Violations.Should().ContainSingle().Which.Message.Should().Contain("not valid UTF-8");
    }

    [Fact]
    public void Parse_ManyViolations_ReportsEveryOneInLineOrder()
    {
        var result = Parse("# c\napiVersion: v2\nkind: EgressAllowlist\nmetadata:\n  generation: 0\nspec:\n  endpoints:\n" + Entry("B.example.com") + Entry(".a.example.com"));

        result.Violations.Select(v => v.Line).Should().BeInAscendingOrder();
        result.Violations.Should().HaveCountGreaterThanOrEqualTo(5);
    }

    [Fact]
    public void Parse_StrayIndentedLine_Violation() =>
        ShouldFailWith(Valid.Replace("kind: EgressAllowlist\n", "kind: EgressAllowlist\n  extra: 1\n", StringComparison.Ordinal), "unexpected indented");
}
