using System.Globalization;
using System.Text;

namespace Kars.Policy.Tests.Hosts.Idna;

/// <summary>Reads the Unicode conformance files copied into <c>TestData/Unicode/17.0.0</c>.</summary>
internal static class UnicodeTestData
{
    public static string PathOf(string file) =>
        Path.Combine(AppContext.BaseDirectory, "TestData", "Unicode", "17.0.0", file);

    /// <summary>Undoes the <c>\uXXXX</c> and <c>\x{XXXX}</c> escapes of IdnaTestV2.txt (lone surrogates included).</summary>
    public static string Unescape(string text)
    {
        if (!text.Contains('\\', StringComparison.Ordinal))
        {
            return text;
        }

        var sb = new StringBuilder(text.Length);
        for (int i = 0; i < text.Length; i++)
        {
            if (text[i] == '\\' && i + 5 < text.Length && text[i + 1] == 'u')
            {
                sb.Append((char)int.Parse(text.AsSpan(i + 2, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                i += 5;
            }
            else if (text[i] == '\\' && i + 2 < text.Length && text[i + 1] == 'x' && text[i + 2] == '{')
            {
                int close = text.IndexOf('}', i);
                int cp = int.Parse(text.AsSpan(i + 3, close - i - 3), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                sb.Append(char.ConvertFromUtf32(cp));
                i = close;
            }
            else
            {
                sb.Append(text[i]);
            }
        }

        return sb.ToString();
    }

    /// <summary>One test line of IdnaTestV2.txt, with the toAsciiN columns resolved as the file's header says.</summary>
    public sealed record IdnaLine(int LineNumber, string Source, string ToAsciiN, IReadOnlyList<string> ToAsciiNStatus);

    public static IReadOnlyList<IdnaLine> ReadIdnaTestV2()
    {
        var lines = new List<IdnaLine>();
        int number = 0;
        foreach (string raw in File.ReadLines(PathOf("IdnaTestV2.txt")))
        {
            number++;
            int hash = raw.IndexOf('#', StringComparison.Ordinal);
            string line = hash >= 0 ? raw[..hash] : raw;
            if (string.IsNullOrWhiteSpace(line))
            {
                continue;
            }

            string[] cols = line.Split(';').Select(c => c.Trim()).ToArray();
            string source = Column(cols[0], string.Empty);
            string toUnicode = Column(cols[1], source);
            string toUnicodeStatus = cols[2];
            string toAsciiN = Column(cols[3], toUnicode);
            string toAsciiNStatus = cols[4].Length == 0 ? toUnicodeStatus : cols[4];
            lines.Add(new IdnaLine(number, source, toAsciiN, ParseStatus(toAsciiNStatus)));
        }

        return lines;
    }

    private static string Column(string text, string blank) =>
        text.Length == 0 ? blank : text == "\"\"" ? string.Empty : Unescape(text);

    private static List<string> ParseStatus(string text) =>
        text.Trim('[', ']').Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToList();
}
