"""Per-language tables for the tree-sitter parser, and loading the grammars.

Each table names the node types that define symbols (and their kind), the
nodes that only open a scope (a Rust ``impl``, a C++ namespace), the imports,
and the nodes that count as decisions for cyclomatic complexity.  Grammars
come from the per-language wheels (``tree-sitter-go`` ...), which ship the
compiled parser; a missing wheel makes :func:`load_parser` return None with a
reason, and that language is indexed for text search only.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import cache
from typing import Any

__all__ = ("Grammar", "GRAMMARS", "load_parser")

_C_DECISIONS = frozenset({"if_statement", "for_statement", "while_statement", "do_statement",
                          "case_statement", "conditional_expression", "catch_clause"})


@dataclass(frozen=True)
class Grammar:
    module: str
    function: str = "language"
    definitions: dict[str, str] = field(default_factory=dict)
    scopes: frozenset[str] = frozenset()
    imports: frozenset[str] = frozenset()
    decisions: frozenset[str] = frozenset()
    blocks: frozenset[str] = frozenset()
    #: definitions found inside a class-like scope become methods
    functions: frozenset[str] = frozenset({"function"})


_JS_DEFS = {"function_declaration": "function", "generator_function_declaration": "function",
            "class_declaration": "class", "method_definition": "method",
            "abstract_class_declaration": "class", "interface_declaration": "interface",
            "type_alias_declaration": "type", "enum_declaration": "enum",
            "function_signature": "function", "abstract_method_signature": "method"}
_JS_DECISIONS = frozenset({"if_statement", "for_statement", "for_in_statement",
                           "while_statement", "do_statement", "switch_case", "catch_clause",
                           "ternary_expression"})
_JS_BLOCKS = frozenset({"if_statement", "for_statement", "for_in_statement", "while_statement",
                        "do_statement", "switch_statement", "try_statement"})
_JS = dict(definitions=_JS_DEFS, imports=frozenset({"import_statement"}),
           decisions=_JS_DECISIONS, blocks=_JS_BLOCKS)

GRAMMARS: dict[str, Grammar] = {
    "python": Grammar(
        "tree_sitter_python",
        definitions={"function_definition": "function", "class_definition": "class"},
        imports=frozenset({"import_statement", "import_from_statement"}),
        decisions=frozenset({"if_statement", "elif_clause", "for_statement", "while_statement",
                             "except_clause", "conditional_expression", "case_clause"}),
        blocks=frozenset({"if_statement", "for_statement", "while_statement", "try_statement",
                          "with_statement", "match_statement"})),
    "javascript": Grammar("tree_sitter_javascript", **_JS),  # type: ignore[arg-type]
    "typescript": Grammar("tree_sitter_typescript", "language_typescript",
                          **_JS),  # type: ignore[arg-type]
    "tsx": Grammar("tree_sitter_typescript", "language_tsx", **_JS),  # type: ignore[arg-type]
    "go": Grammar(
        "tree_sitter_go",
        definitions={"function_declaration": "function", "method_declaration": "method",
                     "type_spec": "type"},
        imports=frozenset({"import_spec"}),
        decisions=frozenset({"if_statement", "for_statement", "expression_case", "type_case",
                             "communication_case"}),
        blocks=frozenset({"if_statement", "for_statement", "expression_switch_statement",
                          "type_switch_statement", "select_statement"})),
    "rust": Grammar(
        "tree_sitter_rust",
        definitions={"function_item": "function", "struct_item": "struct", "enum_item": "enum",
                     "trait_item": "interface", "mod_item": "module", "type_item": "type",
                     "function_signature_item": "function", "macro_definition": "function"},
        scopes=frozenset({"impl_item"}),
        imports=frozenset({"use_declaration"}),
        decisions=frozenset({"if_expression", "for_expression", "while_expression",
                             "loop_expression", "match_arm"}),
        blocks=frozenset({"if_expression", "for_expression", "while_expression",
                          "loop_expression", "match_expression"})),
    "java": Grammar(
        "tree_sitter_java",
        definitions={"class_declaration": "class", "interface_declaration": "interface",
                     "enum_declaration": "enum", "record_declaration": "class",
                     "method_declaration": "method", "constructor_declaration": "method",
                     "annotation_type_declaration": "interface"},
        imports=frozenset({"import_declaration"}),
        decisions=frozenset({"if_statement", "for_statement", "enhanced_for_statement",
                             "while_statement", "do_statement", "switch_label", "catch_clause",
                             "ternary_expression"}),
        blocks=frozenset({"if_statement", "for_statement", "enhanced_for_statement",
                          "while_statement", "do_statement", "switch_expression",
                          "try_statement"}),
        functions=frozenset({"function", "method"})),
    "c": Grammar(
        "tree_sitter_c",
        definitions={"function_definition": "function", "struct_specifier": "struct",
                     "enum_specifier": "enum", "union_specifier": "struct",
                     "type_definition": "type"},
        imports=frozenset({"preproc_include"}),
        decisions=_C_DECISIONS,
        blocks=frozenset({"if_statement", "for_statement", "while_statement", "do_statement",
                          "switch_statement"})),
    "cpp": Grammar(
        "tree_sitter_cpp",
        definitions={"function_definition": "function", "struct_specifier": "struct",
                     "enum_specifier": "enum", "class_specifier": "class",
                     "union_specifier": "struct", "type_definition": "type",
                     "alias_declaration": "type"},
        scopes=frozenset({"namespace_definition"}),
        imports=frozenset({"preproc_include"}),
        decisions=_C_DECISIONS | {"for_range_loop"},
        blocks=frozenset({"if_statement", "for_statement", "while_statement", "do_statement",
                          "switch_statement", "for_range_loop", "try_statement"})),
}

#: boolean operators that add a decision inside a binary expression
LOGICAL_OPERATORS = frozenset({"&&", "||", "and", "or"})


@cache
def load_parser(language: str) -> tuple[Any, str]:
    """A tree-sitter ``Parser`` for ``language``, or ``(None, reason)`` when unavailable."""
    grammar = GRAMMARS.get(language)
    if grammar is None:
        return None, f"no grammar for {language}"
    try:
        import tree_sitter
        module = importlib.import_module(grammar.module)
        lang = tree_sitter.Language(getattr(module, grammar.function)())
        return tree_sitter.Parser(lang), ""
    except Exception as exc:  # noqa: BLE001 - any failure means "not available here"
        package = grammar.module.replace("_", "-")
        return None, (f"the {language} grammar is not available ({type(exc).__name__}); "
                      f"install mobius-rpc[context] (tree-sitter and {package}) for symbols: "
                      "text search only")
