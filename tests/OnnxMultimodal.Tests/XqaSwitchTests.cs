using OnnxMultimodal.Runtime;

namespace OnnxMultimodal.Tests;

/// <summary>The decode-attention switch ONNX Runtime reads from the native environment (ORT_ENABLE_XQA).</summary>
public class XqaSwitchTests
{
    [Test]
    public void The_option_picks_the_value_unless_the_process_started_with_one()
    {
        Assert.That(XqaSwitch.Decide(null, xqa: false), Is.EqualTo("0"));
        Assert.That(XqaSwitch.Decide(null, xqa: true), Is.EqualTo("1"));
        Assert.That(XqaSwitch.Decide("1", xqa: false), Is.EqualTo("1"), "the user's own setting wins");
        Assert.That(XqaSwitch.Decide("0", xqa: true), Is.EqualTo("0"));
    }

    [Test]
    public void A_value_set_here_is_what_native_code_reads()
    {
        string name = "OMM_TEST_NATIVE_ENV_" + Environment.ProcessId;
        Assert.That(NativeEnvironment.Get(name), Is.Null);
        NativeEnvironment.Set(name, "0");
        Assert.That(NativeEnvironment.Get(name), Is.EqualTo("0"));
        NativeEnvironment.Set(name, "1");
        Assert.That(NativeEnvironment.Get(name), Is.EqualTo("1"));
        Assert.That(Environment.GetEnvironmentVariable(name), Is.EqualTo("1"), "the managed view agrees");
    }

    [Test]
    public void Apply_writes_the_setting_where_ONNX_Runtime_reads_it()
    {
        if (Environment.GetEnvironmentVariable(XqaSwitch.Variable) is { } own)
            Assert.Ignore($"the test process started with {XqaSwitch.Variable}={own}, which Apply must keep");
        lock (XqaSwitch.Gate)
        {
            Assert.That(XqaSwitch.Apply(xqa: true), Is.EqualTo("1"));
            Assert.That(NativeEnvironment.Get(XqaSwitch.Variable), Is.EqualTo("1"));
            Assert.That(XqaSwitch.Apply(xqa: false), Is.EqualTo("0"));
            Assert.That(NativeEnvironment.Get(XqaSwitch.Variable), Is.EqualTo("0"));
        }
    }
}
