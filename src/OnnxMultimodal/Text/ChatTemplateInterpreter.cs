using System.Text;
using static OnnxMultimodal.Text.TemplateValues;

namespace OnnxMultimodal.Text;

/// <summary>
/// Renders a parsed template. Every statement, loop iteration and call counts one step; rendering stops
/// with an error past <see cref="_maxSteps"/> steps, past <see cref="_maxChars"/> characters of output (or of
/// any one string or list built on the way) and past <see cref="MaxCallDepth"/> nested macro calls, so a
/// hostile template cannot hang or exhaust the host.
/// </summary>
internal sealed partial class ChatTemplateInterpreter
{
    private const int MaxCallDepth = 32;

    private sealed class Scope(Scope? parent)
    {
        public readonly Dictionary<string, object?> Vars = new(StringComparer.Ordinal);
        public Scope? Parent => parent;

        public bool TryGet(string name, out object? value)
        {
            for (var s = this; s is not null; s = s.Parent)
                if (s.Vars.TryGetValue(name, out value)) return true;
            value = null;
            return false;
        }
    }

    private enum Flow { Normal, Break, Continue }

    private readonly int _maxChars;
    private readonly long _maxSteps;
    private readonly DateTimeOffset _now;
    private StringBuilder _out = new();
    private long _steps;
    private int _callDepth;

    public ChatTemplateInterpreter(int maxChars, long maxSteps, DateTimeOffset now)
    {
        _maxChars = maxChars;
        _maxSteps = maxSteps;
        _now = now;
    }

    public string Render(List<Node> template, IReadOnlyDictionary<string, object?> context)
    {
        var globals = new Scope(null);
        foreach (var (name, fn) in Globals()) globals.Vars[name] = fn;
        var scope = new Scope(globals);
        foreach (var (k, v) in context) scope.Vars[k] = From(v);
        Exec(template, scope);
        return _out.ToString();
    }

    private void Step()
    {
        if (++_steps > _maxSteps) throw new TemplateLimitException($"rendering took more than {_maxSteps} steps");
    }

    /// <summary>Checks a string built by the template against the output bound.</summary>
    internal string Bounded(string s) =>
        s.Length <= _maxChars ? s : throw new TemplateLimitException($"a string of {s.Length} characters exceeds the bound of {_maxChars}");

    internal List<object?> Bounded(List<object?> l) =>
        l.Count <= _maxChars ? l : throw new TemplateLimitException($"a list of {l.Count} items exceeds the bound of {_maxChars}");

    internal TemplateLimitException TooLarge(long size) => new($"a value of {size} items exceeds the bound of {_maxChars}");

    private void Write(string s)
    {
        if (_out.Length + (long)s.Length > _maxChars) throw new TemplateLimitException($"output exceeds {_maxChars} characters");
        _out.Append(s);
    }

    private Flow Exec(List<Node> nodes, Scope scope)
    {
        foreach (var node in nodes)
        {
            Step();
            try
            {
                var flow = ExecOne(node, scope);
                if (flow != Flow.Normal) return flow;
            }
            catch (TemplateSyntaxException e) when (e.Line == 0 && node.Line > 0)
            {
                throw new TemplateSyntaxException(e.Message, node.Line);
            }
        }
        return Flow.Normal;
    }

    private Flow ExecOne(Node node, Scope scope)
    {
        switch (node)
        {
            case TextNode t: Write(t.Text); return Flow.Normal;
            case OutputNode o: Write(Str(Eval(o.Value, scope))); return Flow.Normal;
            case IfNode i:
                foreach (var (condition, body) in i.Branches)
                    if (Truthy(Eval(condition, scope))) return Exec(body, scope);
                return i.Else is null ? Flow.Normal : Exec(i.Else, scope);
            case ForNode f: ExecFor(f, scope); return Flow.Normal;
            case SetNode s:
            {
                var value = Eval(s.Value, scope);
                if (s.Attribute is not null)
                {
                    if (!scope.TryGet(s.Targets[0], out var target) || target is not TemplateNamespace ns)
                        throw new TemplateSyntaxException($"'{s.Targets[0]}' is not a namespace (only namespace attributes can be set)", s.Line);
                    ns.Values[s.Attribute] = value;
                }
                else if (s.Targets.Count == 1) scope.Vars[s.Targets[0]] = value;
                else Unpack(s.Targets, value, scope, s.Line);
                return Flow.Normal;
            }
            case SetBlockNode b:
            {
                var saved = _out;
                _out = new StringBuilder();
                try { Exec(b.Body, scope); scope.Vars[b.Target] = _out.ToString(); }
                finally { _out = saved; }
                return Flow.Normal;
            }
            case MacroNode m: scope.Vars[m.Name] = Macro(m, scope); return Flow.Normal;
            case BreakNode: return Flow.Break;
            case ContinueNode: return Flow.Continue;
            default: throw new TemplateSyntaxException($"cannot run {node.GetType().Name}", node.Line);
        }
    }

