"""The framework-free model graph, layout rules and the converter registry. Imports: core, data."""
