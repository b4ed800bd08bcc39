using OnnxMultimodal.Chat;

namespace OnnxMultimodal.Tests;

/// <summary>Text stop sequences over a stream of deltas: nothing of a stop sequence is released, text that only
/// looked like its start is released once it is known not to be.</summary>
public class StopSequenceFilterTests
{
    private static (string Text, bool Stopped, List<string> Released) Run(string[] stops, params string[] deltas)
    {
        var filter = new StopSequenceFilter(stops);
        var released = new List<string>();
        foreach (var d in deltas)
        {
            var (emit, stopped) = filter.Append(d);
            released.Add(emit);
            if (stopped) return (string.Concat(released), true, released);
        }
        released.Add(filter.Flush());
        return (string.Concat(released), false, released);
    }

    [Test]
    public void A_stop_split_across_deltas_is_caught_and_never_released()
    {
        var (text, stopped, released) = Run(["</s>"], "Hello <", "/", "s> world");
        Assert.That(text, Is.EqualTo("Hello "));
        Assert.That(stopped);
        Assert.That(released, Is.EqualTo(new[] { "Hello ", "", "" }), "'<' and '</' are held back, not streamed");
    }

    [Test]
    public void A_false_start_is_released_when_it_turns_out_not_to_be_a_stop()
    {
        var (text, stopped, released) = Run(["STOP"], "a S", "T", "x b");
        Assert.That(text, Is.EqualTo("a STx b"));
        Assert.That(stopped, Is.False);
        Assert.That(released[0], Is.EqualTo("a "));
    }

    [Test]
    public void The_earliest_of_several_stops_wins_and_empty_stops_are_ignored()
    {
        Assert.That(Run(["cd", "b", ""], "abcd").Text, Is.EqualTo("a"));
        var none = Run([], "abc", "def");
        Assert.That((none.Text, none.Stopped), Is.EqualTo(("abcdef", false)));
        Assert.That(none.Released[0], Is.EqualTo("abc"), "without stops nothing is held back");
        Assert.That(Run(["xyz"], "ab", "xy").Text, Is.EqualTo("abxy"), "held-back text comes out at the end");
    }
}