    private void ExecFor(ForNode f, Scope scope)
    {
        var iterable = Eval(f.Iterable, scope);
        List<object?> items = iterable switch
        {
            List<object?> l => l,
            TemplateDict d => d.Keys.Cast<object?>().ToList(),
            string s => s.Select(c => (object?)c.ToString()).ToList(),
            null or Undefined => [],
            _ => throw new TemplateSyntaxException($"cannot loop over {TypeName(iterable)}", f.Line),
        };
        if (f.Filter is not null)
        {
            var kept = new List<object?>();
            foreach (var item in items)
            {
                Step();
                var probe = new Scope(scope);
                Bind(f.Targets, item, probe, f.Line);
                if (Truthy(Eval(f.Filter, probe))) kept.Add(item);
            }
            items = kept;
        }
        if (items.Count == 0)
        {
            if (f.Else is not null) Exec(f.Else, scope);
            return;
        }
        var inner = new Scope(scope);   // one scope for the whole loop: a set persists across iterations, not after the loop
        for (int i = 0; i < items.Count; i++)
        {
            Step();
            Bind(f.Targets, items[i], inner, f.Line);
            inner.Vars["loop"] = new TemplateDict
            {
                ["index"] = (long)i + 1, ["index0"] = (long)i, ["revindex"] = (long)(items.Count - i), ["revindex0"] = (long)(items.Count - i - 1),
                ["first"] = i == 0, ["last"] = i == items.Count - 1, ["length"] = (long)items.Count,
                ["previtem"] = i > 0 ? items[i - 1] : Undefined.Instance, ["nextitem"] = i + 1 < items.Count ? items[i + 1] : Undefined.Instance,
                ["cycle"] = (TemplateCallable)((args, _) => args.Count == 0 ? Undefined.Instance : args[i % args.Count]),
            };
            if (Exec(f.Body, inner) == Flow.Break) break;
        }
    }

    private void Bind(List<string> targets, object? item, Scope scope, int line)
    {
        if (targets.Count == 1) scope.Vars[targets[0]] = item;
        else Unpack(targets, item, scope, line);
    }

    private static void Unpack(List<string> targets, object? value, Scope scope, int line)
    {
        if (value is not List<object?> l || l.Count != targets.Count)
            throw new TemplateSyntaxException($"cannot unpack {TypeName(value)} into {targets.Count} names", line);
        for (int i = 0; i < targets.Count; i++) scope.Vars[targets[i]] = l[i];
    }

    private TemplateCallable Macro(MacroNode m, Scope defined) => (args, kwargs) =>
    {
        if (++_callDepth > MaxCallDepth) throw new TemplateLimitException($"macro calls nested deeper than {MaxCallDepth}");
        try
        {
            var scope = new Scope(defined);
            for (int i = 0; i < m.Parameters.Count; i++)
            {
                var (name, fallback) = m.Parameters[i];
                scope.Vars[name] = i < args.Count ? args[i]
                    : kwargs.TryGetValue(name, out var v) ? v
                    : fallback is null ? Undefined.Instance : Eval(fallback, defined);
            }
            var saved = _out;
            _out = new StringBuilder();
            try
            {
                Exec(m.Body, scope);
                return _out.ToString();
            }
            finally { _out = saved; }
        }
        finally { _callDepth--; }
    };

    // ---- expressions ----

