using System.Globalization;
using System.Text;

namespace OnnxMultimodal.Text;

// Template values are plain CLR objects: null (None), Undefined, bool, long, double, string,
// List<object?> (lists and tuples), TemplateDict (mappings, insertion-ordered), TemplateNamespace,
// TemplateCallable (functions, macros, bound methods).

/// <summary>A name or key that does not exist: renders as "", is falsy, fails on attribute access.</summary>
internal sealed class Undefined
{
    public static readonly Undefined Instance = new();
    private Undefined() { }
    public override string ToString() => "";
}

/// <summary>An insertion-ordered mapping with string keys (JSON objects, dict literals, message dicts).</summary>
internal sealed class TemplateDict : OrderedDictionary<string, object?>
{
    public TemplateDict() { }
    public TemplateDict(IEnumerable<KeyValuePair<string, object?>> items) : base(items) { }
}

/// <summary>Jinja's <c>namespace()</c>: the one object whose attributes a template may assign.</summary>
internal sealed class TemplateNamespace
{
    public TemplateDict Values { get; } = new();
}

/// <summary>A function a template can call: positional and keyword arguments in, a value out.</summary>
internal delegate object? TemplateCallable(List<object?> args, Dictionary<string, object?> kwargs);

/// <summary>Python-like semantics of template values: truth, str(), repr(), equality, ordering, JSON.</summary>
internal static class TemplateValues
{
    public static bool Truthy(object? v) => v switch
    {
        null or Undefined => false,
        bool b => b,
        long n => n != 0,
        double d => d != 0,
        string s => s.Length > 0,
        List<object?> l => l.Count > 0,
        TemplateDict d => d.Count > 0,
        _ => true,
    };

    public static string TypeName(object? v) => v switch
    {
        null => "NoneType",
        Undefined => "undefined",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        List<object?> => "list",
        TemplateDict => "dict",
        TemplateNamespace => "namespace",
        TemplateCallable => "function",
        _ => v.GetType().Name,
    };

    /// <summary>Python's <c>str()</c>, which is what <c>{{ value }}</c> writes.</summary>
    public static string Str(object? v) => v switch
    {
        string s => s,
        Undefined => "",
        _ => Repr(v),
    };

    /// <summary>Python's <c>repr()</c> (inside lists and dicts).</summary>
    public static string Repr(object? v)
    {
        var sb = new StringBuilder();
        AppendRepr(sb, v, 0);
        return sb.ToString();
    }

    private static void AppendRepr(StringBuilder sb, object? v, int depth)
    {
        if (depth > ChatTemplateParser.MaxDepth) throw new TemplateSyntaxException("value nested too deeply to print", 0);
        switch (v)
        {
            case null: sb.Append("None"); break;
            case Undefined: break;
            case bool b: sb.Append(b ? "True" : "False"); break;
            case long n: sb.Append(n.ToString(CultureInfo.InvariantCulture)); break;
            case double d: sb.Append(FormatFloat(d)); break;
            case string s:
                char q = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
                sb.Append(q);
                foreach (char c in s)
                {
                    if (c == q || c == '\\') sb.Append('\\').Append(c);
                    else if (c == '\n') sb.Append("\\n");
                    else if (c == '\r') sb.Append("\\r");
                    else if (c == '\t') sb.Append("\\t");
                    else sb.Append(c);
                }
                sb.Append(q);
                break;
            case List<object?> l:
                sb.Append('[');
                for (int i = 0; i < l.Count; i++) { if (i > 0) sb.Append(", "); AppendRepr(sb, l[i], depth + 1); }
                sb.Append(']');
                break;
            case TemplateDict d:
                sb.Append('{');
                int k = 0;
                foreach (var (key, value) in d) { if (k++ > 0) sb.Append(", "); AppendRepr(sb, key, depth + 1); sb.Append(": "); AppendRepr(sb, value, depth + 1); }
                sb.Append('}');
                break;
            case TemplateNamespace ns: sb.Append("<Namespace ").Append(Repr(ns.Values)).Append('>'); break;
            default: sb.Append("<function>"); break;
        }
    }

    public static string FormatFloat(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
        if (d == Math.Floor(d) && Math.Abs(d) < 1e16) return d.ToString("0.0", CultureInfo.InvariantCulture);
        return d.ToString("R", CultureInfo.InvariantCulture).Replace("E", "e");
    }

    public static new bool Equals(object? a, object? b)
    {
        if (IsNumber(a) && IsNumber(b)) return ToDouble(a) == ToDouble(b);
        return (a, b) switch
        {
            (null, null) => true,
            (Undefined, Undefined) => true,
            (string x, string y) => x == y,
            (List<object?> x, List<object?> y) => x.Count == y.Count && x.Zip(y).All(p => Equals(p.First, p.Second)),
            (TemplateDict x, TemplateDict y) => x.Count == y.Count && x.All(kv => y.TryGetValue(kv.Key, out var o) && Equals(kv.Value, o)),
            _ => ReferenceEquals(a, b),
        };
    }

    /// <summary>Python's ordering of numbers and of strings (by code point); anything else is a type error.</summary>
    public static int Compare(object? a, object? b)
    {
        if (IsNumber(a) && IsNumber(b)) return ToDouble(a).CompareTo(ToDouble(b));
        if (a is string x && b is string y) return string.CompareOrdinal(x, y);
        throw new TemplateSyntaxException($"cannot order {TypeName(a)} and {TypeName(b)}", 0);
    }

