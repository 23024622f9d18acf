"""ONNX exports, their checks and onnxruntime as a forward-only side. Imports: core, data, graph, verdict."""
