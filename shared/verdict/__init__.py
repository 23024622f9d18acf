"""Checks and the one verdict policy: tolerances, near ties, conditioning, diagnoses. Imports: core, data, graph."""
