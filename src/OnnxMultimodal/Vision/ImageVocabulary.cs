using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Vision;

/// <summary>
/// Image code &lt;-&gt; token id. Codes are entries of the VQ codebook; their tokens are the vocabulary
/// entries named <c>IMGIMG</c> + the code's digits written as letters A-J + one final character.
/// </summary>
internal sealed class ImageVocabulary
{
    private readonly int[] _codeToToken;
    private readonly Dictionary<int, int> _tokenToCode;

    public int BeginImage { get; }
    public int EndImage { get; }
    public int CodebookSize => _codeToToken.Length;
    public IReadOnlyList<int> ImageTokenIds => _codeToToken;

    public ImageVocabulary(IReadOnlyList<int> codeToToken, int beginImage, int endImage)
    {
        _codeToToken = codeToToken.ToArray();
        _tokenToCode = new Dictionary<int, int>(_codeToToken.Length);
        for (int c = 0; c < _codeToToken.Length; c++) _tokenToCode[_codeToToken[c]] = c;
        BeginImage = beginImage;
        EndImage = endImage;
    }

    /// <summary>Builds the map from token names (<c>IMGIMG…</c>), as a real checkpoint's vocabulary holds it.</summary>
    public static int[] FromTokenNames(IReadOnlyDictionary<string, int> vocabulary)
    {
        var pairs = new List<(int Code, int Id)>();
        foreach (var (name, id) in vocabulary)
        {
            if (!name.StartsWith("IMGIMG", StringComparison.Ordinal) || name.Length < 8) continue;
            var digits = name.AsSpan(6, name.Length - 7);
            int code = 0;
            bool ok = true;
            foreach (char ch in digits)
            {
                if (ch < 'A' || ch > 'J') { ok = false; break; }
                code = code * 10 + (ch - 'A');
            }
            if (ok) pairs.Add((code, id));
        }
        var map = new int[pairs.Count];
        foreach (var (code, id) in pairs)
        {
            if (code >= map.Length) throw new InvalidOperationException($"image code {code} has a gap below it");
            map[code] = id;
        }
        return map;
    }

    public bool IsImageToken(int id) => _tokenToCode.ContainsKey(id);

    public int TokenOf(int code) => (uint)code < (uint)_codeToToken.Length
        ? _codeToToken[code] : throw new ArgumentOutOfRangeException(nameof(code), code, $"codebook has {_codeToToken.Length} entries");

    /// <exception cref="InvalidInputException">The id is not an image token.</exception>
    public int CodeOf(int id) => _tokenToCode.TryGetValue(id, out int c) ? c : throw new InvalidInputException("image tokens", $"token {id} is not an image token");

    internal static ImageVocabulary FromManifest(ModelPackage package)
    {
        var image = package.Manifest.Image ?? throw new ModelPackageException(package.ManifestPath, "no 'image' section");
        if (image.CodeToToken.Length != image.CodebookSize)
            throw new ModelPackageException(package.ManifestPath, $"image.code_to_token has {image.CodeToToken.Length} entries, codebook_size is {image.CodebookSize}");
        return new ImageVocabulary(image.CodeToToken, image.BeginImage, image.EndImage);
    }
}
