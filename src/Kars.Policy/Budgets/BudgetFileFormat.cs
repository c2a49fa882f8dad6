using System.Globalization;
using System.Text;

namespace Kars.Policy.Budgets;

/// <summary>
/// The line format of the file store: every line is <c>&lt;fnv1a-64 hex&gt; &lt;payload&gt;\n</c>, the payload being
/// space-separated fields with keys percent-encoded (<c>%</c> alone is "no key").
/// </summary>
internal static class BudgetFileFormat
{
    public const string SnapshotMagic = "kars-budget-snapshot";
    public const string LogMagic = "kars-budget-wal";
    public const int Version = 1;
    public const string NoKey = "%";

    public static void AppendLine(StringBuilder builder, string payload)
    {
        builder.Append(Hash(payload).ToString("x16", CultureInfo.InvariantCulture)).Append(' ').Append(payload).Append('\n');
    }

    public static byte[] Line(string payload)
    {
        var builder = new StringBuilder(payload.Length + 18);
        AppendLine(builder, payload);
        return Encoding.UTF8.GetBytes(builder.ToString());
    }

    public static string EncodeKey(string? key) => key is null ? NoKey : Uri.EscapeDataString(key);

    public static string? DecodeKey(string field) => field == NoKey ? null : Uri.UnescapeDataString(field);

    public static string Invariant(long value) => value.ToString(CultureInfo.InvariantCulture);

    /// <summary>Splits a file into lines and checks each hash.</summary>
    /// <param name="content">The file bytes.</param>
    /// <param name="lines">The verified payloads with their 1-based line numbers.</param>
    /// <param name="tornTailOffset">When the file ends in an incomplete line (no final newline: a write cut short), the
    /// byte offset where that line starts; else -1.</param>
    /// <param name="badLine">The 1-based number of the first complete line (ending in a newline) that does not verify,
    /// else 0. A complete line never comes from a torn append, so it is damage even when it is the last one.</param>
    public static void Split(ReadOnlySpan<byte> content, List<(int Number, string Payload)> lines, out long tornTailOffset, out int badLine)
    {
        tornTailOffset = -1;
        badLine = 0;
        int offset = 0;
        int number = 0;
        while (offset < content.Length)
        {
            number++;
            ReadOnlySpan<byte> rest = content[offset..];
            int newline = rest.IndexOf((byte)'\n');
            if (newline < 0)
            {
                tornTailOffset = offset;
                return;
            }

            if (!TryVerify(rest[..newline], out string? payload))
            {
                badLine = number;
                return;
            }

            lines.Add((number, payload));
            offset += newline + 1;
        }
    }

    private static bool TryVerify(ReadOnlySpan<byte> line, out string payload)
    {
        payload = string.Empty;
        if (line.Length < 18 || line[16] != (byte)' ')
        {
            return false;
        }

        string text;
        try
        {
            text = new UTF8Encoding(false, true).GetString(line);
        }
        catch (DecoderFallbackException)
        {
            return false;
        }

        if (!ulong.TryParse(text.AsSpan(0, 16), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong hash))
        {
            return false;
        }

        payload = text[17..];
        return Hash(payload) == hash;
    }

    private static ulong Hash(string payload)
    {
        ulong hash = 14695981039346656037UL;
        foreach (byte b in Encoding.UTF8.GetBytes(payload))
        {
            hash ^= b;
            hash *= 1099511628211UL;
        }

        return hash;
    }
}
