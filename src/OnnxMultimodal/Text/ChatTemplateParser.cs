namespace OnnxMultimodal.Text;

/// <summary>
/// Recursive-descent parser for the Jinja subset chat templates use. Precedence follows Jinja's own parser:
/// conditional &lt; or &lt; and &lt; not &lt; comparisons (==, !=, &lt;, in, not in …) &lt; + - &lt; ~ &lt;
/// * / // % &lt; ** &lt; unary - &lt; postfix (. [] ()) and filters/tests.
/// Nesting is bounded (<see cref="MaxDepth"/>) so a hostile template cannot exhaust the stack.
/// </summary>
internal sealed partial class ChatTemplateParser
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
