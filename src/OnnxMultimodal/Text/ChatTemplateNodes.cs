namespace OnnxMultimodal.Text;

// The syntax tree of a chat template: statements (what a template does) and expressions (what it computes).

internal abstract record Expr(int Line);
internal sealed record LiteralExpr(object? Value, int Line) : Expr(Line);
internal sealed record NameExpr(string Name, int Line) : Expr(Line);
internal sealed record ListExpr(List<Expr> Items, bool IsTuple, int Line) : Expr(Line);
internal sealed record DictExpr(List<(Expr Key, Expr Value)> Items, int Line) : Expr(Line);
internal sealed record AttrExpr(Expr Target, string Name, int Line) : Expr(Line);
internal sealed record IndexExpr(Expr Target, Expr Index, int Line) : Expr(Line);
internal sealed record SliceExpr(Expr Target, Expr? Start, Expr? Stop, Expr? Step, int Line) : Expr(Line);
internal sealed record CallExpr(Expr Callee, Arguments Args, int Line) : Expr(Line);
internal sealed record FilterExpr(Expr Operand, string Name, Arguments Args, int Line) : Expr(Line);
internal sealed record TestExpr(Expr Operand, string Name, Arguments Args, bool Negated, int Line) : Expr(Line);
internal sealed record UnaryExpr(string Op, Expr Operand, int Line) : Expr(Line);
internal sealed record BinaryExpr(string Op, Expr Left, Expr Right, int Line) : Expr(Line);
internal sealed record ConditionalExpr(Expr Condition, Expr Then, Expr? Else, int Line) : Expr(Line);

/// <summary>Positional and keyword arguments of a call, filter or test.</summary>
internal sealed record Arguments(List<Expr> Positional, List<(string Name, Expr Value)> Keywords)
{
    public static Arguments None { get; } = new([], []);
}

internal abstract record Node(int Line);
internal sealed record TextNode(string Text, int Line) : Node(Line);
internal sealed record OutputNode(Expr Value, int Line) : Node(Line);
internal sealed record IfNode(List<(Expr Condition, List<Node> Body)> Branches, List<Node>? Else, int Line) : Node(Line);
internal sealed record ForNode(List<string> Targets, Expr Iterable, Expr? Filter, List<Node> Body, List<Node>? Else, int Line) : Node(Line);
/// <summary><c>set x = …</c>, <c>set a, b = …</c> or <c>set ns.attr = …</c> (Attribute set).</summary>
internal sealed record SetNode(List<string> Targets, string? Attribute, Expr Value, int Line) : Node(Line);
internal sealed record SetBlockNode(string Target, List<Node> Body, int Line) : Node(Line);
internal sealed record MacroNode(string Name, List<(string Name, Expr? Default)> Parameters, List<Node> Body, int Line) : Node(Line);
internal sealed record BreakNode(int Line) : Node(Line);
internal sealed record ContinueNode(int Line) : Node(Line);
