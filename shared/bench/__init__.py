"""Speed and memory benchmarks. Imports: core, data, graph, report, flows."""
