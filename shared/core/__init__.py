"""Plumbing every layer uses: errors and exit codes, atomic writes, console, argument types, memory. Imports: nothing else of shared."""
