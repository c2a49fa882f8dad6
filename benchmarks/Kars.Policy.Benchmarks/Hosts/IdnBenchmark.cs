using System.Globalization;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Jobs;
using Kars.Policy.Egress;
using Kars.Policy.Hosts;
using Kars.Policy.Hosts.Idna;

namespace Kars.Policy.Benchmarks.Hosts;

/// <summary>
/// The bundled UTS-46 processor against the platform's <see cref="IdnMapping.GetAscii(string)"/> (ICU) on mixed IDN
/// names, in the same run. Each benchmark converts every name of <see cref="MixedNames"/> once; figures are per name.
/// </summary>
[MemoryDiagnoser]
[MedianColumn]
[SimpleJob(RuntimeMoniker.Net10_0, launchCount: 1, warmupCount: 3, iterationCount: 10)]
public class IdnBenchmark
{
    /// <summary>Fullwidth, German (ß, ü), Cyrillic, Greek, Chinese, Arabic with ZWNJ, Hebrew (Bidi), Hindi with a
    /// virama, upper case: what the mapping, NFC, CONTEXTJ and Bidi steps see.</summary>
    private static readonly string[] MixedNames =
    [
        "\uFF45\uFF58\uFF41\uFF4D\uFF50\uFF4C\uFF45.com",
        "B\u00FCcher.Example",
        "fa\u00DF.de",
        "\u0430pple.com",
        "\u03B2\u03CC\u03BB\u03BF\u03C2.gr",
        "\u4ED6\u4EEC\u4E3A\u4EC0\u4E48\u4E0D\u8BF4\u4E2D\u6587.cn",
        "\u0628\u200C\u0628.example",
        "\u05D0\u05D1\u05D2.example",
        "\u0915\u094D\u0937\u0924\u094D\u0930\u093F\u092F.in",
        "m\u00FCnchen.de",
    ];

    private const int Names = 10;

    /// <summary>The code points of <see cref="MixedNames"/> roughly as UTS-46 mapping leaves them (lower case, fullwidth
    /// to ASCII): what <see cref="Nfc.Normalize"/> sees.</summary>
    private static readonly int[][] MixedNameCodePoints =
        [.. MixedNames.Select(name => name.ToLowerInvariant().EnumerateRunes().Select(r => r.Value is >= 0xFF01 and <= 0xFF5E ? r.Value - 0xFEE0 : r.Value).ToArray())];

    private const string CanonicalPunycode = "xn--bcher-kva.example";

    private static readonly IdnMapping Platform = new() { AllowUnassigned = false, UseStd3AsciiRules = false };

    private readonly char[] buffer = new char[256];

    /// <summary>Prepares the punycode cache as a running policy would have it.</summary>
    [GlobalSetup]
    public void Setup() => DnsNames.TryNormalize(CanonicalPunycode, out _, out _);

    /// <summary>Baseline: <c>IdnMapping.GetAscii</c> (ICU), result string included.</summary>
    /// <returns>A length, so nothing is optimised away.</returns>
    [Benchmark(Baseline = true, OperationsPerInvoke = Names)]
    public int PlatformGetAscii()
    {
        int n = 0;
        foreach (string name in MixedNames)
        {
            n += Platform.GetAscii(name).Length;
        }

        return n;
    }

    /// <summary>The bundled processor into a caller buffer (what <see cref="DnsNames"/> does before creating the string).</summary>
    /// <returns>A length.</returns>
    [Benchmark(OperationsPerInvoke = Names)]
    public int BundledToAsciiIntoBuffer()
    {
        int n = 0;
        foreach (string name in MixedNames)
        {
            Uts46.ToAscii(name, buffer, out int written);
            n += written;
        }

        return n;
    }

    /// <summary>The bundled processor with the result string created, as the baseline does.</summary>
    /// <returns>A length.</returns>
    [Benchmark(OperationsPerInvoke = Names)]
    public int BundledToAsciiString()
    {
        int n = 0;
        foreach (string name in MixedNames)
        {
            Uts46.ToAscii(name, buffer, out int written);
            n += new string(buffer, 0, written).Length;
        }

        return n;
    }

    /// <summary>The whole host parse (<see cref="EgressTargetParser.TryParseHost"/>): character scan, processor,
    /// canonical-form checks, target.</summary>
    /// <returns>A length.</returns>
    [Benchmark(OperationsPerInvoke = Names)]
    public int TryParseHostIdn()
    {
        int n = 0;
        foreach (string name in MixedNames)
        {
            EgressTargetParser.TryParseHost(name, 443, out var target, out _);
            n += target.Host?.Length ?? 0;
        }

        return n;
    }

    /// <summary>NFC alone (decomposition, canonical ordering, composition) on the code points of each name, mapped to
    /// lower case as UTS-46 would first: the share of the processor's time that normalisation takes.</summary>
    /// <returns>A length.</returns>
    [Benchmark(OperationsPerInvoke = Names)]
    public int NfcOnly()
    {
        int n = 0;
        Span<int> initial = stackalloc int[64];
        foreach (int[] codePoints in MixedNameCodePoints)
        {
            var text = new CodePointBuffer(initial);
            foreach (int c in codePoints)
            {
                text.Add(c);
            }

            Nfc.Normalize(ref text);
            n += text.Length;
            text.Dispose();
        }

        return n;
    }

    /// <summary>Platform: an already canonical punycode name.</summary>
    /// <returns>A length.</returns>
    [Benchmark]
    public int PlatformGetAsciiCanonicalPunycode() => Platform.GetAscii(CanonicalPunycode).Length;

    /// <summary>Library: an already canonical punycode name (validated once, then recognised without work).</summary>
    /// <returns>A length.</returns>
    [Benchmark]
    public int TryParseHostCanonicalPunycode()
    {
        EgressTargetParser.TryParseHost(CanonicalPunycode, 443, out var target, out _);
        return target.Host.Length;
    }
}
