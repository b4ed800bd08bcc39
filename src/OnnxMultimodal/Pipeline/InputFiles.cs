namespace OnnxMultimodal.Pipeline;

/// <summary>
/// Checks on a path before anything opens it: a regular file (a FIFO would block the open forever, a
/// device would stream without end), not a directory, not a symbolic-link loop; and where it really
/// lies once every link is followed, so a model folder cannot reach files outside itself.
/// </summary>
internal static class InputFiles
{
    private const int MaxLinks = 40;   // what Linux allows before ELOOP

    /// <summary>What is wrong with <paramref name="path"/> as an input file, or null when it can be opened and read.</summary>
    /// <remarks>.NET reports no file type besides "directory"; Linux reports size 0 for FIFOs, sockets and
    /// devices, and an empty file is no valid input either, so size 0 is refused without opening.</remarks>
    public static string? Problem(string path)
    {
        try
        {
            string real = RealPath(path);
            if (Directory.Exists(real)) return "is a directory, not a file";
            var info = new FileInfo(real);
            if (!info.Exists) return path == real ? "file not found" : $"file not found (the link leads to {real})";
            if (info.Length == 0) return "is empty or not a regular file (FIFOs, sockets and devices are refused without opening them)";
            return null;
        }
        catch (IOException e)
        {
            return $"cannot be resolved: {e.Message}";
        }
        catch (UnauthorizedAccessException e)
        {
            return $"cannot be read: {e.Message}";
        }
    }

    /// <exception cref="InvalidInputException">The request's file (input <paramref name="input"/>) cannot be used.</exception>
    public static void RequireForRequest(string path, string input)
    {
        if (Problem(path) is { } problem) throw new InvalidInputException(input, $"{path} {problem}");
    }

    /// <exception cref="ModelPackageException">The model file cannot be used.</exception>
    public static void RequireForModel(string path, string role)
    {
        if (Problem(path) is { } problem) throw new ModelPackageException(path, role.Length == 0 ? problem : $"{problem} (multimodal.json names it as the {role} component)");
    }

    /// <summary>The absolute path with every symbolic link followed and every "." and ".." applied to the real
    /// directory, as the operating system resolves it when the file is opened.</summary>
    /// <exception cref="IOException">A link loop (more than 40 links).</exception>
    public static string RealPath(string path)
    {
        string full = Path.IsPathRooted(path) ? path : Path.Combine(Environment.CurrentDirectory, path);
        string root = Path.GetPathRoot(full) ?? "/";
        var pending = new Stack<string>(full[root.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries).Reverse());
        string current = root;
        int links = 0;
        while (pending.TryPop(out var segment))
        {
            if (segment == ".") continue;
            if (segment == "..") { current = Path.GetDirectoryName(current) ?? root; continue; }
            string next = Path.Combine(current, segment);
            string? target = new FileInfo(next).LinkTarget;
            if (target is null) { current = next; continue; }
            if (++links > MaxLinks) throw new IOException($"too many levels of symbolic links at {next} (a loop?)");
            string linked = Path.IsPathRooted(target) ? target : Path.Combine(current, target);
            string linkedRoot = Path.GetPathRoot(linked) ?? "/";
            foreach (var s in linked[linkedRoot.Length..].Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries).Reverse())
                pending.Push(s);
            current = linkedRoot;
        }
        return current;
    }

    /// <summary>Whether <paramref name="file"/> (a real path) lies inside <paramref name="folder"/> (a real path).</summary>
    public static bool IsInside(string file, string folder) =>
        file.StartsWith(Path.TrimEndingDirectorySeparator(folder) + Path.DirectorySeparatorChar, StringComparison.Ordinal);

    /// <summary>
    /// Whether a component at real path <paramref name="file"/> may be used by the model at real path
    /// <paramref name="modelFolder"/>: inside it, or directly inside a sibling model folder (one holding
    /// multimodal.json), which is how the exporter's <c>--link-components</c> shares graphs
    /// (<c>../tiny-chameleon/image_encoder.onnx</c>). Anything else needs
    /// <see cref="ResourceLimits.AllowPathsOutsideModel"/>.
    /// </summary>
    public static bool IsAllowedComponent(string file, string modelFolder)
    {
        if (IsInside(file, modelFolder)) return true;
        string? folder = Path.GetDirectoryName(file), parent = Path.GetDirectoryName(modelFolder);
        return folder is not null && parent is not null && Path.GetDirectoryName(folder) == parent
               && File.Exists(Path.Combine(folder, "multimodal.json"));
    }
}
