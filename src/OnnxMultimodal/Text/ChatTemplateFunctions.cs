using System.Globalization;
using System.Text;
using static OnnxMultimodal.Text.TemplateValues;

namespace OnnxMultimodal.Text;

// Attributes and methods (str, dict), filters, tests and global functions that real chat templates use.
internal sealed partial class ChatTemplateInterpreter
{
    private IEnumerable<(string, TemplateCallable)> Globals()
    {
        yield return ("raise_exception", (args, _) => throw new TemplateRaisedException(args.Count > 0 ? Str(args[0]) : "raise_exception() called"));
        yield return ("strftime_now", (args, _) => StrFTime(args.Count > 0 ? Str(args[0]) : "%Y-%m-%d", _now));
        yield return ("namespace", (args, kwargs) =>
        {
            var ns = new TemplateNamespace();
            if (args.Count > 0 && args[0] is TemplateDict d) foreach (var (k, v) in d) ns.Values[k] = v;
            foreach (var (k, v) in kwargs) ns.Values[k] = v;
            return ns;
        });
        yield return ("dict", (args, kwargs) =>
        {
            var d = args.Count > 0 && args[0] is TemplateDict src ? new TemplateDict(src) : new TemplateDict();
            foreach (var (k, v) in kwargs) d[k] = v;
            return d;
        });
        yield return ("range", (args, _) =>
        {
            long[] n = args.Select(a => a is long x ? x : throw new TemplateSyntaxException("range() takes integers", 0)).ToArray();
            var (start, stop, step) = n.Length switch
            {
                1 => (0L, n[0], 1L),
                2 => (n[0], n[1], 1L),
                3 => (n[0], n[1], n[2]),
                _ => throw new TemplateSyntaxException("range() takes 1 to 3 arguments", 0),
            };
            if (step == 0) throw new TemplateSyntaxException("range() step cannot be zero", 0);
            long count = step > 0 ? Math.Max(0, (stop - start + step - 1) / step) : Math.Max(0, (start - stop - step - 1) / -step);
            if (count > _maxChars) throw TooLarge(count);
            var list = new List<object?>((int)count);
            for (long i = 0; i < count; i++) list.Add(start + i * step);
            return list;
        });
    }

