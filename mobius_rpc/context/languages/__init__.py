"""Parsers per language: Python through the standard library's ``ast`` (the reference),
the others through tree-sitter grammars from the per-language wheels (optional)."""
