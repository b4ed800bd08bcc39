using System.Text.Json;
using OnnxMultimodal.Pipeline;
using OnnxMultimodal.Text;

namespace OnnxMultimodal.Tests;

/// <summary>The managed Jinja renderer against @huggingface/jinja's renders of real checkpoints' templates
/// (Fixtures/chat_templates, written by tools/chat_template_refs/make_refs.mjs), Python semantics where the two
/// differ, the built-in templates, and the bounds on hostile templates.</summary>
public class ChatTemplateTests
{
    private static readonly string Dir = Path.Combine(TestData.RepoRoot, "tests", "OnnxMultimodal.Tests", "Fixtures", "chat_templates");

    public static IEnumerable<TestCaseData> ReferenceCases()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Dir, "references.json")));
        foreach (var t in doc.RootElement.GetProperty("templates").EnumerateArray())
        {
            int i = 0;
            foreach (var c in t.GetProperty("cases").EnumerateArray())
                yield return new TestCaseData(t.GetProperty("template").GetString(), c.GetRawText()).SetName($"Reference_{t.GetProperty("name").GetString()}_{i++}");
        }
    }

    [TestCaseSource(nameof(ReferenceCases))]
    public void RendersLikeTheReference(string templateFile, string caseJson)
    {
        using var doc = JsonDocument.Parse(caseJson);
        var c = doc.RootElement;
        var template = ChatTemplate.Parse(File.ReadAllText(Path.Combine(Dir, templateFile)), templateFile);
        var variables = c.GetProperty("variables").EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value.Clone());
        if (c.TryGetProperty("expected", out var expected))
        {
            Assert.That(template.Render(variables), Is.EqualTo(expected.GetString()));
        }
        else
        {
            var e = Assert.Throws<ChatTemplateException>(() => template.Render(variables))!;
            Assert.That(e.Message, Does.Contain(c.GetProperty("error").GetString()));   // the template's own raise_exception text
            Assert.That(e.Message, Does.StartWith(templateFile));
        }
    }

    [Test]
    public void BuiltInRoleTokensIsTheCommittedReferenceTemplate() =>
        Assert.That(ChatTemplate.RoleTokens, Is.EqualTo(File.ReadAllText(Path.Combine(Dir, "role_tokens.jinja"))));

    [TestCase("{{ -7 % 3 }}", "2")]                 // Python's modulo takes the divisor's sign (JavaScript's does not)
    [TestCase("{{ 'ab' ~ none }}", "abNone")]       // str(None)
    [TestCase("{{ loop }}{{ true }} {{ [1, 'a'] }}", "True [1, 'a']")]
    [TestCase("{{ 'xxhixx'.strip('x') }}", "hi")]
    [TestCase("{{ 'a' * 3 }}", "aaa")]
    [TestCase("{{ 'abc' < 'abd' }}", "True")]
    [TestCase("{{ 4 is divisibleby(2) }} {{ 1 == 1.0 }}", "True True")]
    [TestCase("{{ none.x is defined }}", "False")]
    [TestCase("{{ '%d-%b-%Y' }} {{ strftime_now('%d %b %Y') }}", "%d-%b-%Y 05 Mar 2026")]
    [TestCase("{% for a, b in [[1, 2], [3, 4]] %}{{ a * b }},{% endfor %}", "2,12,")]
    [TestCase("{{ {'b': 2, 'a': 1} | tojson(sort_keys=true) }}", "{\"a\": 1, \"b\": 2}")]
    public void FollowsPythonJinja(string template, string expected)
    {
        var t = ChatTemplate.Parse(template, "test");
        Assert.That(t.Render(new Dictionary<string, object?>(), new DateTimeOffset(2026, 3, 5, 10, 0, 0, TimeSpan.Zero)), Is.EqualTo(expected));
    }

    [TestCase("{% for i in range(10000000) %}{% endfor %}", "bound")]                         // steps
    [TestCase("{% for i in range(100) %}{% for j in range(100) %}{% for k in range(1000) %}{% endfor %}{% endfor %}{% endfor %}", "steps")]
    [TestCase("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "exceeds")]   // doubling string
    [TestCase("{{ 'x' * 100000000 }}", "exceeds")]
    [TestCase("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "nested deeper")]       // unbounded recursion
    [TestCase("{{ ((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((1)))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))) }}", "nested deeper")]
    [TestCase("{% if true %}never closed", "missing")]
    [TestCase("{{ undefined_function() }}", "undefined")]
    [TestCase("{{ messages.x.y }}", "undefined")]
    [TestCase("{% import 'x' %}", "unsupported statement")]
    public void HostileOrBrokenTemplatesFailWithTheFileNamed(string template, string problem)
    {
        var limits = ResourceLimits.Default with { MaxTemplateSteps = 200_000, MaxTemplateOutputChars = 1_000_000 };
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.Parse(template, "tokenizer_config.json", limits: limits).Render([new("user", "hi")]))!;
        Assert.That(e.Message, Does.StartWith("tokenizer_config.json: chat_template:"));
        Assert.That(e.Message, Does.Contain(problem));
        Assert.That(watch.Elapsed, Is.LessThan(TimeSpan.FromSeconds(10)), "a bound must stop it well before this (2 shared cores)");
    }

    [TestCase("tiny-llama")]
    [TestCase("tiny-chameleon")]
    public void TinyFamiliesUseTheRoleTokensTemplateThatMatchesTheManifest(string model)
    {
        var package = ModelPackage.Open(TestData.Model(model));
        var template = ChatTemplate.Load(package)!;
        Assert.That(template.Source, Is.EqualTo("built-in:role-tokens"));
        // One user turn renders exactly as the manifest's single-turn pattern the exporter wrote.
        Assert.That(template.Render([new("user", "Hello there")]), Is.EqualTo(package.Manifest.ChatTemplate!["user"].Replace("{0}", "Hello there")));
        Assert.That(template.Render([new("system", "Be brief."), new("user", "a"), new("assistant", "b"), new("user", "c")]),
                    Is.EqualTo("<|user|>Be brief.\n\na<|end|><|assistant|>b<|end|><|user|>c<|end|><|assistant|>"));
        Assert.That(template.BosToken, Is.EqualTo("<|bos|>"));
    }

    [Test]
    public void SeamlessHasNoTemplate() => Assert.That(ChatTemplate.Load(ModelPackage.Open(TestData.Model("tiny-seamless"))), Is.Null);

    [Test]
    public void ATokenizerConfigTemplateWinsAndBadOnesNameTheFile()
    {
        string dir = TestData.CopyModel("tiny-llama");
        try
        {
            string config = Path.Combine(dir, "tokenizer_config.json");
            var json = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(config))!;
            json["chat_template"] = File.ReadAllText(Path.Combine(Dir, "llama3.jinja"));
            json["bos_token"] = new System.Text.Json.Nodes.JsonObject { ["content"] = "<B>" };   // AddedToken form
            File.WriteAllText(config, json.ToJsonString());
            var template = ChatTemplate.Load(ModelPackage.Open(dir))!;
            Assert.That(template.Source, Is.EqualTo(config));
            Assert.That(template.Render([new("user", "x")]), Does.StartWith("<B><|start_header_id|>user"));

            json["chat_template"] = "{% for m in messages %}{{ m.content }";
            File.WriteAllText(config, json.ToJsonString());
            var e = Assert.Throws<ChatTemplateException>(() => ChatTemplate.Load(ModelPackage.Open(dir)))!;
            Assert.That(e.Message, Does.StartWith(config));

            File.WriteAllText(config, "{ not json");
            Assert.That(() => ChatTemplate.Load(ModelPackage.Open(dir)), Throws.InstanceOf<ChatTemplateException>().With.Message.StartsWith(config));

            File.WriteAllText(config, "{}");
            File.WriteAllText(Path.Combine(dir, "chat_template.jinja"), "{{ messages[0].content | upper }}");
            Assert.That(ChatTemplate.Load(ModelPackage.Open(dir))!.Render([new("user", "abc")]), Is.EqualTo("ABC"));

            var small = ResourceLimits.Default with { MaxTemplateFileBytes = 4 };
            Assert.That(() => ChatTemplate.Load(ModelPackage.Open(dir), small), Throws.InstanceOf<ChatTemplateException>().With.Message.Contains("MaxTemplateFileBytes"));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
