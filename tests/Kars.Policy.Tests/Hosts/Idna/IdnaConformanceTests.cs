using System.Globalization;
using System.Text;
using Kars.Policy.Hosts;
using Kars.Policy.Hosts.Idna;
using Xunit.Abstractions;

namespace Kars.Policy.Tests.Hosts.Idna;

/// <summary>The bundled UTS-46 processor against every line of the Unicode 17.0.0 conformance files.</summary>
public sealed class IdnaConformanceTests(ITestOutputHelper output)
{
    /// <summary>Status codes of flags that are off (docs/hosts.md): CheckHyphens (V2, V3), UseSTD3ASCIIRules (U1),
    /// VerifyDnsLength inside the processor (A4_1, A4_2; DnsNames applies its own, stricter length rule).</summary>
    private static readonly HashSet<string> FlagsOff = ["V2", "V3", "U1", "A4_1", "A4_2"];

    private static readonly Lazy<IReadOnlyList<UnicodeTestData.IdnaLine>> Lines = new(UnicodeTestData.ReadIdnaTestV2);

    [Fact]
    public void IdnaTestV2_HasEveryTestLine() => Lines.Value.Should().HaveCount(6391);

    [Fact]
    public void IdnaTestV2_Processor_ToAsciiN_MatchesEveryLine()
    {
        var failures = new List<string>();
        int passed = 0;
        int rejected = 0;
        char[] buffer = new char[16384];
        foreach (var line in Lines.Value)
        {
            bool expectError = line.ToAsciiNStatus.Any(s => !FlagsOff.Contains(s));
            Uts46Errors errors = Uts46.ToAscii(line.Source, buffer, out int written)
                & ~(Uts46Errors.Ignored | Uts46Errors.AceNotCanonical);
            string actual = new(buffer, 0, written);
            if (expectError)
            {
                if (errors == Uts46Errors.None)
                {
                    failures.Add($"line {line.LineNumber}: accepted {Show(line.Source)} -> {actual}, expected [{string.Join(", ", line.ToAsciiNStatus)}]");
                }
                else
                {
                    rejected++;
                }
            }
            else if (errors != Uts46Errors.None)
            {
                failures.Add($"line {line.LineNumber}: rejected {Show(line.Source)} ({errors}), expected {line.ToAsciiN}");
            }
            else if (!string.Equals(actual, line.ToAsciiN, StringComparison.Ordinal))
            {
                failures.Add($"line {line.LineNumber}: {Show(line.Source)} -> {Show(actual)}, expected {Show(line.ToAsciiN)}");
            }
            else
            {
                passed++;
            }
        }

        output.WriteLine($"processor: {passed} lines give exactly the expected ASCII, {rejected} lines rejected as required, {failures.Count} failures");
        failures.Take(40).Should().BeEmpty();
        failures.Should().BeEmpty();
    }

    [Fact]
    public void IdnaTestV2_DnsNames_EveryLineAcceptedExactlyOrRejectedByADocumentedRule()
    {
        var failures = new List<string>();
        int passed = 0;
        int mustReject = 0;
        var stricter = new SortedDictionary<string, int>(StringComparer.Ordinal);
        foreach (var line in Lines.Value)
        {
            bool expectError = line.ToAsciiNStatus.Any(s => !FlagsOff.Contains(s));
            DnsNameRule rule = DnsNames.Normalize(line.Source, line.Source, out string? canonical);
            if (expectError)
            {
                if (rule == DnsNameRule.Valid)
                {
                    failures.Add($"line {line.LineNumber}: accepted {Show(line.Source)} -> {canonical}");
                }
                else
                {
                    mustReject++;
                }

                continue;
            }

            if (rule == DnsNameRule.Valid)
            {
                // The canonical form drops one trailing dot (the DNS root).
                string expected = line.ToAsciiN.EndsWith('.') ? line.ToAsciiN[..^1] : line.ToAsciiN;
                if (string.Equals(canonical, expected, StringComparison.Ordinal))
                {
                    passed++;
                }
                else
                {
                    failures.Add($"line {line.LineNumber}: {Show(line.Source)} -> {canonical}, expected {expected}");
                }
            }
            else if (rule == DnsNameRule.Uts46)
            {
                failures.Add($"line {line.LineNumber}: {Show(line.Source)} rejected by UTS-46 processing, expected {line.ToAsciiN}");
            }
            else
            {
                stricter[rule.ToString()] = stricter.GetValueOrDefault(rule.ToString()) + 1;
            }
        }

        output.WriteLine($"DnsNames: {passed} lines give exactly the expected ASCII (one trailing dot removed)");
        foreach (var (rule, count) in stricter)
        {
            output.WriteLine($"DnsNames: {count} lines without a UTS-46 error rejected by the stricter rule {rule}");
        }

        output.WriteLine($"DnsNames: {mustReject} lines that must be rejected are rejected");
        failures.Take(40).Should().BeEmpty();
        failures.Should().BeEmpty();
        (passed + mustReject + stricter.Values.Sum()).Should().Be(Lines.Value.Count);
    }

