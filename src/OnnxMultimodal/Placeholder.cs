namespace OnnxMultimodal; internal static class Placeholder {}
