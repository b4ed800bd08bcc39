using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Tests;

/// <summary>The decode-attention switch ONNX Runtime reads from the native environment (ORT_ENABLE_XQA) while a decoder
/// session is created. These tests change the process environment only inside a scope, under the switch's lock, and
/// leave it as they found it.</summary>
[NonParallelizable]
public class XqaSwitchTests
{
    [Test]
    public void The_option_picks_the_value_unless_the_process_holds_one()
    {
        Assert.That(XqaSwitch.Decide(null, xqa: false, major: 9), Is.EqualTo("0"), "flash attention on Hopper, where it was measured");
        Assert.That(XqaSwitch.Decide(null, xqa: false, major: 10), Is.EqualTo("0"));
        Assert.That(XqaSwitch.Decide(null, xqa: false, major: 8), Is.Null, "older cards keep ONNX Runtime's own choice");
        Assert.That(XqaSwitch.Decide(null, xqa: false, major: null), Is.Null, "so does an unknown device");
        Assert.That(XqaSwitch.Decide(null, xqa: true, major: 8), Is.EqualTo("1"), "XQA when asked, anywhere");
        Assert.That(XqaSwitch.Decide("1", xqa: false, major: 9), Is.EqualTo("1"), "the user's own setting wins");
        Assert.That(XqaSwitch.Decide("0", xqa: true, major: 9), Is.EqualTo("0"));
    }

    [Test]
    public void A_value_set_here_is_what_native_code_reads_and_unset_removes_it()
    {
        string name = "OMM_TEST_NATIVE_ENV_" + Guid.NewGuid().ToString("N");
        Assert.That(NativeEnvironment.Get(name), Is.Null);
        try
        {
            Assert.That(NativeEnvironment.Set(name, "0"), Is.True);
            Assert.That(NativeEnvironment.Get(name), Is.EqualTo("0"));
            NativeEnvironment.Set(name, "1");
            Assert.That(NativeEnvironment.Get(name), Is.EqualTo("1"));
            Assert.That(Environment.GetEnvironmentVariable(name), Is.EqualTo("1"), "the managed view agrees");
        }
        finally
        {
            NativeEnvironment.Unset(name);
        }
        Assert.That(NativeEnvironment.Get(name), Is.Null);
        Assert.That(Environment.GetEnvironmentVariable(name), Is.Null);
    }

    [Test]
    public void The_switch_holds_only_inside_its_scope()
    {
        lock (XqaSwitch.Gate)
        {
            string? own = NativeEnvironment.Get(XqaSwitch.Variable);
            if (own is not null) Assert.Ignore($"this process sets {XqaSwitch.Variable}={own} itself, which the switch keeps");
            foreach (bool xqa in new[] { false, true })
            {
                using (var scope = XqaSwitch.Apply(xqa, major: 9))
                {
                    Assert.That(scope.Value, Is.EqualTo(xqa ? "1" : "0"));
                    Assert.That(scope.Own, Is.Null);
                    Assert.That(NativeEnvironment.Get(XqaSwitch.Variable), Is.EqualTo(scope.Value), "what ONNX Runtime's getenv sees");
                }
                Assert.That(NativeEnvironment.Get(XqaSwitch.Variable), Is.Null, "put back: child processes and other ONNX Runtime users never see it");
                Assert.That(Environment.GetEnvironmentVariable(XqaSwitch.Variable), Is.Null);
            }
        }
    }

    [Test]
    public void Below_Hopper_nothing_is_written_unless_XQA_is_asked_for()
    {
        lock (XqaSwitch.Gate)
        {
            if (NativeEnvironment.Get(XqaSwitch.Variable) is { } own) Assert.Ignore($"this process sets {XqaSwitch.Variable}={own} itself");
            using (var scope = XqaSwitch.Apply(xqa: false, major: 8))
            {
                Assert.That(scope.Value, Is.Null);
                Assert.That(NativeEnvironment.Get(XqaSwitch.Variable), Is.Null, "ONNX Runtime's own choice");
            }
            using (XqaSwitch.Apply(xqa: true, major: 8))
                Assert.That(NativeEnvironment.Get(XqaSwitch.Variable), Is.EqualTo("1"));
            Assert.That(NativeEnvironment.Get(XqaSwitch.Variable), Is.Null);
        }
    }

    [Test]
    public void A_value_the_process_holds_wins_and_stays()
    {
        lock (XqaSwitch.Gate)
        {
            string? before = NativeEnvironment.Get(XqaSwitch.Variable);
            NativeEnvironment.Set(XqaSwitch.Variable, "1");
            try
            {
                using (var scope = XqaSwitch.Apply(xqa: false, major: 9))
                {
                    Assert.That(scope.Own, Is.EqualTo("1"));
                    Assert.That(scope.Value, Is.EqualTo("1"), "the option loses to the process's own value");
                    Assert.That(NativeEnvironment.Get(XqaSwitch.Variable), Is.EqualTo("1"));
                }
                Assert.That(NativeEnvironment.Get(XqaSwitch.Variable), Is.EqualTo("1"), "the scope does not remove a value it did not write");
            }
            finally
            {
                if (before is null) NativeEnvironment.Unset(XqaSwitch.Variable);
                else NativeEnvironment.Set(XqaSwitch.Variable, before);
            }
        }
    }
}
