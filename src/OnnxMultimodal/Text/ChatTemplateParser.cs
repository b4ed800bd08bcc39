using System.Globalization;

namespace OnnxMultimodal.Text;

/// <summary>
/// Recursive-descent parser for the Jinja subset chat templates use. Precedence follows Jinja's own parser:
/// conditional &lt; or &lt; and &lt; not &lt; comparisons (==, !=, &lt;, in, not in …) &lt; + - &lt; ~ &lt;
/// * / // % &lt; ** &lt; unary - &lt; postfix (. [] ()) and filters/tests.
/// Nesting is bounded (<see cref="MaxDepth"/>) so a hostile template cannot exhaust the stack.
/// </summary>
internal sealed class ChatTemplateParser
{
    public const int MaxDepth = 64;

    private readonly List<Segment> _segments;
    private int _segment;
    private List<TemplateToken> _tokens = [];
    private int _pos;
    private int _depth;

    private ChatTemplateParser(List<Segment> segments) => _segments = segments;

    public static List<Node> Parse(string source)
    {
        var parser = new ChatTemplateParser(ChatTemplateLexer.Split(source));
        var body = parser.ParseBody([], out string? end);
        if (end is not null) throw new TemplateSyntaxException($"unexpected '{{% {end} %}}'", parser.Line);
        return body;
    }

    private int Line => _pos < _tokens.Count ? _tokens[_pos].Line : _tokens.Count > 0 ? _tokens[^1].Line : 0;

    /// <summary>Parses statements until one of <paramref name="terminators"/> (returned in <paramref name="end"/>)
    /// or the end of the template (end = null).</summary>
    private List<Node> ParseBody(string[] terminators, out string? end)
    {
        Enter();
        var nodes = new List<Node>();
        while (_segment < _segments.Count)
        {
            var seg = _segments[_segment++];
            switch (seg)
            {
                case TextSegment t:
                    nodes.Add(new TextNode(t.Text, t.Line));
                    break;
                case OutputSegment o:
                    Begin(o.Tokens);
                    nodes.Add(new OutputNode(ParseExpression(), o.Line));
                    ExpectEnd();
                    break;
                case StatementSegment s:
                    Begin(s.Tokens);
                    string keyword = ExpectName();
                    if (terminators.Contains(keyword)) { end = keyword; _depth--; return nodes; }
                    if (ParseStatement(keyword, s.Line) is { } node) nodes.Add(node);
                    break;
            }
        }
        _depth--;
        if (terminators.Length > 0) throw new TemplateSyntaxException($"missing '{{% {terminators[^1]} %}}'", _segments.Count > 0 ? _segments[^1].Line : 0);
        end = null;
        return nodes;
    }

