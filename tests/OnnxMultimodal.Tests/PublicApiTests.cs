using System.Reflection;
using System.Runtime.CompilerServices;
using System.Text;
using OnnxMultimodal.Pipeline;

namespace OnnxMultimodal.Tests;

/// <summary>
/// The library's public surface as text (types, then members with their signatures, sorted), compared to the
/// committed PublicApi.txt, so that every change to what users can touch is deliberate and reviewed.
/// Regenerate after an intended change:
///   OMM_UPDATE_API=1 dotnet test OnnxMultimodal.sln -c Release --filter FullyQualifiedName~PublicApiTests
/// </summary>
public class PublicApiTests
{
    private static string ApiFile => Path.Combine(TestData.RepoRoot, "tests", "OnnxMultimodal.Tests", "PublicApi.txt");

    [Test]
    public void PublicSurfaceMatchesTheCommittedListing()
    {
        string actual = Listing(typeof(MultimodalPipeline).Assembly);
        if (Environment.GetEnvironmentVariable("OMM_UPDATE_API") == "1")
        {
            File.WriteAllText(ApiFile, actual);
            Assert.Pass($"wrote {ApiFile}");
        }
        Assert.That(File.Exists(ApiFile), $"{ApiFile} is missing; create it with OMM_UPDATE_API=1 (see this test's summary)");
        string expected = File.ReadAllText(ApiFile).ReplaceLineEndings("\n");
        if (expected == actual) return;
        var exp = expected.Split('\n').ToHashSet();
        var act = actual.Split('\n').ToHashSet();
        string added = string.Join("\n", act.Except(exp).Select(l => "  + " + l));
        string removed = string.Join("\n", exp.Except(act).Select(l => "  - " + l));
        Assert.Fail($"The public API changed.\n{added}\n{removed}\nIf this is intended, regenerate tests/OnnxMultimodal.Tests/PublicApi.txt:\n" +
                    "  OMM_UPDATE_API=1 dotnet test OnnxMultimodal.sln -c Release --filter FullyQualifiedName~PublicApiTests");
    }

    [Test]
    public void EngineInternalsAreNotPublic()
    {
        // The names issue 15 calls engine details: none may be part of the package's surface.
        string[] internals = ["SessionFactory", "OnnxHeader", "SplitMix64", "PhaseTimer", "GpuMonitor", "KvCache", "DecodeState", "Sampler",
                              "OrtDecodeEngine", "GenAiDecodeEngine", "GraphSession", "CudaRuntime", "DeviceMemory", "IDecodeEngine"];
        var exported = typeof(MultimodalPipeline).Assembly.GetExportedTypes().Select(t => t.Name).ToHashSet();
        Assert.That(internals.Where(exported.Contains), Is.Empty);
        Assert.That(exported, Does.Contain("MultimodalPipeline").And.Contain("OnnxMultimodalException"));
    }

    [Test]
    public void ListingShowsSignaturesWithNullability()
    {
        string text = Listing(typeof(MultimodalPipeline).Assembly);
        Assert.That(text, Does.Contain("  method static Task<MultimodalPipeline> LoadAsync(string path, PipelineOptions? options = null, IProgress<float>? progress = null, CancellationToken cancellationToken = default)"));
        Assert.That(text, Does.Contain("  property float? GuidanceScale { get; init; }"));
    }

    /// <summary>One line per public type ("kind Namespace.Name : bases") followed by its public and protected members, indented.</summary>
    internal static string Listing(Assembly assembly)
    {
        var sb = new StringBuilder();
        foreach (var type in assembly.GetExportedTypes().OrderBy(t => t.FullName, StringComparer.Ordinal))
        {
            sb.Append(TypeHeader(type)).Append('\n');
            foreach (var line in Members(type).Order(StringComparer.Ordinal)) sb.Append("  ").Append(line).Append('\n');
        }
        return sb.ToString();
    }

    private static string TypeHeader(Type t)
    {
        string kind = t.IsEnum ? "enum" : t.IsInterface ? "interface" : t.IsValueType ? "struct"
            : t.GetMethod("<Clone>$") is not null ? "record" : "class";
        var mods = new List<string>();
        if (t.IsClass && t.IsAbstract && t.IsSealed) mods.Add("static");
        else if (t.IsClass && t.IsAbstract) mods.Add("abstract");
        else if (t.IsClass && t.IsSealed) mods.Add("sealed");
        var bases = new List<string>();
        if (t.BaseType is { } b && b != typeof(object) && b != typeof(ValueType) && b != typeof(Enum)) bases.Add(Name(b));
        if (!t.IsEnum)
            bases.AddRange(t.GetInterfaces().Except(t.BaseType?.GetInterfaces() ?? []).Where(i => i.IsPublic && !i.Name.StartsWith("IEquatable"))
                            .Select(Name).Order(StringComparer.Ordinal));
        return $"{string.Join(" ", mods.Append(kind))} {t.Namespace}.{Name(t)}{(bases.Count > 0 ? " : " + string.Join(", ", bases) : "")}";
    }