    private object? Eval(Expr e, Scope scope)
    {
        switch (e)
        {
            case LiteralExpr l: return l.Value;
            case NameExpr n: return scope.TryGet(n.Name, out var v) ? v : Undefined.Instance;
            case ListExpr l: return Bounded(l.Items.Select(x => Eval(x, scope)).ToList());
            case DictExpr d:
            {
                var dict = new TemplateDict();
                foreach (var (k, val) in d.Items)
                    dict[Eval(k, scope) is string key ? key : throw new TemplateSyntaxException("dict keys must be strings", d.Line)] = Eval(val, scope);
                return dict;
            }
            case AttrExpr a: return GetAttr(Eval(a.Target, scope), a.Name, a.Line);
            case IndexExpr i: return GetItem(Eval(i.Target, scope), Eval(i.Index, scope), i.Line);
            case SliceExpr s: return Slice(Eval(s.Target, scope), Opt(s.Start, scope), Opt(s.Stop, scope), Opt(s.Step, scope), s.Line);
            case CallExpr c:
            {
                Step();
                var callee = Eval(c.Callee, scope);
                if (callee is not TemplateCallable fn)
                    throw new TemplateSyntaxException(callee is Undefined ? $"'{Describe(c.Callee)}' is undefined" : $"{TypeName(callee)} is not callable", c.Line);
                var (args, kwargs) = EvalArgs(c.Args, scope);
                return fn(args, kwargs);
            }
            case FilterExpr f:
            {
                Step();
                var operand = Eval(f.Operand, scope);
                var (args, kwargs) = EvalArgs(f.Args, scope);
                return ApplyFilter(f.Name, operand, args, kwargs, f.Line);
            }
            case TestExpr t:
            {
                var operand = t.Operand is NameExpr n2 && !scope.TryGet(n2.Name, out _) ? Undefined.Instance : Eval(t.Operand, scope);
                var (args, _) = EvalArgs(t.Args, scope);
                return ApplyTest(t.Name, operand, args, t.Line) != t.Negated;
            }
            case UnaryExpr u:
            {
                var operand = Eval(u.Operand, scope);
                return u.Op switch
                {
                    "not" => !Truthy(operand),
                    _ => operand switch
                    {
                        long n => (object)(-n),
                        double d => (object)(-d),
                        bool b => (object)(b ? -1L : 0L),
                        _ => throw new TemplateSyntaxException($"cannot negate {TypeName(operand)}", u.Line),
                    },
                };
            }
            case BinaryExpr b:
            {
                var left = Eval(b.Left, scope);
                if (b.Op == "and") return Truthy(left) ? Eval(b.Right, scope) : left;
                if (b.Op == "or") return Truthy(left) ? left : Eval(b.Right, scope);
                return Binary(b.Op, left, Eval(b.Right, scope), b.Line);
            }
            case ConditionalExpr c:
                return Truthy(Eval(c.Condition, scope)) ? Eval(c.Then, scope) : c.Else is null ? Undefined.Instance : Eval(c.Else, scope);
            default: throw new TemplateSyntaxException($"cannot evaluate {e.GetType().Name}", e.Line);
        }
    }

    private object? Opt(Expr? e, Scope scope) => e is null ? null : Eval(e, scope);

    private static string Describe(Expr e) => e switch
    {
        NameExpr n => n.Name,
        AttrExpr a => $"{Describe(a.Target)}.{a.Name}",
        _ => "expression",
    };

    private (List<object?> Args, Dictionary<string, object?> Kwargs) EvalArgs(Arguments a, Scope scope)
    {
        var args = a.Positional.Select(x => Eval(x, scope)).ToList();
        var kwargs = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (name, value) in a.Keywords) kwargs[name] = Eval(value, scope);
        return (args, kwargs);
    }

    private object? GetItem(object? target, object? index, int line)
    {
        switch (target, index)
        {
            case (Undefined, _): throw new TemplateSyntaxException("cannot index an undefined value", line);
            case (null, _): return Undefined.Instance;
            case (List<object?> l, long or bool):
            {
                long i = (long)ToDouble(index);
                if (i < 0) i += l.Count;
                return i >= 0 && i < l.Count ? l[(int)i] : Undefined.Instance;
            }
            case (string s, long or bool):
            {
                long i = (long)ToDouble(index);
                if (i < 0) i += s.Length;
                return i >= 0 && i < s.Length ? s[(int)i].ToString() : Undefined.Instance;
            }
            case (TemplateDict d, string key): return d.TryGetValue(key, out var v) ? v : GetAttr(target, key, line);
            case (_, string name): return GetAttr(target, name, line);
            default: return Undefined.Instance;
        }
    }
}
