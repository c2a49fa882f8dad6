// Generates the Unicode tables of the bundled UTS-46 processor (src/Kars.Policy/Hosts/Idna/*.g.cs) from the raw
// Unicode data files. Usage: dotnet run --project eng/UnicodeTables -- <unicode-data-dir> <output-dir> <version>
// See eng/UnicodeTables/README.md.
using System.Globalization;
using System.Text;

if (args.Length != 3)
{
    Console.Error.WriteLine("usage: UnicodeTables <unicode-data-dir> <output-dir> <unicode-version>");
    return 2;
}

string dataDir = args[0];
string outDir = args[1];
string version = args[2];
const int MaxCodePoint = 0x10FFFF;

// ---------------------------------------------------------------------------------------------------------------
// Parsing helpers.
IEnumerable<string[]> ReadFields(string file)
{
    foreach (string raw in File.ReadLines(Path.Combine(dataDir, file)))
    {
        int hash = raw.IndexOf('#');
        string line = (hash >= 0 ? raw[..hash] : raw).Trim();
        if (line.Length == 0)
        {
            continue;
        }

        yield return line.Split(';').Select(f => f.Trim()).ToArray();
    }
}

(int First, int Last) ParseRange(string text)
{
    int dots = text.IndexOf("..", StringComparison.Ordinal);
    return dots < 0
        ? (Hex(text), Hex(text))
        : (Hex(text[..dots]), Hex(text[(dots + 2)..]));
}

static int Hex(string text) => int.Parse(text, NumberStyles.HexNumber, CultureInfo.InvariantCulture);

static int[] CodePoints(string text) =>
    text.Length == 0 ? [] : text.Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(Hex).ToArray();

// ---------------------------------------------------------------------------------------------------------------
// UnicodeData.txt: ccc, general category (marks), canonical decompositions.
var ccc = new byte[MaxCodePoint + 1];
var isMark = new bool[MaxCodePoint + 1];
var canonicalDecomposition = new Dictionary<int, int[]>();
{
    int rangeStart = -1;
    foreach (string[] f in ReadFields("UnicodeData.txt"))
    {
        int cp = Hex(f[0]);
        string name = f[1];
        string gc = f[2];
        byte cc = byte.Parse(f[3], CultureInfo.InvariantCulture);
        int first = cp;
        if (name.EndsWith(", First>", StringComparison.Ordinal))
        {
            rangeStart = cp;
            continue;
        }

        if (name.EndsWith(", Last>", StringComparison.Ordinal))
        {
            first = rangeStart;
        }

        for (int c = first; c <= cp; c++)
        {
            ccc[c] = cc;
            isMark[c] = gc is "Mn" or "Mc" or "Me";
        }

        if (f[5].Length > 0 && !f[5].StartsWith('<'))
        {
            canonicalDecomposition[cp] = CodePoints(f[5]);
        }
    }
}

var fullCompositionExclusion = new HashSet<int>();
foreach (string[] f in ReadFields("DerivedNormalizationProps.txt"))
{
    if (f.Length >= 2 && f[1] == "Full_Composition_Exclusion")
    {
        var (a, b) = ParseRange(f[0]);
        for (int c = a; c <= b; c++)
        {
            fullCompositionExclusion.Add(c);
        }
    }
}

int[] FullDecomposition(int cp)
{
    if (!canonicalDecomposition.TryGetValue(cp, out int[]? d))
    {
        return [cp];
    }

    return d.SelectMany(FullDecomposition).ToArray();
}

// ---------------------------------------------------------------------------------------------------------------
// IdnaMappingTable.txt: status and mapping per code point.
const int Valid = 0, Ignored = 1, Deviation = 2, Disallowed = 3, Mapped = 4, MappedDelta = 5;
var idnaStatus = new int[MaxCodePoint + 1];
var idnaMapping = new string?[MaxCodePoint + 1];
Array.Fill(idnaStatus, -1);
foreach (string[] f in ReadFields("IdnaMappingTable.txt"))
{
    var (a, b) = ParseRange(f[0]);
    int status = f[1] switch
    {
        "valid" => Valid,
        "ignored" => Ignored,
        "deviation" => Deviation,
        "disallowed" => Disallowed,
        "mapped" => Mapped,
        _ => throw new InvalidDataException($"unknown IDNA status '{f[1]}' at {f[0]}"),
    };
    string? mapping = status == Mapped ? string.Concat(CodePoints(f[2]).Select(char.ConvertFromUtf32)) : null;
    for (int c = a; c <= b; c++)
    {
        idnaStatus[c] = status;
        idnaMapping[c] = mapping;
    }
}

