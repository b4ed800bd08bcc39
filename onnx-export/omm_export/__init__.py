"""omm_export: builds OnnxMultimodal model packages (ONNX graphs + JSON + references) from PyTorch."""

__version__ = "0.1.0"
