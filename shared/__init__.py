"""Framework-free core of keras-torch-parity.

Everything here uses numpy, pandas, Pillow, safetensors, scikit-learn,
matplotlib, onnx and onnxruntime only: it imports neither TensorFlow, Keras
nor torch, so that both implementations consume exactly the same inputs and
definitions. Subpackages, each importing only those its docstring names
(tests/architecture/test_architecture.py checks every file):

- core: errors and exit codes, atomic writes, console, argument types, memory;
- data: data sets, loaders, configs, built-in pairs, planted faults, portable weights;
- graph: the framework-free model graph, layout rules, the converter registry;
- verdict: checks and the one verdict policy (policy.py);
- onnx: ONNX exports, their checks, onnxruntime as a forward-only side;
- report: report.json / report.md, plots;
- flows: the Side protocol and the four flows (default run, port, reverse port, verify);
- cli: argument parsing and printing;
- bench: speed and memory benchmarks.
"""
