"""Argument parsing and printing of the commands, no flow logic. Imports: every subpackage but bench."""
