using static OnnxMultimodal.Text.TemplateValues;

namespace OnnxMultimodal.Text;

// Slicing, binary operators and membership with Python's semantics (integer floor division and modulo,
// string and list repetition bounded by the output limit).
internal sealed partial class ChatTemplateInterpreter
{
    private object? Slice(object? target, object? start, object? stop, object? step, int line)
    {
        static int? Int(object? v, int line) => v switch
        {
            null or Undefined => null,
            long n => (int)Math.Clamp(n, int.MinValue / 2, int.MaxValue / 2),
            _ => throw new TemplateSyntaxException("slice bounds must be integers", line),
        };
        int count = target switch
        {
            List<object?> l => l.Count,
            string s => s.Length,
            _ => throw new TemplateSyntaxException($"cannot slice {TypeName(target)}", line),
        };
        int st = Int(step, line) ?? 1;
        if (st == 0) throw new TemplateSyntaxException("slice step cannot be zero", line);
        int Norm(int? v, int dflt) => v is not int x ? dflt : x < 0 ? Math.Max(x + count, st < 0 ? -1 : 0) : Math.Min(x, st < 0 ? count - 1 : count);
        int from = Norm(Int(start, line), st > 0 ? 0 : count - 1), to = Norm(Int(stop, line), st > 0 ? count : -1);
        var picked = new List<int>();
        for (int i = from; st > 0 ? i < to : i > to; i += st) picked.Add(i);
        return target is string str
            ? string.Concat(picked.Select(i => str[i]))
            : picked.Select(i => ((List<object?>)target!)[i]).ToList();
    }

    private object? Binary(string op, object? a, object? b, int line)
    {
        switch (op)
        {
            case "==": return TemplateValues.Equals(a, b);
            case "!=": return !TemplateValues.Equals(a, b);
            case "<": return Compare(a, b) < 0;
            case ">": return Compare(a, b) > 0;
            case "<=": return Compare(a, b) <= 0;
            case ">=": return Compare(a, b) >= 0;
            case "in": return Contains(b, a, line);
            case "not in": return !Contains(b, a, line);
            case "~": return Bounded(Str(a) + Str(b));
        }
        if (op == "+" && a is string sa && b is string sb) return Bounded(sa + sb);
        if (op == "+" && a is List<object?> la && b is List<object?> lb) return Bounded([.. la, .. lb]);
        if (op == "*" && (a is string || b is string) && (a is long || b is long))
        {
            string s = a as string ?? (string)b!;
            long n = a is long an ? an : (long)b!;
            return n <= 0 ? "" : (long)s.Length * n > _maxChars ? throw TooLarge((long)s.Length * n) : string.Concat(Enumerable.Repeat(s, (int)n));
        }
        if (op == "*" && (a is List<object?> || b is List<object?>) && (a is long || b is long))
        {
            var l = a as List<object?> ?? (List<object?>)b!;
            long m = a is long am ? am : (long)b!;
            return (long)l.Count * m > _maxChars ? throw TooLarge((long)l.Count * m) : Enumerable.Repeat(l, (int)Math.Max(0, m)).SelectMany(x => x).ToList();
        }
        if (!IsNumber(a) || !IsNumber(b) || a is Undefined || b is Undefined)
            throw new TemplateSyntaxException($"unsupported operand types for {op}: {TypeName(a)} and {TypeName(b)}", line);
        if (a is not double && b is not double && op is not "/" and not "**")
        {
            long x = (long)ToDouble(a), y = (long)ToDouble(b);
            switch (op)
            {
                case "+": return x + y;
                case "-": return x - y;
                case "*": return x * y;
                case "//": return y == 0 ? throw new TemplateSyntaxException("integer division by zero", line) : (long)Math.Floor((double)x / y);
                case "%": return y == 0 ? throw new TemplateSyntaxException("modulo by zero", line) : ((x % y) + y) % y;
            }
        }
        double p = ToDouble(a), q = ToDouble(b);
        return op switch
        {
            "+" => p + q,
            "-" => p - q,
            "*" => p * q,
            "/" => q == 0 ? throw new TemplateSyntaxException("division by zero", line) : p / q,
            "//" => q == 0 ? throw new TemplateSyntaxException("division by zero", line) : Math.Floor(p / q),
            "%" => q == 0 ? throw new TemplateSyntaxException("modulo by zero", line) : p - q * Math.Floor(p / q),
            "**" => a is long && b is long && q >= 0 ? (object)(long)Math.Pow(p, q) : Math.Pow(p, q),
            _ => throw new TemplateSyntaxException($"unknown operator {op}", line),
        };
    }

    private static bool Contains(object? container, object? item, int line) => container switch
    {
        string s when item is string sub => s.Contains(sub, StringComparison.Ordinal),
        List<object?> l => l.Any(x => TemplateValues.Equals(x, item)),
        TemplateDict d => item is string key && d.ContainsKey(key),
        TemplateNamespace ns => item is string k && ns.Values.ContainsKey(k),
        _ => throw new TemplateSyntaxException($"'in' needs a string, list or dict on its right, not {TypeName(container)}", line),
    };
}
