"""Data sets, loaders, configs, built-in pairs, planted faults, portable weights. Imports: core."""
