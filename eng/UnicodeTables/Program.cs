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
var idnaValuePerCodePoint = new int[MaxCodePoint + 1];
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
        idnaValuePerCodePoint[c] = value;
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

    idnaValuePerCodePoint[c] = value;
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


// Three-stage look-up tables: stage 1 is indexed by the high bits of the code point and names a stage-2 block; a
// stage-2 block is indexed by the middle bits and names a stage-3 block; a stage-3 block holds the values for the low
// bits. Identical blocks are stored once (most of planes 3-16 is one block), so a look-up is three dependent loads
// from small tables instead of a binary search over thousands of range starts. The split is chosen per table to
// make the tables smallest.
Staged Stage(string name, int[] perCodePoint, int valueBytes)
{
    Staged? best = null;
    for (int s3 = 3; s3 <= 7; s3++)
    {
        for (int s2 = 3; s2 <= 7; s2++)
        {
            var staged = StageWith(name, perCodePoint, valueBytes, s2, s3);
            if (best is null || staged.Bytes < best.Bytes)
            {
                best = staged;
            }
        }
    }

    return best!;
}

Staged StageWith(string name, int[] perCodePoint, int valueBytes, int s2, int s3)
{
    int size3 = 1 << s3;
    var blocks3 = new Dictionary<int[], int>(ArrayComparer.Instance);
    var stage3 = new List<int>();
    var middle = new List<int>();
    for (int c = 0; c <= MaxCodePoint; c += size3)
    {
        int[] block = perCodePoint[c..(c + size3)];
        if (!blocks3.TryGetValue(block, out int index))
        {
            index = blocks3.Count;
            blocks3.Add(block, index);
            stage3.AddRange(block);
        }

        middle.Add(index);
    }

    int size2 = 1 << s2;
    var blocks2 = new Dictionary<int[], int>(ArrayComparer.Instance);
    var stage2 = new List<int>();
    var stage1 = new List<int>();
    for (int i = 0; i < middle.Count; i += size2)
    {
        int[] block = middle.GetRange(i, Math.Min(size2, middle.Count - i)).ToArray();
        if (block.Length < size2)
        {
            Array.Resize(ref block, size2);
        }

        if (!blocks2.TryGetValue(block, out int index))
        {
            index = blocks2.Count;
            blocks2.Add(block, index);
            stage2.AddRange(block);
        }

        stage1.Add(index);
    }

    int bytes = (stage1.Count * IndexBytes(blocks2.Count)) + (stage2.Count * IndexBytes(blocks3.Count)) + (stage3.Count * valueBytes);
    return new Staged(name, s2, s3, stage1, stage2, stage3, blocks2.Count, blocks3.Count, valueBytes, bytes);
}

static int IndexBytes(int count) => count <= 256 ? 1 : 2;

static string IndexType(int count) => count <= 256 ? "byte" : "ushort";

string EmitStaged(Staged t, string valueType, Func<int, string> format, string summary) => $$"""
    /// <summary>{{summary}} Stage 1 of a three-stage look-up ({{t.Bytes:N0}} bytes in all): the stage-2 block of each
    /// 2^{{t.Shift2 + t.Shift3}} code points.</summary>
    private static ReadOnlySpan<{{IndexType(t.Blocks2)}}> {{t.Name}}Stage1 => [{{Join(t.Stage1, v => v.ToString(CultureInfo.InvariantCulture), 24)}}
        ];

    /// <summary>Stage 2 ({{t.Blocks2}} blocks of {{1 << t.Shift2}}): the stage-3 block of each 2^{{t.Shift3}} code points.</summary>
    private static ReadOnlySpan<{{IndexType(t.Blocks3)}}> {{t.Name}}Stage2 => [{{Join(t.Stage2, v => v.ToString(CultureInfo.InvariantCulture), 24)}}
        ];

    /// <summary>Stage 3 ({{t.Blocks3}} blocks of {{1 << t.Shift3}}): the value of each code point.</summary>
    private static ReadOnlySpan<{{valueType}}> {{t.Name}}Stage3 => [{{Join(t.Stage3, format, valueType == "int" ? 12 : 24)}}
        ];

    /// <summary>The {{t.Name}} value of <paramref name="codePoint"/> (clamped to 0..10FFFF).</summary>
    /// <param name="codePoint">The code point.</param>
    /// <returns>The value.</returns>
    [System.Runtime.CompilerServices.MethodImpl(System.Runtime.CompilerServices.MethodImplOptions.AggressiveInlining)]
    private static {{valueType}} {{t.Name}}At(int codePoint)
    {
        uint c = Math.Min((uint)codePoint, 0x10FFFFu);
        int block2 = {{t.Name}}Stage1[(int)(c >> {{t.Shift2 + t.Shift3}})];
        int block3 = {{t.Name}}Stage2[(block2 << {{t.Shift2}}) | (int)((c >> {{t.Shift3}}) & {{(1 << t.Shift2) - 1}})];
        return {{t.Name}}Stage3[(block3 << {{t.Shift3}}) | (int)(c & {{(1 << t.Shift3) - 1}})];
    }
""";

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