for (int c = 0; c <= MaxCodePoint; c++)
{
    if (idnaStatus[c] < 0)
    {
        throw new InvalidDataException($"IdnaMappingTable.txt does not cover U+{c:X4}");
    }
}

// Ranges: consecutive code points with the same status and (for single-code-point mappings) the same delta merge.
var idnaStarts = new List<int>();
var idnaValues = new List<int>();
var mappingChars = new StringBuilder();
var mappingOffsets = new Dictionary<string, int>(StringComparer.Ordinal);
int previousKey = int.MinValue;
string? previousMapping = null;
for (int c = 0; c <= MaxCodePoint; c++)
{
    int status = idnaStatus[c];
    string? mapping = idnaMapping[c];
    int value;
    int key;
    if (status == Mapped && mapping!.EnumerateRunes().Count() == 1)
    {
        int delta = Rune.GetRuneAt(mapping, 0).Value - c;
        value = MappedDelta | (delta << 3);
        key = value;
    }
    else if (status == Mapped)
    {
        if (!mappingOffsets.TryGetValue(mapping!, out int offset))
        {
            offset = mappingChars.Length;
            mappingOffsets[mapping!] = offset;
            mappingChars.Append(mapping);
        }

        if (mapping!.Length > 31)
        {
            throw new InvalidDataException($"mapping of U+{c:X4} is longer than 31 UTF-16 code units");
        }

        value = Mapped | (mapping.Length << 3) | (offset << 8);
        key = value;
        if (string.Equals(mapping, previousMapping, StringComparison.Ordinal) && previousKey == key)
        {
            continue;
        }
    }
    else
    {
        value = status;
        key = status;
    }

    if (key != previousKey || status == Mapped)
    {
        idnaStarts.Add(c);
        idnaValues.Add(value);
    }

    previousKey = key;
    previousMapping = mapping;
}

