using System.IO.Abstractions;

namespace Kars.Policy.Internal;

/// <summary>
/// Resolves a path a document names (a blocklist feed) against the document's folder and keeps it inside that folder:
/// no absolute path, no <c>..</c> that climbs out, and no symbolic link whose final target lies outside. Links that
/// stay inside keep working, which is how a Kubernetes ConfigMap mount looks (<c>feed.txt → ..data/feed.txt</c>,
/// <c>..data → ..2030_01_01_00_00_00.123/</c>).
/// </summary>
internal static class ConfinedPath
{
    private const int MaxLinkHops = 40; // as Linux's ELOOP limit

    /// <summary>Resolves <paramref name="relative"/> against <paramref name="folder"/>.</summary>
    /// <param name="fileSystem">The file system.</param>
    /// <param name="folder">The folder the path must stay in.</param>
    /// <param name="relative">The path as the document wrote it.</param>
    /// <param name="allowOutside">When <see langword="true"/>, absolute paths and paths outside the folder are allowed.</param>
    /// <param name="fullPath">The resolved full path (lexical; links are not replaced), when the result is <see langword="true"/>.</param>
    /// <param name="error">Why the path was refused.</param>
    /// <returns><see langword="true"/> when the path may be read.</returns>
    public static bool TryResolve(IFileSystem fileSystem, string folder, string relative, bool allowOutside, out string fullPath, out string? error)
    {
        fullPath = string.Empty;
        error = null;
        var path = fileSystem.Path;
        try
        {
            if (relative.Length == 0 || relative.Contains('\0', StringComparison.Ordinal))
            {
                error = "the path is empty or contains a NUL character";
                return false;
            }

            if (!allowOutside && (path.IsPathRooted(relative) || relative.StartsWith('~')))
            {
                error = "an absolute path is not allowed; name the file relative to the policy's folder";
                return false;
            }

            string root = path.GetFullPath(folder);
            fullPath = path.GetFullPath(path.Combine(root, relative));
            if (allowOutside)
            {
                return true;
            }

            if (!IsInside(fileSystem, root, fullPath))
            {
                error = "the path leaves the policy's folder";
                return false;
            }

            string? realRoot = RealPath(fileSystem, root);
            string? realFile = RealPath(fileSystem, fullPath);
            if (realRoot is null || realFile is null)
            {
                error = "the path has too many levels of symbolic links";
                return false;
            }

            if (!IsInside(fileSystem, realRoot, realFile))
            {
                error = "the path is a symbolic link that leads out of the policy's folder";
                return false;
            }

            return true;
        }
        catch (Exception ex) when (ex is ArgumentException or NotSupportedException or PathTooLongException or IOException or UnauthorizedAccessException)
        {
            error = $"not a usable path ({ex.Message})";
            return false;
        }
    }

    private static bool IsInside(IFileSystem fileSystem, string root, string candidate)
    {
        var comparison = OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal;
        string prefix = root.EndsWith(fileSystem.Path.DirectorySeparatorChar) ? root : root + fileSystem.Path.DirectorySeparatorChar;
        return candidate.StartsWith(prefix, comparison) && candidate.Length > prefix.Length;
    }

    /// <summary>Replaces every symbolic link in <paramref name="fullPath"/> (a full path) by its target, component by
    /// component; <see langword="null"/> when there are too many links. Components that do not exist are kept as written.</summary>
    private static string? RealPath(IFileSystem fileSystem, string fullPath)
    {
        var path = fileSystem.Path;
        string root = path.GetPathRoot(fullPath) ?? string.Empty;
        var pending = new Stack<string>(fullPath[root.Length..].Split(path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries).Reverse());
        string current = root;
        int hops = 0;
        while (pending.Count > 0)
        {
            string component = pending.Pop();
            string candidate = path.Combine(current, component);
            string? target = fileSystem.FileInfo.New(candidate).LinkTarget;
            if (target is null)
            {
                current = candidate;
                continue;
            }

            if (++hops > MaxLinkHops)
            {
                return null;
            }

            // Continue from the link's target: push its components in front of what is left.
            string resolved = path.GetFullPath(path.Combine(current, target));
            string resolvedRoot = path.GetPathRoot(resolved) ?? string.Empty;
            foreach (string part in resolved[resolvedRoot.Length..].Split(path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries).Reverse())
            {
                pending.Push(part);
            }

            current = resolvedRoot;
        }

        return current;
    }
}