    [Fact]
    public void NormalizationTest_NfcColumn_EveryLine()
    {
        var failures = new List<string>();
        var listed = new HashSet<int>();
        bool part1 = false;
        int lines = 0;
        foreach (string raw in File.ReadLines(UnicodeTestData.PathOf("NormalizationTest.txt")))
        {
            if (raw.StartsWith("@Part", StringComparison.Ordinal))
            {
                part1 = raw.StartsWith("@Part1", StringComparison.Ordinal);
                continue;
            }

            int hash = raw.IndexOf('#', StringComparison.Ordinal);
            string line = hash >= 0 ? raw[..hash] : raw;
            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }

            lines++;
            int[][] c = line.Split(';').Take(5).Select(ParseCodePoints).ToArray();
            if (part1)
            {
                listed.Add(c[0][0]);
            }

            // NFC: c2 == toNFC(c1) == toNFC(c2) == toNFC(c3); c4 == toNFC(c4) == toNFC(c5).
            Check(c[0], c[1]);
            Check(c[1], c[1]);
            Check(c[2], c[1]);
            Check(c[3], c[3]);
            Check(c[4], c[3]);
        }

        // Every code point not listed in Part 1 is its own NFC.
        int unlisted = 0;
        for (int cp = 0; cp <= 0x10FFFF; cp++)
        {
            if (cp is >= 0xD800 and <= 0xDFFF || listed.Contains(cp))
            {
                continue;
            }

            unlisted++;
            Check([cp], [cp]);
        }

        output.WriteLine($"NormalizationTest.txt: {lines} lines, 5 NFC checks each; {unlisted} unlisted code points");
        lines.Should().BeGreaterThan(19000);
        failures.Take(40).Should().BeEmpty();
        failures.Should().BeEmpty();

        void Check(int[] source, int[] expected)
        {
            int[] actual = Normalize(source);
            if (!actual.AsSpan().SequenceEqual(expected))
            {
                failures.Add($"NFC({Hex(source)}) = {Hex(actual)}, expected {Hex(expected)}");
            }
            else if (Nfc.IsNormalized(source) != source.AsSpan().SequenceEqual(expected))
            {
                failures.Add($"IsNormalized({Hex(source)}) is wrong");
            }
        }
    }

    [Theory]
    [InlineData(0x10FFFF + 1)]
    [InlineData(0xD800)]
    public void Punycode_DecodeToNonScalar_Fails(int codePoint)
    {
        // Encode the value by hand through the encoder (which does not check scalars), then decode.
        char[] encoded = new char[64];
        Punycode.TryEncode([codePoint], encoded, out int n).Should().BeTrue();
        Span<int> initial = stackalloc int[8];
        var buffer = new CodePointBuffer(initial);
        Punycode.TryDecode(encoded.AsSpan(0, n), ref buffer).Should().BeFalse();
        buffer.Dispose();
    }

    [Theory]
    [InlineData("99999999999999999999")]
    [InlineData("zzzzzzzzzzzzzzzzzzzzzzzz")]
    [InlineData("a-9999999999a")]
    public void Punycode_Overflow_Fails(string input)
    {
        Span<int> initial = stackalloc int[8];
        var buffer = new CodePointBuffer(initial);
        Punycode.TryDecode(input, ref buffer).Should().BeFalse();
        buffer.Dispose();
    }

    [Theory]
    [InlineData("bcher-kva", "bücher")]
    [InlineData("fa-hia", "faß")]
    [InlineData("mnchen-3ya", "münchen")]
    [InlineData("ihqwcrb4cv8a8dqg056pqjye", "他们为什么不说中文")]
    public void Punycode_RoundTrips(string ace, string unicode)
    {
        int[] cps = unicode.EnumerateRunes().Select(r => r.Value).ToArray();
        char[] encoded = new char[64];
        Punycode.TryEncode(cps, encoded, out int n).Should().BeTrue();
        new string(encoded, 0, n).Should().Be(ace);
        Span<int> initial = stackalloc int[64];
        var buffer = new CodePointBuffer(initial);
        Punycode.TryDecode(ace, ref buffer).Should().BeTrue();
        buffer.Span.ToArray().Should().Equal(cps);
        buffer.Dispose();
    }

    internal static int[] Normalize(int[] source)
    {
        Span<int> initial = stackalloc int[16];
        var buffer = new CodePointBuffer(initial);
        try
        {
            foreach (int c in source)
            {
                buffer.Add(c);
            }

            Nfc.Normalize(ref buffer);
            return buffer.Span.ToArray();
        }
        finally
        {
            buffer.Dispose();
        }
    }

    private static int[] ParseCodePoints(string text) =>
        text.Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Select(h => int.Parse(h, NumberStyles.HexNumber, CultureInfo.InvariantCulture)).ToArray();

    private static string Hex(int[] cps) => string.Join(' ', cps.Select(c => c.ToString("X4", CultureInfo.InvariantCulture)));

    private static string Show(string text)
    {
        var sb = new StringBuilder();
        foreach (char c in text)
        {
            sb.Append(c is >= ' ' and < (char)0x7F ? c.ToString() : $"\\u{(int)c:X4}");
        }

        return sb.ToString();
    }
}