    private Node? ParseStatement(string keyword, int line)
    {
        switch (keyword)
        {
            case "if":
            {
                var branches = new List<(Expr, List<Node>)>();
                var condition = ParseExpression();
                ExpectEnd();
                while (true)
                {
                    var body = ParseBody(["elif", "else", "endif"], out string? end);
                    branches.Add((condition, body));
                    if (end == "elif") { condition = ParseExpression(); ExpectEnd(); continue; }
                    List<Node>? elseBody = null;
                    if (end == "else") { ExpectEnd(); elseBody = ParseBody(["endif"], out _); }
                    ExpectEnd();
                    return new IfNode(branches, elseBody, line);
                }
            }
            case "for":
            {
                var targets = new List<string> { ExpectName() };
                while (Accept(",")) targets.Add(ExpectName());
                ExpectKeyword("in");
                var iterable = ParseOr();   // no conditional here: "for x in xs if cond" filters
                Expr? filter = AcceptKeyword("if") ? ParseOr() : null;
                if (AcceptKeyword("recursive")) throw new TemplateSyntaxException("recursive loops are not supported", line);
                ExpectEnd();
                var body = ParseBody(["else", "endfor"], out string? end);
                List<Node>? elseBody = null;
                if (end == "else") { ExpectEnd(); elseBody = ParseBody(["endfor"], out _); }
                ExpectEnd();
                return new ForNode(targets, iterable, filter, body, elseBody, line);
            }
            case "set":
            {
                var targets = new List<string> { ExpectName() };
                string? attribute = null;
                if (Accept(".")) attribute = ExpectName();
                else while (Accept(",")) targets.Add(ExpectName());
                if (!Accept("="))
                {
                    if (attribute is not null || targets.Count > 1) throw new TemplateSyntaxException("block set takes one name", line);
                    ExpectEnd();
                    var body = ParseBody(["endset"], out _);
                    ExpectEnd();
                    return new SetBlockNode(targets[0], body, line);
                }
                var value = ParseTupleOrExpression();
                ExpectEnd();
                return new SetNode(targets, attribute, value, line);
            }
            case "macro":
            {
                string name = ExpectName();
                Expect("(");
                var parameters = new List<(string, Expr?)>();
                while (!Accept(")"))
                {
                    if (parameters.Count > 0) Expect(",");
                    if (Accept(")")) break;
                    string p = ExpectName();
                    parameters.Add((p, Accept("=") ? ParseExpression() : null));
                }
                ExpectEnd();
                var body = ParseBody(["endmacro"], out _);
                ExpectEnd();
                return new MacroNode(name, parameters, body, line);
            }
            case "generation":   // transformers' marker around assistant text (for masks); renders its body
            {
                ExpectEnd();
                var body = ParseBody(["endgeneration"], out _);
                ExpectEnd();
                return new IfNode([(new LiteralExpr(true, line), body)], null, line);
            }
            case "break": ExpectEnd(); return new BreakNode(line);
            case "continue": ExpectEnd(); return new ContinueNode(line);
            default:
                throw new TemplateSyntaxException($"unknown or unsupported statement '{keyword}'", line);
        }
    }

    // ---- expressions ----

    private Expr ParseTupleOrExpression()
    {
        var first = ParseExpression();
        if (!Peek(",")) return first;
        var items = new List<Expr> { first };
        while (Accept(",") && !AtEnd) items.Add(ParseExpression());
        return new ListExpr(items, true, first.Line);
    }

    private Expr ParseExpression()
    {
        Enter();
        var value = ParseOr();
        if (AcceptKeyword("if"))
        {
            var condition = ParseOr();
            Expr? otherwise = AcceptKeyword("else") ? ParseExpression() : null;
            value = new ConditionalExpr(condition, value, otherwise, value.Line);
        }
        _depth--;
        return value;
    }

    private Expr ParseOr()
    {
        var left = ParseAnd();
        while (AcceptKeyword("or")) left = new BinaryExpr("or", left, ParseAnd(), left.Line);
        return left;
    }

    private Expr ParseAnd()
    {
        var left = ParseNot();
        while (AcceptKeyword("and")) left = new BinaryExpr("and", left, ParseNot(), left.Line);
        return left;
    }

    private Expr ParseNot()
    {
        if (!AcceptKeyword("not")) return ParseCompare();
        Enter();
        var operand = ParseNot();
        _depth--;
        return new UnaryExpr("not", operand, operand.Line);
    }

    private Expr ParseCompare()
    {
        var left = ParseAdd();
        while (true)
        {
            string? op = null;
            foreach (var o in new[] { "==", "!=", "<=", ">=", "<", ">" }) if (Accept(o)) { op = o; break; }
            if (op is null && AcceptKeyword("in")) op = "in";
            if (op is null && PeekName("not") && PeekName("in", 1)) { _pos += 2; op = "not in"; }
            if (op is null) return left;
            left = new BinaryExpr(op, left, ParseAdd(), left.Line);   // chains (a < b < c) evaluate pairwise, left first
        }
    }

    private Expr ParseAdd()
    {
        var left = ParseConcat();
        while (true)
        {
            if (Accept("+")) left = new BinaryExpr("+", left, ParseConcat(), left.Line);
            else if (Accept("-")) left = new BinaryExpr("-", left, ParseConcat(), left.Line);
            else return left;
        }
    }

