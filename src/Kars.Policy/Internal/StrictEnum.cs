namespace Kars.Policy.Internal;

/// <summary>
/// The one reader for enum values that arrive as text (policy and limits files, options, the command line).
/// </summary>
/// <remarks>
/// <see cref="Enum.TryParse{TEnum}(string, bool, out TEnum)"/> accepts numbers (<c>"1"</c>), comma lists
/// (<c>"Strict,Learn"</c>, read as a bitwise OR) and surrounding white space, any of which can silently turn
/// enforcement off. This reader accepts exactly one declared member name, compared ordinal-ignore-case, and
/// nothing else.
/// </remarks>
internal static class StrictEnum
{
    /// <summary>Reads <paramref name="text"/> as exactly one declared name of <typeparamref name="TEnum"/>.</summary>
    /// <returns><see langword="true"/> when <paramref name="text"/> is one declared name (any case).</returns>
    public static bool TryParse<TEnum>(string? text, out TEnum value)
        where TEnum : struct, Enum
    {
        if (!string.IsNullOrEmpty(text))
        {
            foreach (var name in Enum.GetNames<TEnum>())
            {
                if (string.Equals(name, text, StringComparison.OrdinalIgnoreCase))
                {
                    value = Enum.Parse<TEnum>(name);
                    return true;
                }
            }
        }

        value = default;
        return false;
    }

    /// <summary>The declared names, for error messages ("expected one of ...").</summary>
    public static string Names<TEnum>()
        where TEnum : struct, Enum => string.Join(", ", Enum.GetNames<TEnum>());
}
