"""report.json / report.md and plots. Imports: core, verdict."""
