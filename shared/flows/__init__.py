"""The four flows on one Side: the default run (engine), port, reverse port, verify. Imports: core, data, graph, verdict, onnx, report."""