    private Expr ParseConcat()
    {
        var left = ParseMul();
        while (Accept("~")) left = new BinaryExpr("~", left, ParseMul(), left.Line);
        return left;
    }

    private Expr ParseMul()
    {
        var left = ParsePow();
        while (true)
        {
            string? op = null;
            foreach (var o in new[] { "//", "*", "/", "%" }) if (Accept(o)) { op = o; break; }
            if (op is null) return left;
            left = new BinaryExpr(op, left, ParsePow(), left.Line);
        }
    }

    private Expr ParsePow()
    {
        var left = ParseUnary();
        while (Accept("**")) left = new BinaryExpr("**", left, ParseUnary(), left.Line);
        return left;
    }

    private Expr ParseUnary()
    {
        Enter();
        Expr value;
        if (Accept("-")) value = new UnaryExpr("-", ParseUnary(), Line);
        else if (Accept("+")) value = ParseUnary();
        else value = ParsePostfix(ParsePrimary());
        value = ParseFiltersAndTests(value);
        _depth--;
        return value;
    }

    private Expr ParsePrimary()
    {
        if (AtEnd) throw new TemplateSyntaxException("expression expected", Line);
        var t = _tokens[_pos++];
        switch (t.Kind)
        {
            case TokenKind.String:
            {
                string s = t.Text;
                while (!AtEnd && _tokens[_pos].Kind == TokenKind.String) s += _tokens[_pos++].Text;   // adjacent literals join
                return new LiteralExpr(s, t.Line);
            }
            case TokenKind.Integer:
                return long.TryParse(t.Text, NumberStyles.None, CultureInfo.InvariantCulture, out long n)
                    ? new LiteralExpr(n, t.Line) : throw new TemplateSyntaxException($"integer '{t.Text}' out of range", t.Line);
            case TokenKind.Float:
                return new LiteralExpr(double.Parse(t.Text, CultureInfo.InvariantCulture), t.Line);
            case TokenKind.Name:
                return t.Text switch
                {
                    "true" or "True" => new LiteralExpr(true, t.Line),
                    "false" or "False" => new LiteralExpr(false, t.Line),
                    "none" or "None" => new LiteralExpr(null, t.Line),
                    _ => new NameExpr(t.Text, t.Line),
                };
        }
        switch (t.Text)
        {
            case "(":
            {
                if (Accept(")")) return new ListExpr([], true, t.Line);
                var first = ParseExpression();
                if (Accept(")")) return first;
                var items = new List<Expr> { first };
                while (Accept(",") && !Peek(")")) items.Add(ParseExpression());
                Expect(")");
                return new ListExpr(items, true, t.Line);
            }
            case "[":
            {
                var items = new List<Expr>();
                while (!Accept("]"))
                {
                    if (items.Count > 0) { Expect(","); if (Accept("]")) break; }
                    items.Add(ParseExpression());
                }
                return new ListExpr(items, false, t.Line);
            }
            case "{":
            {
                var items = new List<(Expr, Expr)>();
                while (!Accept("}"))
                {
                    if (items.Count > 0) { Expect(","); if (Accept("}")) break; }
                    var key = ParseExpression();
                    Expect(":");
                    items.Add((key, ParseExpression()));
                }
                return new DictExpr(items, t.Line);
            }
        }
        throw new TemplateSyntaxException($"unexpected '{t.Text}'", t.Line);
    }

    private Expr ParsePostfix(Expr value)
    {
        while (true)
        {
            int line = Line;
            if (Accept(".")) value = new AttrExpr(value, ExpectNameOrNumber(), line);
            else if (Accept("[")) value = ParseSubscript(value, line);
            else if (Accept("(")) value = new CallExpr(value, ParseArguments(), line);
            else return value;
        }
    }

