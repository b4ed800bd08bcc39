namespace OnnxMultimodal.Pipeline;

/// <summary>
/// Reads the top-level fields of an ONNX ModelProto (IR version, opset imports) without loading
/// the graph: the graph field is skipped by length, so a multi-GB file costs a few reads.
/// </summary>
internal sealed record OnnxHeader(long IrVersion, IReadOnlyDictionary<string, long> Opsets, string ProducerName)
{
    /// <summary>Highest ONNX IR version ONNX Runtime 1.31 accepts.</summary>
    public const long MaxIrVersion = 13;

    /// <summary>Highest default-domain opset our graphs are allowed to use.</summary>
    public const long MaxOpset = 21;

    /// <exception cref="ModelPackageException">The file is not a readable ONNX model.</exception>
    public static OnnxHeader Read(string path)
    {
        InputFiles.RequireForModel(path, "");   // a FIFO would block the open below
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 4096);
            if (stream.Length == 0) throw new ModelPackageException(path, "the file is empty, not an ONNX model");
            long ir = -1;
            string producer = "";
            var opsets = new Dictionary<string, long>();
            while (stream.Position < stream.Length)
            {
                ulong key = ReadVarint(stream, path);
                int field = (int)(key >> 3), wire = (int)(key & 7);
                switch (wire)
                {
                    case 0:
                        ulong v = ReadVarint(stream, path);
                        if (field == 1) ir = (long)v;
                        break;
                    case 2:
                        ulong raw = ReadVarint(stream, path);
                        long len = raw > long.MaxValue ? -1 : (long)raw;
                        if (len < 0 || len > stream.Length - stream.Position)
                            throw new ModelPackageException(path, "truncated or corrupt ONNX protobuf (a field runs past the end of the file)");
                        if (field == 8 && len < 4096) ReadOpset(ReadBytes(stream, (int)len), opsets, path);
                        else if (field == 2 && len < 4096) producer = System.Text.Encoding.UTF8.GetString(ReadBytes(stream, (int)len));
                        else stream.Seek(len, SeekOrigin.Current);
                        break;
                    case 1: stream.Seek(8, SeekOrigin.Current); break;
                    case 5: stream.Seek(4, SeekOrigin.Current); break;
                    default: throw new ModelPackageException(path, $"corrupt ONNX protobuf (wire type {wire} at byte {stream.Position})");
                }
            }
            if (ir < 0) throw new ModelPackageException(path, "no IR version field: not an ONNX model");
            return new OnnxHeader(ir, opsets, producer);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ModelPackageException(path, "cannot be read: " + e.Message, e);
        }
    }

    /// <exception cref="ModelPackageException">IR version or opset is newer than the runtime accepts.</exception>
    public void EnsureSupported(string path)
    {
        if (IrVersion > MaxIrVersion)
            throw new ModelPackageException(path, $"ONNX IR version {IrVersion} is newer than ONNX Runtime 1.31 accepts (at most {MaxIrVersion}); re-export with ir_version = 10");
        if (Opsets.TryGetValue("", out long opset) && opset > MaxOpset)
            throw new ModelPackageException(path, $"default-domain opset {opset} is newer than supported (at most {MaxOpset})");
    }

    private static void ReadOpset(byte[] bytes, Dictionary<string, long> opsets, string path)
    {
        using var s = new MemoryStream(bytes);
        string domain = "";
        long version = 0;
        while (s.Position < s.Length)
        {
            ulong key = ReadVarint(s, path);
            int field = (int)(key >> 3), wire = (int)(key & 7);
            if (wire == 0) { ulong v = ReadVarint(s, path); if (field == 2) version = (long)v; }
            else if (wire == 2)
            {
                ulong len = ReadVarint(s, path);
                if (len > (ulong)(s.Length - s.Position))   // a length from the file: checked against what is left before allocating
                    throw new ModelPackageException(path, $"corrupt opset_import entry (a field of {len} bytes in an entry of {s.Length})");
                var b = ReadBytes(s, (int)len);
                if (field == 1) domain = System.Text.Encoding.UTF8.GetString(b);
            }
            else throw new ModelPackageException(path, "corrupt opset_import entry");
        }
        opsets[domain == "ai.onnx" ? "" : domain] = version;
    }

    private static byte[] ReadBytes(Stream s, int len)
    {
        var b = new byte[len];
        s.ReadExactly(b);
        return b;
    }

    private static ulong ReadVarint(Stream s, string path)
    {
        ulong result = 0;
        for (int shift = 0; shift < 64; shift += 7)
        {
            int b = s.ReadByte();
            if (b < 0) throw new ModelPackageException(path, "truncated ONNX protobuf (file ends inside a field)");
            result |= (ulong)(b & 0x7F) << shift;
            if ((b & 0x80) == 0) return result;
        }
        throw new ModelPackageException(path, "corrupt ONNX protobuf (varint longer than 10 bytes)");
    }
}