    public static bool IsNumber(object? v) => v is long or double or bool;
    public static double ToDouble(object? v) => v switch { long n => n, double d => d, bool b => b ? 1 : 0, _ => double.NaN };

    /// <summary>JSON as Python's <c>json.dumps</c> writes it (transformers' <c>tojson</c>): ", " and ": " separators,
    /// or "," and ": " with an indent; non-ASCII kept; keys in insertion order unless sorted.</summary>
    public static void AppendJson(StringBuilder sb, object? v, int? indent, bool sortKeys, int depth, int maxChars)
    {
        if (depth > ChatTemplateParser.MaxDepth) throw new TemplateSyntaxException("value nested too deeply for tojson", 0);
        if (sb.Length > maxChars) throw new TemplateLimitException($"tojson output exceeds {maxChars} characters");
        string item = indent is null ? ", " : ",";
        string Pad(int d) => indent is int n ? "\n" + new string(' ', n * d) : "";
        switch (v)
        {
            case null or Undefined: sb.Append("null"); break;
            case bool b: sb.Append(b ? "true" : "false"); break;
            case long n: sb.Append(n.ToString(CultureInfo.InvariantCulture)); break;
            case double d: sb.Append(double.IsFinite(d) ? FormatFloat(d) : d > 0 ? "Infinity" : d < 0 ? "-Infinity" : "NaN"); break;
            case string s: AppendJsonString(sb, s); break;
            case List<object?> l:
                sb.Append('[');
                for (int i = 0; i < l.Count; i++)
                {
                    if (i > 0) sb.Append(item);
                    sb.Append(Pad(depth + 1));
                    AppendJson(sb, l[i], indent, sortKeys, depth + 1, maxChars);
                }
                if (l.Count > 0) sb.Append(Pad(depth));
                sb.Append(']');
                break;
            case TemplateDict or TemplateNamespace:
                var dict = v as TemplateDict ?? ((TemplateNamespace)v).Values;
                IEnumerable<KeyValuePair<string, object?>> entries = sortKeys ? dict.OrderBy(kv => kv.Key, StringComparer.Ordinal) : dict;
                sb.Append('{');
                int k = 0;
                foreach (var (key, value) in entries)
                {
                    if (k++ > 0) sb.Append(item);
                    sb.Append(Pad(depth + 1));
                    AppendJsonString(sb, key);
                    sb.Append(": ");
                    AppendJson(sb, value, indent, sortKeys, depth + 1, maxChars);
                }
                if (dict.Count > 0) sb.Append(Pad(depth));
                sb.Append('}');
                break;
            default: throw new TemplateSyntaxException($"cannot convert {TypeName(v)} to JSON", 0);
        }
    }

    private static void AppendJsonString(StringBuilder sb, string s)
    {
        sb.Append('"');
        foreach (char c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20) sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else sb.Append(c);
                    break;
            }
        }
        sb.Append('"');
    }

    /// <summary>A CLR value (strings, numbers, lists, dictionaries, JSON elements) as a template value.</summary>
    public static object? From(object? v, int depth = 0)
    {
        if (depth > ChatTemplateParser.MaxDepth) throw new ArgumentException("value nested too deeply for a chat template");
        return v switch
        {
            null => null,
            string or bool or long or double or Undefined or TemplateDict or TemplateNamespace or TemplateCallable => v,
            int i => (long)i,
            float f => (double)f,
            decimal m => (double)m,
            System.Text.Json.JsonElement e => FromJson(e, depth),
            System.Collections.IDictionary d => FromDictionary(d, depth),
            System.Collections.IEnumerable e => e.Cast<object?>().Select(x => From(x, depth + 1)).ToList(),
            _ => v.ToString(),
        };
    }

    private static TemplateDict FromDictionary(System.Collections.IDictionary d, int depth)
    {
        var result = new TemplateDict();
        var e = d.GetEnumerator();
        while (e.MoveNext()) result[Convert.ToString(e.Key, CultureInfo.InvariantCulture) ?? ""] = From(e.Value, depth + 1);
        return result;
    }

    private static object? FromJson(System.Text.Json.JsonElement e, int depth) => e.ValueKind switch
    {
        System.Text.Json.JsonValueKind.String => e.GetString(),
        System.Text.Json.JsonValueKind.Number => e.TryGetInt64(out long n) ? n : e.GetDouble(),
        System.Text.Json.JsonValueKind.True => true,
        System.Text.Json.JsonValueKind.False => false,
        System.Text.Json.JsonValueKind.Array => e.EnumerateArray().Select(x => From(x, depth + 1)).ToList(),
        System.Text.Json.JsonValueKind.Object => new TemplateDict(e.EnumerateObject().Select(p => new KeyValuePair<string, object?>(p.Name, From(p.Value, depth + 1)))),
        _ => null,
    };
}

/// <summary>A template went past a bound (output size, steps, call depth).</summary>
internal sealed class TemplateLimitException(string problem) : Exception(problem);

/// <summary>The template called <c>raise_exception(message)</c>.</summary>
internal sealed class TemplateRaisedException(string message) : Exception(message);
