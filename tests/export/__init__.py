"""ofakd.export: timm, ONNX and TorchScript exports, the Hub repo."""