    private static IEnumerable<string> Members(Type t)
    {
        const BindingFlags flags = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        var nullability = new NullabilityInfoContext();
        if (t.IsEnum)
        {
            foreach (var f in t.GetFields(BindingFlags.Public | BindingFlags.Static)) yield return $"value {f.Name} = {Convert.ToInt64(f.GetRawConstantValue())}";
            yield break;
        }
        foreach (var m in t.GetMembers(flags))
        {
            if (m.IsDefined(typeof(CompilerGeneratedAttribute)) || m.Name.Contains('<')) continue;
            switch (m)
            {
                case ConstructorInfo c when Visible(c) && !(t.IsAbstract && t.IsSealed):
                    if (c.GetParameters() is [var only] && only.ParameterType == t) continue;   // a record's copy constructor
                    yield return $"{Access(c)}ctor({Parameters(c.GetParameters(), nullability)})";
                    break;
                case MethodInfo x when Visible(x) && !x.IsSpecialName:
                    yield return $"{Access(x)}method {(x.IsStatic ? "static " : "")}{(x.IsAbstract && !t.IsInterface ? "abstract " : "")}" +
                                 $"{TypeName(x.ReturnType, nullability.Create(x.ReturnParameter))} {x.Name}{Generic(x)}({Parameters(x.GetParameters(), nullability)})";
                    break;
                case PropertyInfo p when (p.GetMethod is { } g && Visible(g)) || (p.SetMethod is { } s0 && Visible(s0)):
                    var accessors = new List<string>();
                    if (p.GetMethod is { } get && Visible(get)) accessors.Add("get;");
                    if (p.SetMethod is { } set && Visible(set))
                        accessors.Add(set.ReturnParameter.GetRequiredCustomModifiers().Any(x => x.Name == "IsExternalInit") ? "init;" : "set;");
                    bool isStatic = (p.GetMethod ?? p.SetMethod)!.IsStatic;
                    bool required = p.IsDefined(typeof(RequiredMemberAttribute));
                    yield return $"property {(isStatic ? "static " : "")}{(required ? "required " : "")}{TypeName(p.PropertyType, nullability.Create(p))} {p.Name} {{ {string.Join(" ", accessors)} }}";
                    break;
                case FieldInfo f when f.IsPublic || f.IsFamily || f.IsFamilyOrAssembly:
                    yield return $"field {(f.IsLiteral ? "const " : f.IsStatic ? "static " : "")}{(f.IsInitOnly ? "readonly " : "")}{TypeName(f.FieldType, nullability.Create(f))} {f.Name}";
                    break;
                case EventInfo e when e.AddMethod is { } add && Visible(add):
                    yield return $"event {Name(e.EventHandlerType!)} {e.Name}";
                    break;
            }
        }
    }

    private static bool Visible(MethodBase m) => m.IsPublic || m.IsFamily || m.IsFamilyOrAssembly;
    private static string Access(MethodBase m) => m.IsPublic ? "" : "protected ";
    private static string Generic(MethodInfo m) => m.IsGenericMethodDefinition ? $"<{string.Join(", ", m.GetGenericArguments().Select(a => a.Name))}>" : "";

    private static string Parameters(ParameterInfo[] ps, NullabilityInfoContext ctx) => string.Join(", ", ps.Select(p =>
    {
        string s = $"{(p.IsOut ? "out " : p.ParameterType.IsByRef ? "ref " : "")}{TypeName(p.ParameterType.IsByRef ? p.ParameterType.GetElementType()! : p.ParameterType, ctx.Create(p))} {p.Name}";
        if (p.HasDefaultValue) s += " = " + (p.DefaultValue switch { null => p.ParameterType.IsValueType && Nullable.GetUnderlyingType(p.ParameterType) is null ? "default" : "null", string v => $"\"{v}\"", bool v => v ? "true" : "false", var v => Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture) });
        return s;
    }));

    private static string TypeName(Type t, NullabilityInfo n)
    {
        if (Nullable.GetUnderlyingType(t) is { } under) return Name(under) + "?";
        if (t.IsArray) return TypeName(t.GetElementType()!, n.ElementType!) + "[]" + (n.ReadState == NullabilityState.Nullable ? "?" : "");
        string name = t.IsGenericType
            ? $"{Strip(t.Name)}<{string.Join(", ", t.GetGenericArguments().Select((a, i) => i < n.GenericTypeArguments.Length ? TypeName(a, n.GenericTypeArguments[i]) : Name(a)))}>"
            : Name(t);
        return name + (!t.IsValueType && n.ReadState == NullabilityState.Nullable ? "?" : "");
    }

    private static string Name(Type t)
    {
        if (t.IsGenericType) return $"{Strip(t.Name)}<{string.Join(", ", t.GetGenericArguments().Select(Name))}>";
        return t.FullName switch
        {
            "System.String" => "string", "System.Int32" => "int", "System.Int64" => "long", "System.Single" => "float", "System.Double" => "double",
            "System.Boolean" => "bool", "System.Byte" => "byte", "System.Object" => "object", "System.Void" => "void", "System.UInt64" => "ulong",
            _ => t.IsNested ? $"{Name(t.DeclaringType!)}.{t.Name}" : t.Name,
        };
    }

    private static string Strip(string name) => name.IndexOf('`') is var i and >= 0 ? name[..i] : name;
}