    private Expr ParseSubscript(Expr target, int line)
    {
        Expr? start = Peek(":") ? null : ParseExpression();
        if (Accept("]")) return new IndexExpr(target, start!, line);
        Expect(":");
        Expr? stop = Peek(":") || Peek("]") ? null : ParseExpression();
        Expr? step = null;
        if (Accept(":") && !Peek("]")) step = ParseExpression();
        Expect("]");
        return new SliceExpr(target, start, stop, step, line);
    }

    /// <summary>Arguments after an opening parenthesis, through the closing one.</summary>
    private Arguments ParseArguments()
    {
        var positional = new List<Expr>();
        var keywords = new List<(string, Expr)>();
        while (!Accept(")"))
        {
            if (positional.Count + keywords.Count > 0) { Expect(","); if (Accept(")")) break; }
            if (!AtEnd && _tokens[_pos].Kind == TokenKind.Name && _pos + 1 < _tokens.Count && _tokens[_pos + 1].Text == "=")
            {
                string name = _tokens[_pos].Text;
                _pos += 2;
                keywords.Add((name, ParseExpression()));
            }
            else if (keywords.Count > 0) throw new TemplateSyntaxException("positional argument after a keyword argument", Line);
            else positional.Add(ParseExpression());
        }
        return new Arguments(positional, keywords);
    }

    private Expr ParseFiltersAndTests(Expr value)
    {
        while (true)
        {
            int line = Line;
            if (Accept("|"))
            {
                string name = ExpectName();
                var args = Accept("(") ? ParseArguments() : Arguments.None;
                value = ParsePostfix(new FilterExpr(value, name, args, line));
            }
            else if (AcceptKeyword("is"))
            {
                bool negated = AcceptKeyword("not");
                string name = ExpectName();
                Arguments args = Arguments.None;
                if (Accept("(")) args = ParseArguments();
                else if (!AtEnd && _tokens[_pos].Kind is TokenKind.String or TokenKind.Integer or TokenKind.Float)
                    args = new Arguments([ParsePrimary()], []);   // "is divisibleby 3", "is equalto 'x'"
                value = new TestExpr(value, name, args, negated, line);
            }
            else return value;
        }
    }

    // ---- token helpers ----

    private void Begin(List<TemplateToken> tokens)
    {
        _tokens = tokens;
        _pos = 0;
    }

    private void Enter()
    {
        if (++_depth > MaxDepth) throw new TemplateSyntaxException($"nested deeper than {MaxDepth} levels", Line);
    }

    private bool AtEnd => _pos >= _tokens.Count;
    private bool Peek(string op) => !AtEnd && _tokens[_pos] is { Kind: TokenKind.Operator } t && t.Text == op;
    private bool PeekName(string name, int ahead = 0) =>
        _pos + ahead < _tokens.Count && _tokens[_pos + ahead] is { Kind: TokenKind.Name } t && t.Text == name;

    private bool Accept(string op)
    {
        if (!Peek(op)) return false;
        _pos++;
        return true;
    }

    private bool AcceptKeyword(string name)
    {
        if (!PeekName(name)) return false;
        _pos++;
        return true;
    }

    private void Expect(string op)
    {
        if (!Accept(op)) throw new TemplateSyntaxException($"'{op}' expected{Found()}", Line);
    }

    private void ExpectKeyword(string name)
    {
        if (!AcceptKeyword(name)) throw new TemplateSyntaxException($"'{name}' expected{Found()}", Line);
    }

    private string ExpectName()
    {
        if (AtEnd || _tokens[_pos].Kind != TokenKind.Name) throw new TemplateSyntaxException($"name expected{Found()}", Line);
        return _tokens[_pos++].Text;
    }

    private string ExpectNameOrNumber()
    {
        if (!AtEnd && _tokens[_pos].Kind == TokenKind.Integer) return _tokens[_pos++].Text;   // "items.0"
        return ExpectName();
    }

    private void ExpectEnd()
    {
        if (!AtEnd) throw new TemplateSyntaxException($"end of tag expected{Found()}", Line);
    }

    private string Found() => AtEnd ? " at the end of the tag" : $", found '{_tokens[_pos].Text}'";
}