// ---------------------------------------------------------------------------------------------------------------
// Bidi classes and joining types.
string[] bidiNames = ["L", "R", "AL", "EN", "ES", "ET", "AN", "CS", "NSM", "BN", "ON", "B", "S", "WS", "LRE", "LRO", "RLE", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI"];
var bidi = new byte[MaxCodePoint + 1];
var bidiSeen = new bool[MaxCodePoint + 1];
foreach (string[] f in ReadFields("DerivedBidiClass.txt"))
{
    var (a, b) = ParseRange(f[0]);
    int index = Array.IndexOf(bidiNames, f[1]);
    if (index < 0)
    {
        throw new InvalidDataException($"unknown bidi class '{f[1]}'");
    }

    for (int c = a; c <= b; c++)
    {
        bidi[c] = (byte)index;
        bidiSeen[c] = true;
    }
}

if (Array.IndexOf(bidiSeen, false) >= 0)
{
    throw new InvalidDataException("DerivedBidiClass.txt does not list every code point");
}

string[] joiningNames = ["U", "C", "D", "L", "R", "T"];
var joining = new byte[MaxCodePoint + 1];
foreach (string[] f in ReadFields("DerivedJoiningType.txt"))
{
    var (a, b) = ParseRange(f[0]);
    int index = Array.IndexOf(joiningNames, f[1]);
    if (index < 0)
    {
        throw new InvalidDataException($"unknown joining type '{f[1]}'");
    }

    for (int c = a; c <= b; c++)
    {
        joining[c] = (byte)index;
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Normalization: decompositions (full, recursive), primary composites.
var decompositionKeys = canonicalDecomposition.Keys.Order().ToList();
var decompositionIndex = new List<int>();
var decompositionData = new List<int>();
foreach (int cp in decompositionKeys)
{
    int[] full = FullDecomposition(cp);
    if (full.Length > 15)
    {
        throw new InvalidDataException($"decomposition of U+{cp:X4} is too long");
    }

    decompositionIndex.Add((decompositionData.Count << 4) | full.Length);
    decompositionData.AddRange(full);
}

var compositions = new SortedDictionary<long, int>();
foreach (var (cp, d) in canonicalDecomposition)
{
    if (d.Length == 2 && !fullCompositionExclusion.Contains(cp))
    {
        compositions.Add(((long)d[0] << 21) | (uint)d[1], cp);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Emit.
(List<int> Starts, List<byte> Values) Ranges(byte[] perCodePoint)
{
    var starts = new List<int>();
    var values = new List<byte>();
    for (int c = 0; c <= MaxCodePoint; c++)
    {
        if (c == 0 || perCodePoint[c] != perCodePoint[c - 1])
        {
            starts.Add(c);
            values.Add(perCodePoint[c]);
        }
    }

    return (starts, values);
}

List<int> Boundaries(bool[] set)
{
    // Even index: first code point in the set; odd index: first code point after it.
    var list = new List<int>();
    bool inside = false;
    for (int c = 0; c <= MaxCodePoint; c++)
    {
        if (set[c] != inside)
        {
            list.Add(c);
            inside = set[c];
        }
    }

    return list;
}

static string Join<T>(IEnumerable<T> values, Func<T, string> format, int perLine = 12)
{
    var sb = new StringBuilder();
    int i = 0;
    foreach (T v in values)
    {
        sb.Append(i % perLine == 0 ? "\n            " : " ").Append(format(v)).Append(',');
        i++;
    }

    return sb.ToString();
}

static string H(int v) => v < 0 ? "-0x" + (-v).ToString("X", CultureInfo.InvariantCulture) : "0x" + v.ToString("X", CultureInfo.InvariantCulture);

string header = $"""
// <auto-generated>
// Generated by eng/UnicodeTables from the Unicode {version} data files (Unicode License v3,
// https://www.unicode.org/license.txt). Do not edit: run the generator (eng/UnicodeTables/README.md).
// </auto-generated>
#pragma warning disable SA1000, SA1001, SA1025, SA1137, IDE0055 // generated layout
""";

void Write(string fileName, string body)
{
    string text = header + "\n\nnamespace Kars.Policy.Hosts.Idna;\n\n" + body;
    File.WriteAllText(Path.Combine(outDir, fileName), text.ReplaceLineEndings("\n"), new UTF8Encoding(false));
    Console.WriteLine($"wrote {fileName} ({text.Length:N0} characters)");
}

Write("UnicodeTables.Idna.g.cs", $$"""
internal static partial class UnicodeTables
{
    /// <summary>The Unicode version of every table in this class.</summary>
    public const string UnicodeVersion = "{{version}}";

    /// <summary>First code point of each IDNA mapping range ({{idnaStarts.Count}} ranges, covering 0..10FFFF).</summary>
    private static ReadOnlySpan<int> IdnaStarts => [{{Join(idnaStarts, H)}}
        ];

    /// <summary>Per range: status (bits 0-2: 0 valid, 1 ignored, 2 deviation, 3 disallowed, 4 mapped, 5 mapped by
    /// delta); for mapped, UTF-16 length (bits 3-7) and offset into <see cref="IdnaMappingChars"/> (bits 8+); for
    /// mapped by delta, the signed code point delta (bits 3+).</summary>
    private static ReadOnlySpan<int> IdnaValues => [{{Join(idnaValues, H)}}
        ];

    /// <summary>The UTF-16 text of every multi-code-point mapping ({{mappingChars.Length}} code units).</summary>
    private static ReadOnlySpan<char> IdnaMappingChars => [{{Join(mappingChars.ToString(), ch => $"'\\u{(int)ch:X4}'", 10)}}
        ];
}

""");

var (cccStarts, cccValues) = Ranges(ccc);
var (bidiStarts, bidiValues) = Ranges(bidi);
var (joinStarts, joinValues) = Ranges(joining);
List<int> markBoundaries = Boundaries(isMark);
Write("UnicodeTables.Normalization.g.cs", $$"""
internal static partial class UnicodeTables
{
    /// <summary>First code point of each Canonical_Combining_Class range ({{cccStarts.Count}} ranges).</summary>
    private static ReadOnlySpan<int> CccStarts => [{{Join(cccStarts, H)}}
        ];

    /// <summary>Canonical_Combining_Class of each range.</summary>
    private static ReadOnlySpan<byte> CccValues => [{{Join(cccValues, v => v.ToString(CultureInfo.InvariantCulture), 24)}}
        ];

    /// <summary>Code points with a canonical decomposition (Hangul syllables excluded), sorted.</summary>
    private static ReadOnlySpan<int> DecompositionKeys => [{{Join(decompositionKeys, H)}}
        ];

    /// <summary>Per key: offset into <see cref="DecompositionData"/> (bits 4+) and length (bits 0-3) of the full
    /// (recursive) canonical decomposition.</summary>
    private static ReadOnlySpan<int> DecompositionIndex => [{{Join(decompositionIndex, H)}}
        ];

    /// <summary>Full canonical decompositions, concatenated.</summary>
    private static ReadOnlySpan<int> DecompositionData => [{{Join(decompositionData, H)}}
        ];

    /// <summary>Primary composites: key <c>(first &lt;&lt; 21) | second</c>, sorted ({{compositions.Count}} pairs).</summary>
    private static ReadOnlySpan<long> CompositionKeys => [{{Join(compositions.Keys, k => H((int)(k >> 21)) + "L << 21 | " + H((int)(k & 0x1FFFFF)), 4)}}
        ];

    /// <summary>The composite of each pair in <see cref="CompositionKeys"/>.</summary>
    private static ReadOnlySpan<int> CompositionValues => [{{Join(compositions.Values, H)}}
        ];
}

""");

Write("UnicodeTables.Properties.g.cs", $$"""
internal static partial class UnicodeTables
{
    /// <summary>First code point of each Bidi_Class range ({{bidiStarts.Count}} ranges).</summary>
    private static ReadOnlySpan<int> BidiStarts => [{{Join(bidiStarts, H)}}
        ];

    /// <summary>Bidi_Class of each range, as <see cref="BidiClass"/>.</summary>
    private static ReadOnlySpan<byte> BidiValues => [{{Join(bidiValues, v => v.ToString(CultureInfo.InvariantCulture), 24)}}
        ];

    /// <summary>First code point of each Joining_Type range ({{joinStarts.Count}} ranges).</summary>
    private static ReadOnlySpan<int> JoiningStarts => [{{Join(joinStarts, H)}}
        ];

    /// <summary>Joining_Type of each range, as <see cref="JoiningType"/>.</summary>
    private static ReadOnlySpan<byte> JoiningValues => [{{Join(joinValues, v => v.ToString(CultureInfo.InvariantCulture), 24)}}
        ];

    /// <summary>General_Category=Mark (Mn, Mc, Me): even index starts a run of marks, odd index ends it.</summary>
    private static ReadOnlySpan<int> MarkBoundaries => [{{Join(markBoundaries, H)}}
        ];
}

internal enum BidiClass : byte
{
{{string.Join("\n", bidiNames.Select((n, i) => $"    {n} = {i},"))}}
}

internal enum JoiningType : byte
{
{{string.Join("\n", joiningNames.Select((n, i) => $"    {n} = {i},"))}}
}

""");

Console.WriteLine($"IDNA ranges {idnaStarts.Count}, mapping chars {mappingChars.Length}, ccc ranges {cccStarts.Count}, decompositions {decompositionKeys.Count} ({decompositionData.Count} code points), compositions {compositions.Count}, bidi ranges {bidiStarts.Count}, joining ranges {joinStarts.Count}, mark boundaries {markBoundaries.Count}");
return 0;
