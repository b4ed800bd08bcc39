/// <summary>
/// Where the samples find a model folder, in this order: the first argument (a model folder), the environment
/// variable OMM_MODELS (a folder holding model folders, such as the repository's models/), or models/ next to
/// the application. Nothing is guessed from where the sample happens to be built.
/// </summary>
internal static class ModelLocation
{
    /// <summary>The folder of model <paramref name="name"/>; prints one line and exits with code 2 when there is none.</summary>
    public static string Find(string[] args, string name)
    {
        string? folder = args.Length > 0 ? args[0]
            : Environment.GetEnvironmentVariable("OMM_MODELS") is { Length: > 0 } models ? Path.Combine(models, name)
            : Path.Combine(AppContext.BaseDirectory, "models", name);
        if (File.Exists(Path.Combine(folder, "multimodal.json"))) return folder;
        Console.Error.WriteLine($"error: no model at {folder}: pass a model folder as the first argument, set OMM_MODELS to a folder " +
                                $"of models (the repository's models/), or copy models/{name} next to the application");
        Environment.Exit(2);
        return folder;
    }
}
