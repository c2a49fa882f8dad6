using System.Net;
using System.Text;
using Kars.Policy.Hosts;

namespace Kars.Policy.Egress;

/// <summary>The parsed contents of one blocklist feed, stored compactly: the canonical names in one ASCII blob, each
/// followed by a line feed (about one byte per character; no per-name object or offset).</summary>
internal sealed class BlocklistFeed
{
    private readonly byte[] _blob;

    private BlocklistFeed(string source, byte[] blob, int count, int skipped)
    {
        Source = source;
        _blob = blob;
        Count = count;
        Skipped = skipped;
    }

    /// <summary>Gets the feed's name as the policy document wrote it.</summary>
    public string Source { get; }

    /// <summary>Gets the number of domains read.</summary>
    public int Count { get; }

    /// <summary>Gets the number of lines that were not comments and not host names (skipped, never fatal).</summary>
    public int Skipped { get; }

    /// <summary>Gets the number of bytes the names take (for sizing the index).</summary>
    public int NameBytes => _blob.Length - Count;

    /// <summary>Enumerates the domains as ASCII bytes, in feed order.</summary>
    public Enumerator GetEnumerator() => new(_blob);

    /// <summary>Parses a feed in any of the supported formats, line by line: plain domain lists (<c>#</c>/<c>!</c> comments,
    /// optional leading <c>*.</c>), hosts files (<c>0.0.0.0 name</c>, <c>127.0.0.1 name</c>, tabs) and ABP <c>||name^</c>.</summary>
    /// <exception cref="InvalidDataException">The feed holds more than <paramref name="maxEntries"/> domains.</exception>
    public static BlocklistFeed Parse(string source, ReadOnlySpan<byte> text, int maxEntries)
    {
        // The output is at most the input for ASCII feeds (comments, prefixes, addresses and line ends dropped; one line
        // feed per name), so one buffer of the input's size is written once and trimmed only when much of it is unused.
        // An internationalised name can grow in its punycode form: the buffer then grows.
        var blob = new byte[Math.Max(16, text.Length + 1)];
        int count = 0;
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
                    bad = !Add(line[2..^1], ref blob, ref length, ref count, scratch);
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
                    bad = !Add(name, ref blob, ref length, ref count, scratch);
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
                        if (Add(token, ref blob, ref length, ref count, scratch))
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

            if (count > maxEntries)
            {
                throw new InvalidDataException($"the feed holds more than {maxEntries} domains");
            }
        }

        if (blob.Length - length > blob.Length / 8)
        {
            Array.Resize(ref blob, length);
        }
        else if (blob.Length != length)
        {
            // Keep the buffer (the copy would cost more than the slack) and pad the unused end with line feeds, which
            // the enumerator skips.
            blob.AsSpan(length).Fill((byte)'\n');
        }

        return new BlocklistFeed(source, blob, count, skipped);
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
    private static bool Add(ReadOnlySpan<byte> name, ref byte[] blob, ref int length, ref int count, Span<byte> scratch)
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

        if (length + canonical.Length + 1 > blob.Length)
        {
            Array.Resize(ref blob, Math.Max(blob.Length + (blob.Length / 2), length + canonical.Length + 1));
        }

        canonical.CopyTo(blob.AsSpan(length));
        length += canonical.Length;
        blob[length++] = (byte)'\n';
        count++;
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

    /// <summary>Enumerates the names of the blob (line-feed separated; empty lines are padding).</summary>
    public ref struct Enumerator
    {
        private ReadOnlySpan<byte> _rest;

        internal Enumerator(byte[] blob)
        {
            _rest = blob;
            Current = default;
        }

        /// <summary>Gets the current name.</summary>
        public ReadOnlySpan<byte> Current { get; private set; }

        /// <summary>Moves to the next name.</summary>
        /// <returns>Whether there is one.</returns>
        public bool MoveNext()
        {
            while (!_rest.IsEmpty)
            {
                int end = _rest.IndexOf((byte)'\n');
                Current = _rest[..end];
                _rest = _rest[(end + 1)..];
                if (!Current.IsEmpty)
                {
                    return true;
                }
            }

            return false;
        }
    }
}
