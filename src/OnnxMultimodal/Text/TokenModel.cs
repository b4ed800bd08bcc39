using System.Text.Json;

namespace OnnxMultimodal.Text;

/// <summary>The <c>model</c> of a tokenizer.json: turns one pre-tokenized piece into ids.</summary>
internal abstract class TokenModel
{
    /// <summary>Piece text of every id the model defines (index = id; null where the model has no token).</summary>
    public abstract string?[] Pieces { get; }

    /// <summary>Appends the ids of <paramref name="piece"/> to <paramref name="ids"/>.</summary>
    public abstract void Tokenize(string piece, List<int> ids);

    public static TokenModel FromJson(JsonElement model, TokenizerJsonReader r, int maxVocabulary)
    {
        string? type = TokenizerJsonReader.TypeOf(model);
        return type switch
        {
            "BPE" => BpeModel.Create(model, r, maxVocabulary),
            "Unigram" => UnigramModel.Create(model, r, maxVocabulary),
            _ => throw r.Unsupported("model", type, "supported: BPE, Unigram"),
        };
    }

    /// <summary>Ids of <c>&lt;0xAB&gt;</c> byte tokens for every byte (-1 where the vocabulary has none).</summary>
    protected static int[] ByteTokenIds(IReadOnlyDictionary<string, int> vocab)
    {
        var ids = new int[256];
        for (int b = 0; b < 256; b++) ids[b] = vocab.TryGetValue($"<0x{b:X2}>", out int id) ? id : -1;
        return ids;
    }
}
