using System.Net;
using System.Text;
using Kars.Policy.Hosts;

namespace Kars.Policy.Egress;

/// <summary>The parsed contents of one blocklist feed, stored compactly: one ASCII blob and the start of each name.</summary>
internal sealed class BlocklistFeed
{
    private readonly byte[] _blob;
    private readonly int[] _starts;

    private BlocklistFeed(string source, byte[] blob, int[] starts, int count, int skipped)
    {
        Source = source;
        _blob = blob;
        _starts = starts;
        Count = count;
        Skipped = skipped;
    }

    /// <summary>Gets the feed's name as the policy document wrote it.</summary>
    public string Source { get; }

    /// <summary>Gets the number of domains read.</summary>
    public int Count { get; }

    /// <summary>Gets the number of lines that were not comments and not host names (skipped, never fatal).</summary>
    public int Skipped { get; }

    /// <summary>Gets the i-th domain as ASCII bytes.</summary>
    public ReadOnlySpan<byte> this[int index] => _blob.AsSpan(_starts[index], _starts[index + 1] - _starts[index]);

    /// <summary>Parses a feed in any of the supported formats, line by line: plain domain lists (<c>#</c>/<c>!</c> comments,
    /// optional leading <c>*.</c>), hosts files (<c>0.0.0.0 name</c>, <c>127.0.0.1 name</c>, tabs) and ABP <c>||name^</c>.</summary>
    /// <exception cref="InvalidDataException">The feed holds more than <paramref name="maxEntries"/> domains.</exception>
    public static BlocklistFeed Parse(string source, ReadOnlySpan<byte> text, int maxEntries)
    {
        var blob = new byte[Math.Max(16, text.Length)];
        var starts = new List<int>(Math.Max(16, text.Length / 24)) { 0 };
        int length = 0;
        int skipped = 0;
        Span<byte> scratch = stackalloc byte[256];

        if (text.StartsWith("\uFEFF"u8))
        {
            text = text[3..];
        }

        while (!text.IsEmpty)
        {
            int newline = text.IndexOf((byte)'\n');
            ReadOnlySpan<byte> line = newline < 0 ? text : text[..newline];
            text = newline < 0 ? [] : text[(newline + 1)..];
            line = line.Trim(" \t\r"u8);
            if (line.IsEmpty || line[0] is (byte)'#' or (byte)'!')
            {
                continue;
            }

            bool any = false;
            bool bad = false;
            if (line.StartsWith("||"u8))
            {
                // ABP: exactly ||name^ (a listed domain blocks itself and every subdomain).
                if (line.Length > 3 && line[^1] == (byte)'^')
                {
                    bad = !Add(line[2..^1], ref blob, ref length, starts, scratch);
                    any = !bad;
                }
                else
                {
                    bad = true;
                }
            }
            else
            {
                int hash = line.IndexOf((byte)'#');
                if (hash >= 0)
                {
                    line = line[..hash].TrimEnd(" \t"u8);
                }

                int gap = line.IndexOfAny((byte)' ', (byte)'\t');
                if (gap < 0)
                {
                    ReadOnlySpan<byte> name = line.StartsWith("*."u8) ? line[2..] : line;
                    bad = !Add(name, ref blob, ref length, starts, scratch);
                    any = !bad;
                }
                else if (IsHostsAddress(line[..gap]))
                {
                    ReadOnlySpan<byte> rest = line[gap..].TrimStart(" \t"u8);
                    while (!rest.IsEmpty)
                    {
                        int next = rest.IndexOfAny((byte)' ', (byte)'\t');
                        ReadOnlySpan<byte> token = next < 0 ? rest : rest[..next];
                        rest = next < 0 ? [] : rest[next..].TrimStart(" \t"u8);
                        if (Add(token, ref blob, ref length, starts, scratch))
                        {
                            any = true;
                        }
                        else
                        {
                            bad = true;
                        }
                    }
                }
                else
                {
                    bad = true;
                }
            }

            if (bad || !any)
            {
                skipped++;
            }

            if (starts.Count - 1 > maxEntries)
            {
                throw new InvalidDataException($"the feed holds more than {maxEntries} domains");
            }
        }

        Array.Resize(ref blob, length);
        return new BlocklistFeed(source, blob, [.. starts], starts.Count - 1, skipped);
    }

    private static bool IsHostsAddress(ReadOnlySpan<byte> token)
    {
        Span<char> chars = stackalloc char[64];
        if (token.Length > chars.Length || !Ascii.IsValid(token))
        {
            return false;
        }

        Ascii.ToUtf16(token, chars, out int written);
        return IPAddress.TryParse(chars[..written], out _);
    }

    /// <summary>Validates one candidate name; appends its canonical form. Returns false for anything that is not a host name.</summary>
    private static bool Add(ReadOnlySpan<byte> name, ref byte[] blob, ref int length, List<int> starts, Span<byte> scratch)
    {
        if (name.Length > 0 && name[^1] == (byte)'.')
        {
            name = name[..^1];
        }

        if (name.IsEmpty || name.Length > 253)
        {
            return false;
        }

        ReadOnlySpan<byte> canonical;
        if (Ascii.IsValid(name))
        {
            Ascii.ToLower(name, scratch, out int written);
            canonical = scratch[..written];
        }
        else
        {
            string text;
            try
            {
                text = Encoding.UTF8.GetString(name);
            }
            catch (ArgumentException)
            {
                return false;
            }

            if (!DnsNames.TryNormalize(text, out string? ascii, out _) || ascii.Length > scratch.Length)
            {
                return false;
            }

            int n = Encoding.ASCII.GetBytes(ascii, scratch);
            canonical = scratch[..n];
        }

        if (!IsHostName(canonical))
        {
            return false;
        }

        if (length + canonical.Length > blob.Length)
        {
            Array.Resize(ref blob, Math.Max(blob.Length * 2, length + canonical.Length));
        }

        canonical.CopyTo(blob.AsSpan(length));
        length += canonical.Length;
        starts.Add(length);
        return true;
    }

    /// <summary>A canonical multi-label DNS name whose last label does not start with a digit (so never an IP literal).</summary>
    private static bool IsHostName(ReadOnlySpan<byte> name)
    {
        int labelLength = 0;
        int dots = 0;
        foreach (byte c in name)
        {
            if (c == (byte)'.')
            {
                if (labelLength == 0)
                {
                    return false;
                }

                dots++;
                labelLength = 0;
                continue;
            }

            if (!(c is >= (byte)'a' and <= (byte)'z' or >= (byte)'0' and <= (byte)'9' or (byte)'-' or (byte)'_') || ++labelLength > 63)
            {
                return false;
            }
        }

        int lastDot = name.LastIndexOf((byte)'.');
        return labelLength > 0 && dots > 0 && !char.IsAsciiDigit((char)name[lastDot + 1]);
    }
}