    /// <summary>Python's <c>strftime</c> for the directives templates use (%d %b %Y …), in the invariant culture.</summary>
    internal static string StrFTime(string format, DateTimeOffset t)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 >= format.Length) { sb.Append(format[i]); continue; }
            char c = format[++i];
            sb.Append(c switch
            {
                'Y' => t.ToString("yyyy", CultureInfo.InvariantCulture),
                'y' => t.ToString("yy", CultureInfo.InvariantCulture),
                'm' => t.ToString("MM", CultureInfo.InvariantCulture),
                'd' => t.ToString("dd", CultureInfo.InvariantCulture),
                'H' => t.ToString("HH", CultureInfo.InvariantCulture),
                'I' => t.ToString("hh", CultureInfo.InvariantCulture),
                'M' => t.ToString("mm", CultureInfo.InvariantCulture),
                'S' => t.ToString("ss", CultureInfo.InvariantCulture),
                'p' => t.Hour < 12 ? "AM" : "PM",
                'b' => t.ToString("MMM", CultureInfo.InvariantCulture),
                'B' => t.ToString("MMMM", CultureInfo.InvariantCulture),
                'a' => t.ToString("ddd", CultureInfo.InvariantCulture),
                'A' => t.ToString("dddd", CultureInfo.InvariantCulture),
                'j' => t.DayOfYear.ToString("000", CultureInfo.InvariantCulture),
                'e' => t.Day.ToString(CultureInfo.InvariantCulture).PadLeft(2),
                '%' => "%",
                _ => "%" + c,
            });
        }
        return sb.ToString();
    }

    private object? GetAttr(object? target, string name, int line)
    {
        switch (target)
        {
            case Undefined: throw new TemplateSyntaxException($"cannot read '{name}' of an undefined value", line);
            case null: return Undefined.Instance;
            case TemplateNamespace ns: return ns.Values.TryGetValue(name, out var nv) ? nv : Undefined.Instance;
            case TemplateDict d:
                if (d.TryGetValue(name, out var v)) return v;
                return name switch
                {
                    "items" => (TemplateCallable)((_, _) => d.Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList()),
                    "keys" => (TemplateCallable)((_, _) => d.Keys.Cast<object?>().ToList()),
                    "values" => (TemplateCallable)((_, _) => d.Values.ToList()),
                    "get" => (TemplateCallable)((a, _) => a.Count > 0 && a[0] is string k && d.TryGetValue(k, out var x) ? x : a.Count > 1 ? a[1] : null),
                    _ => Undefined.Instance,
                };
            case string s: return StringMethod(s, name, line);
            default: return Undefined.Instance;
        }
    }

    private object? StringMethod(string s, string name, int line)
    {
        static string Arg(List<object?> a, int i) => a.Count > i && a[i] is string x ? x : "";
        static char[]? Chars(List<object?> a) => a.Count > 0 && a[0] is string x ? x.ToCharArray() : null;
        return name switch
        {
            "strip" => (TemplateCallable)((a, _) => Chars(a) is { } c ? s.Trim(c) : s.Trim()),
            "lstrip" => (TemplateCallable)((a, _) => Chars(a) is { } c ? s.TrimStart(c) : s.TrimStart()),
            "rstrip" => (TemplateCallable)((a, _) => Chars(a) is { } c ? s.TrimEnd(c) : s.TrimEnd()),
            "upper" => (TemplateCallable)((_, _) => s.ToUpperInvariant()),
            "lower" => (TemplateCallable)((_, _) => s.ToLowerInvariant()),
            "title" => (TemplateCallable)((_, _) => Title(s)),
            "capitalize" => (TemplateCallable)((_, _) => Capitalize(s)),
            "startswith" => (TemplateCallable)((a, _) => a.Count > 0 && a[0] is List<object?> l ? l.Any(p => p is string x && s.StartsWith(x, StringComparison.Ordinal)) : s.StartsWith(Arg(a, 0), StringComparison.Ordinal)),
            "endswith" => (TemplateCallable)((a, _) => a.Count > 0 && a[0] is List<object?> l ? l.Any(p => p is string x && s.EndsWith(x, StringComparison.Ordinal)) : s.EndsWith(Arg(a, 0), StringComparison.Ordinal)),
            "split" => (TemplateCallable)((a, _) => Split(s, a)),
            "replace" => (TemplateCallable)((a, _) => Arg(a, 0).Length == 0 ? s : Bounded(s.Replace(Arg(a, 0), Arg(a, 1), StringComparison.Ordinal))),
            "find" => (TemplateCallable)((a, _) => (long)s.IndexOf(Arg(a, 0), StringComparison.Ordinal)),
            "count" => (TemplateCallable)((a, _) => Arg(a, 0).Length == 0 ? (long)s.Length + 1 : (long)((s.Length - s.Replace(Arg(a, 0), "", StringComparison.Ordinal).Length) / Arg(a, 0).Length)),
            "join" => (TemplateCallable)((a, _) => Bounded(string.Join(s, (a.Count > 0 && a[0] is List<object?> l ? l : []).Select(Str)))),
            "isdigit" => (TemplateCallable)((_, _) => s.Length > 0 && s.All(char.IsDigit)),
            "isspace" => (TemplateCallable)((_, _) => s.Length > 0 && s.All(char.IsWhiteSpace)),
            _ => throw new TemplateSyntaxException($"str has no attribute '{name}'", line),
        };
    }

    private static List<object?> Split(string s, List<object?> a)
    {
        long max = a.Count > 1 && a[1] is long m ? m : -1;
        if (a.Count == 0 || a[0] is null)
            return s.Split((char[]?)null, max < 0 ? int.MaxValue : (int)Math.Min(max + 1, int.MaxValue), StringSplitOptions.RemoveEmptyEntries).Cast<object?>().ToList();
        string sep = a[0] as string ?? throw new TemplateSyntaxException("split() separator must be a string", 0);
        if (sep.Length == 0) throw new TemplateSyntaxException("empty separator", 0);
        return s.Split(sep, max < 0 ? int.MaxValue : (int)Math.Min(max + 1, int.MaxValue)).Cast<object?>().ToList();
    }

    private static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        bool start = true;
        foreach (char c in s)
        {
            sb.Append(start ? char.ToUpperInvariant(c) : char.ToLowerInvariant(c));
            start = !char.IsLetter(c);
        }
        return sb.ToString();
    }

    private static string Capitalize(string s) => s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    private object? ApplyFilter(string name, object? v, List<object?> args, Dictionary<string, object?> kwargs, int line)
    {
        object? Kw(string key, int position, object? fallback = null) =>
            kwargs.TryGetValue(key, out var k) ? k : position >= 0 && args.Count > position ? args[position] : fallback;
        List<object?> Seq() => v switch
        {
            List<object?> l => l,
            string s => s.Select(c => (object?)c.ToString()).ToList(),
            TemplateDict d => d.Keys.Cast<object?>().ToList(),
            null or Undefined => [],
            _ => throw new TemplateSyntaxException($"filter '{name}' needs a sequence, not {TypeName(v)}", line),
        };
        switch (name)
        {
            case "safe": return v;
            case "trim": return Kw("chars", 0) is string chars ? Str(v).Trim(chars.ToCharArray()) : Str(v).Trim();
            case "upper": return Str(v).ToUpperInvariant();
            case "lower": return Str(v).ToLowerInvariant();
            case "title": return Title(Str(v));
            case "capitalize": return Capitalize(Str(v));
            case "string": return Str(v);
            case "length" or "count": return v switch { string s => (long)s.Length, TemplateDict d => (long)d.Count, _ => (long)Seq().Count };
            case "first": return Seq() is { Count: > 0 } f ? f[0] : Undefined.Instance;
            case "last": return Seq() is { Count: > 0 } l ? l[^1] : Undefined.Instance;
            case "list": return Seq().ToList();
            case "reverse": return v is string rs ? new string(rs.Reverse().ToArray()) : Seq().AsEnumerable().Reverse().ToList();
            case "join":
            {
                string sep = Kw("d", 0) is string d ? d : "";
                var items = Seq();
                if (Kw("attribute", 1) is string attr) items = items.Select(x => GetAttr(x, attr, line)).ToList();
                return Bounded(string.Join(sep, items.Select(Str)));
            }
            case "default" or "d":
            {
                bool boolean = Truthy(Kw("boolean", 1, false));
                return v is Undefined || (boolean && !Truthy(v)) ? Kw("default_value", 0, "") : v;
            }
            case "tojson":
            {
                int? indent = Kw("indent", 0) is long n ? (int)Math.Clamp(n, 0, 64) : null;
                var sb = new StringBuilder();
                AppendJson(sb, v, indent, Truthy(Kw("sort_keys", 1, false)), 0, _maxChars);
                return Bounded(sb.ToString());
            }
            case "int": return v switch { long n => n, double d => (long)d, bool b => b ? 1L : 0L, string s when long.TryParse(s.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out long pi) => pi, _ => Kw("default", 0, 0L) };
            case "float": return v switch { long n => (double)n, double d => d, string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out double pf) => pf, _ => Kw("default", 0, 0.0) };
            case "abs": return v switch { long n => Math.Abs(n), double d => Math.Abs(d), _ => throw new TemplateSyntaxException($"abs of {TypeName(v)}", line) };
            case "round": return v is double or long ? Math.Round(ToDouble(v), (int)(Kw("precision", 0) is long p ? Math.Clamp(p, 0, 15) : 0), MidpointRounding.ToEven) : throw new TemplateSyntaxException($"round of {TypeName(v)}", line);
            case "replace": return Bounded(Str(v).Replace(Str(Kw("old", 0)) is { Length: > 0 } o ? o : "\0\0never", Str(Kw("new", 1)), StringComparison.Ordinal));
            case "indent":
            {
                int width = Kw("width", 0, 4L) is long w ? (int)Math.Clamp(w, 0, 64) : 4;
                bool first = Truthy(Kw("first", 1, false)), blank = Truthy(Kw("blank", 2, false));
                var lines = Str(v).Split('\n');
                var pad = new string(' ', width);
                for (int i = 0; i < lines.Length; i++)
                    if ((i > 0 || first) && (blank || lines[i].Length > 0)) lines[i] = pad + lines[i];
                return Bounded(string.Join('\n', lines));
            }
            case "items": return v is TemplateDict id ? id.Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList() : throw new TemplateSyntaxException("items needs a dict", line);
            case "dictsort": return v is TemplateDict dd ? dd.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList() : throw new TemplateSyntaxException("dictsort needs a dict", line);
            case "sort":
            {
                var items = Seq().ToList();
                string? attr = Kw("attribute", 2) as string;
                items.Sort((a, b) => Compare(attr is null ? a : GetAttr(a, attr, line), attr is null ? b : GetAttr(b, attr, line)));
                if (Truthy(Kw("reverse", 0, false))) items.Reverse();
                return items;
            }
            case "unique":
            {
                var kept = new List<object?>();
                foreach (var x in Seq()) if (!kept.Any(k => TemplateValues.Equals(k, x))) kept.Add(x);
                return kept;
            }
            case "sum": return Seq().Aggregate((object?)0L, (acc, x) => Binary("+", acc, x, line));
            case "map":
            {
                if (Kw("attribute", -1) is string attr) return Seq().Select(x => GetAttr(x, attr, line) is Undefined && kwargs.TryGetValue("default", out var dv) ? dv : GetAttr(x, attr, line)).ToList();
                if (args.Count > 0 && args[0] is string filter) return Seq().Select(x => ApplyFilter(filter, x, args.Skip(1).ToList(), [], line)).ToList();
                throw new TemplateSyntaxException("map needs attribute= or a filter name", line);
            }
            case "selectattr" or "rejectattr":
            {
                if (args.Count == 0 || args[0] is not string attr) throw new TemplateSyntaxException($"{name} needs an attribute name", line);
                bool select = name == "selectattr";
                return Seq().Where(x =>
                {
                    var value = GetAttr(x, attr, line);
                    bool ok = args.Count > 1 && args[1] is string test ? ApplyTest(test, value, args.Skip(2).ToList(), line) : Truthy(value);
                    return ok == select;
                }).ToList();
            }
            case "select" or "reject":
            {
                bool select = name == "select";
                return Seq().Where(x => (args.Count > 0 && args[0] is string test ? ApplyTest(test, x, args.Skip(1).ToList(), line) : Truthy(x)) == select).ToList();
            }
            case "batch": throw new TemplateSyntaxException("filter 'batch' is not supported", line);
            default: throw new TemplateSyntaxException($"unknown filter '{name}'", line);
        }
    }

    private bool ApplyTest(string name, object? v, List<object?> args, int line)
    {
        object? Arg0() => args.Count > 0 ? args[0] : throw new TemplateSyntaxException($"test '{name}' needs an argument", line);
        return name switch
        {
            "defined" => v is not Undefined,
            "undefined" => v is Undefined,
            "none" => v is null,
            "true" => v is true,
            "false" => v is false,
            "boolean" => v is bool,
            "string" => v is string,
            "number" => v is long or double,
            "integer" => v is long,
            "float" => v is double,
            "mapping" => v is TemplateDict or TemplateNamespace,
            "sequence" => v is List<object?> or string or TemplateDict,
            "iterable" => v is List<object?> or string or TemplateDict,
            "callable" => v is TemplateCallable,
            "odd" => v is long o && o % 2 != 0,
            "even" => v is long e && e % 2 == 0,
            "divisibleby" => v is long n && Arg0() is long m && m != 0 && n % m == 0,
            "eq" or "equalto" or "==" => TemplateValues.Equals(v, Arg0()),
            "ne" or "!=" => !TemplateValues.Equals(v, Arg0()),
            "lt" or "lessthan" => Compare(v, Arg0()) < 0,
            "le" => Compare(v, Arg0()) <= 0,
            "gt" or "greaterthan" => Compare(v, Arg0()) > 0,
            "ge" => Compare(v, Arg0()) >= 0,
            "in" => Contains(Arg0(), v, line),
            "lower" => v is string ls && ls == ls.ToLowerInvariant(),
            "upper" => v is string us && us == us.ToUpperInvariant(),
            "sameas" => ReferenceEquals(v, Arg0()) || (v is null && Arg0() is null) || (v is bool b && Arg0() is bool c && b == c),
            _ => throw new TemplateSyntaxException($"unknown test '{name}'", line),
        };
    }
}