var idnaStaged = Stage("Idna", idnaValuePerCodePoint, 4);
Write("UnicodeTables.Idna.g.cs", $$"""
internal static partial class UnicodeTables
{
    /// <summary>The Unicode version of every table in this class.</summary>
    public const string UnicodeVersion = "{{version}}";

{{EmitStaged(idnaStaged, "int", H, "IDNA status and mapping of every code point: status (bits 0-2: 0 valid, 1 ignored, 2 deviation, 3 disallowed, 4 mapped, 5 mapped by delta); for mapped, UTF-16 length (bits 3-7) and offset into <see cref=\"IdnaMappingChars\"/> (bits 8+); for mapped by delta, the signed code point delta (bits 3+).")}}

    /// <summary>The UTF-16 text of every multi-code-point mapping ({{mappingChars.Length}} code units).</summary>
    private static ReadOnlySpan<char> IdnaMappingChars => [{{Join(mappingChars.ToString(), ch => $"'\\u{(int)ch:X4}'", 10)}}
        ];
}

""");

var (cccStarts, _) = Ranges(ccc);
var (bidiStarts, _) = Ranges(bidi);
var (joinStarts, _) = Ranges(joining);
List<int> markBoundaries = Boundaries(isMark);
var cccStaged = Stage("Ccc", ccc.Select(b => (int)b).ToArray(), 1);
var bidiStaged = Stage("Bidi", bidi.Select(b => (int)b).ToArray(), 1);
var joiningStaged = Stage("Joining", joining.Select(b => (int)b).ToArray(), 1);
var decompositionSlot = new int[MaxCodePoint + 1];
for (int i = 0; i < decompositionKeys.Count; i++)
{
    decompositionSlot[decompositionKeys[i]] = i + 1;
}

var decompositionStaged = Stage("Decomposition", decompositionSlot, 2);
var compositionSecond = new int[MaxCodePoint + 1];
foreach (long key in compositions.Keys)
{
    compositionSecond[(int)(key & 0x1FFFFF)] = 1;
}

var compositionSecondStaged = Stage("CompositionSecond", compositionSecond, 1);
Write("UnicodeTables.Normalization.g.cs", $$"""
internal static partial class UnicodeTables
{
{{EmitStaged(cccStaged, "byte", v => v.ToString(CultureInfo.InvariantCulture), "Canonical_Combining_Class of every code point.")}}

{{EmitStaged(decompositionStaged, "ushort", v => v.ToString(CultureInfo.InvariantCulture), "For every code point, 1 + its entry in <see cref=\"DecompositionIndex\"/>, or 0 when it has no canonical decomposition (Hangul syllables are algorithmic).")}}

    /// <summary>Per code point with a decomposition ({{decompositionKeys.Count}}): offset into <see cref="DecompositionData"/> (bits 4+) and length (bits 0-3) of the full
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

{{EmitStaged(compositionSecondStaged, "byte", v => v.ToString(CultureInfo.InvariantCulture), "1 for every code point that is the second of a primary composite pair, else 0: most code points never compose with what precedes them, and skip the binary search.")}}
}

""");

Write("UnicodeTables.Properties.g.cs", $$"""
internal static partial class UnicodeTables
{
{{EmitStaged(bidiStaged, "byte", v => v.ToString(CultureInfo.InvariantCulture), "Bidi_Class of every code point, as <see cref=\"BidiClass\"/>.")}}

{{EmitStaged(joiningStaged, "byte", v => v.ToString(CultureInfo.InvariantCulture), "Joining_Type of every code point, as <see cref=\"JoiningType\"/>.")}}

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

foreach (var t in new[] { idnaStaged, cccStaged, decompositionStaged, compositionSecondStaged, bidiStaged, joiningStaged })
{
    Console.WriteLine($"{t.Name}: stage shifts {t.Shift2}+{t.Shift3}, {t.Blocks2} stage-2 and {t.Blocks3} stage-3 blocks, {t.Bytes:N0} bytes");
}

Console.WriteLine($"sorted-range tables replaced: IDNA {idnaStarts.Count * 8:N0} bytes, ccc {cccStarts.Count * 5:N0}, decomposition keys {decompositionKeys.Count * 4:N0}, bidi {bidiStarts.Count * 5:N0}, joining {joinStarts.Count * 5:N0}");
Console.WriteLine($"IDNA ranges {idnaStarts.Count}, mapping chars {mappingChars.Length}, ccc ranges {cccStarts.Count}, decompositions {decompositionKeys.Count} ({decompositionData.Count} code points), compositions {compositions.Count}, bidi ranges {bidiStarts.Count}, joining ranges {joinStarts.Count}, mark boundaries {markBoundaries.Count}");
return 0;

internal sealed record Staged(string Name, int Shift2, int Shift3, List<int> Stage1, List<int> Stage2, List<int> Stage3, int Blocks2, int Blocks3, int ValueBytes, int Bytes);

internal sealed class ArrayComparer : IEqualityComparer<int[]>
{
    public static readonly ArrayComparer Instance = new();

    public bool Equals(int[]? x, int[]? y) => x.AsSpan().SequenceEqual(y);

    public int GetHashCode(int[] obj)
    {
        var hash = default(HashCode);
        foreach (int v in obj)
        {
            hash.Add(v);
        }

        return hash.ToHashCode();
    }
}
