namespace Kars.Policy.Hosts.Idna;

/// <summary>RFC 3492 Punycode (Bootstring with the IDNA parameters), encode and decode, with every overflow checked.
/// Works on code points; never allocates.</summary>
internal static class Punycode
{
    private const int Base = 36;
    private const int TMin = 1;
    private const int TMax = 26;
    private const int Skew = 38;
    private const int Damp = 700;
    private const int InitialBias = 72;
    private const int InitialN = 0x80;
    private const int MaxCodePoint = 0x10FFFF;

    /// <summary>Decodes the Punycode <paramref name="input"/> (the label without <c>xn--</c>) into code points.</summary>
    /// <param name="input">ASCII text.</param>
    /// <param name="output">Receives the decoded code points (cleared first).</param>
    /// <returns><see langword="false"/> on a bad digit, an overflow, or a decoded value that is not a scalar value.</returns>
    public static bool TryDecode(scoped ReadOnlySpan<char> input, ref CodePointBuffer output)
    {
        output.Clear();
        int b = input.LastIndexOf('-');
        if (b < 0)
        {
            b = 0;
        }

        for (int j = 0; j < b; j++)
        {
            if (input[j] >= 0x80)
            {
                return false;
            }

            output.Add(input[j]);
        }

        int n = InitialN;
        int bias = InitialBias;
        int i = 0;
        for (int pos = b > 0 ? b + 1 : 0; pos < input.Length;)
        {
            int oldI = i;
            int w = 1;
            for (int k = Base; ; k += Base)
            {
                if (pos >= input.Length)
                {
                    return false;
                }

                int digit = DecodeDigit(input[pos++]);
                if (digit < 0 || digit > (int.MaxValue - i) / w)
                {
                    return false;
                }

                i += digit * w;
                int t = k <= bias ? TMin : k >= bias + TMax ? TMax : k - bias;
                if (digit < t)
                {
                    break;
                }

                if (w > int.MaxValue / (Base - t))
                {
                    return false;
                }

                w *= Base - t;
            }

            int length = output.Length + 1;
            bias = Adapt(i - oldI, length, oldI == 0);
            if (i / length > int.MaxValue - n)
            {
                return false;
            }

            n += i / length;
            i %= length;
            if (n > MaxCodePoint || (n >= 0xD800 && n <= 0xDFFF))
            {
                return false;
            }

            Insert(ref output, i, n);
            i++;
        }

        return true;
    }

    /// <summary>Encodes <paramref name="input"/> code points as Punycode into <paramref name="destination"/>.</summary>
    /// <param name="input">Scalar values.</param>
    /// <param name="destination">Where to write the ASCII text.</param>
    /// <param name="written">How many characters were written.</param>
    /// <returns><see langword="false"/> on overflow or when <paramref name="destination"/> is too small.</returns>
    public static bool TryEncode(ReadOnlySpan<int> input, Span<char> destination, out int written)
    {
        written = 0;
        int basic = 0;
        foreach (int c in input)
        {
            if (c < 0x80)
            {
                if (written >= destination.Length)
                {
                    return false;
                }

                destination[written++] = (char)c;
                basic++;
            }
        }

        int h = basic;
        if (basic > 0)
        {
            if (written >= destination.Length)
            {
                return false;
            }

            destination[written++] = '-';
        }

        int n = InitialN;
        int delta = 0;
        int bias = InitialBias;
        while (h < input.Length)
        {
            int m = int.MaxValue;
            foreach (int c in input)
            {
                if (c >= n && c < m)
                {
                    m = c;
                }
            }

            if (m - n > (int.MaxValue - delta) / (h + 1))
            {
                return false;
            }

            delta += (m - n) * (h + 1);
            n = m;
            foreach (int c in input)
            {
                if (c < n)
                {
                    if (delta == int.MaxValue)
                    {
                        return false;
                    }

                    delta++;
                }

                if (c == n)
                {
                    int q = delta;
                    for (int k = Base; ; k += Base)
                    {
                        int t = k <= bias ? TMin : k >= bias + TMax ? TMax : k - bias;
                        if (q < t)
                        {
                            break;
                        }

                        if (written >= destination.Length)
                        {
                            return false;
                        }

                        destination[written++] = EncodeDigit(t + ((q - t) % (Base - t)));
                        q = (q - t) / (Base - t);
                    }

                    if (written >= destination.Length)
                    {
                        return false;
                    }

                    destination[written++] = EncodeDigit(q);
                    bias = Adapt(delta, h + 1, h == basic);
                    delta = 0;
                    h++;
                }
            }

            if (delta == int.MaxValue)
            {
                return false;
            }

            delta++;
            n++;
        }

        return true;
    }

    private static void Insert(ref CodePointBuffer buffer, int index, int codePoint)
    {
        buffer.Add(0);
        Span<int> span = buffer.Span;
        span[index..^1].CopyTo(span[(index + 1)..]);
        span[index] = codePoint;
    }

    private static int DecodeDigit(char c) => c switch
    {
        >= '0' and <= '9' => c - '0' + 26,
        >= 'a' and <= 'z' => c - 'a',
        >= 'A' and <= 'Z' => c - 'A',
        _ => -1,
    };

    private static char EncodeDigit(int d) => (char)(d < 26 ? 'a' + d : '0' + (d - 26));

    private static int Adapt(int delta, int numPoints, bool firstTime)
    {
        delta = firstTime ? delta / Damp : delta / 2;
        delta += delta / numPoints;
        int k = 0;
        while (delta > ((Base - TMin) * TMax) / 2)
        {
            delta /= Base - TMin;
            k += Base;
        }

        return k + (((Base - TMin + 1) * delta) / (delta + Skew));
    }
}
