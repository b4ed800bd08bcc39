using System.Globalization;

namespace OnnxMultimodal.Text;

// The expression grammar of the chat-template parser, loosest binding first.
internal sealed partial class ChatTemplateParser
{
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
}
