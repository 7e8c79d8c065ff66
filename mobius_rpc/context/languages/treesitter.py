"""Files in other languages through tree-sitter: symbols, references, imports, metrics.

One generic walk over the syntax tree, driven by the tables of
:mod:`.grammars`: a definition node yields a symbol (its ``name`` field, or
for C/C++ the identifier at the bottom of its declarator chain), a scope node
(Rust ``impl``, C++ namespace) only prefixes the qualified names inside it,
identifier leaves that are not a definition's own name are references, and
decision nodes plus ``&&``/``||`` operators give cyclomatic complexity.  The
walk is iterative (a hostile file nested 100,000 deep costs a list, not the
interpreter's stack).
"""

from __future__ import annotations

from typing import Any

from ..model import FunctionMetrics, Import, ParsedFile, Reference, Symbol
from .grammars import GRAMMARS, LOGICAL_OPERATORS, Grammar, load_parser

__all__ = ("parse_tree_sitter",)

_IDENTIFIERS = frozenset({"identifier", "field_identifier", "property_identifier",
                          "type_identifier", "shorthand_property_identifier"})
_CLASSLIKE = frozenset({"class", "struct", "interface", "enum"})
_MAX_NODES = 2_000_000
_DOC_CHARS = 400


def _text(node: Any) -> str:
    raw: bytes = node.text or b""
    return raw.decode("utf-8", "replace")


def _name_of(node: Any) -> Any:
    named = node.child_by_field_name("name")
    if named is not None:
        return named
    if node.type == "type_definition":
        declarator = node.child_by_field_name("declarator")
        return declarator if declarator is not None and declarator.type in _IDENTIFIERS else None
    declarator = node.child_by_field_name("declarator")
    while declarator is not None:
        if declarator.type in _IDENTIFIERS or declarator.type in (
                "qualified_identifier", "destructor_name", "operator_name"):
            return declarator
        declarator = declarator.child_by_field_name("declarator")
    return None


def _scope_name(node: Any) -> str:
    for field_name in ("type", "name"):
        named = node.child_by_field_name(field_name)
        if named is not None:
            return _text(named).split("<", 1)[0]
    return ""


def _doc(node: Any) -> str:
    comments: list[str] = []
    sibling = node.prev_named_sibling
    while sibling is not None and sibling.type in ("comment", "line_comment", "block_comment") \
            and len(comments) < 20:
        comments.append(_text(sibling))
        sibling = sibling.prev_named_sibling
    lines = [line.strip().lstrip("/*!#").rstrip("*/").strip()
             for comment in reversed(comments) for line in comment.splitlines()]
    return " ".join(line for line in lines if line)[:_DOC_CHARS]


def _signature(node: Any) -> str:
    text = _text(node)
    head = text.split("{", 1)[0] if "{" in text else text.split("\n", 1)[0]
    return " ".join(head.split())[:300]


def _import_module(node: Any) -> str:
    source = node.child_by_field_name("source") or node.child_by_field_name("path") \
        or node.child_by_field_name("argument")
    text = _text(source if source is not None else node)
    for prefix in ("import ", "static "):
        text = text.removeprefix(prefix)
    return text.strip().strip("\"'<>;").strip()[:300]


def _metrics(node: Any, grammar: Grammar, definitions: dict[str, str]) -> tuple[int, int]:
    complexity, deepest = 1, 0
    stack: list[tuple[Any, int]] = [(child, 0) for child in node.children]
    while stack:
        current, depth = stack.pop()
        kind = current.type
        if kind in definitions and definitions[kind] in grammar.functions | {"method"}:
            continue  # nested functions have numbers of their own
        if kind in grammar.decisions:
            complexity += 1
        elif kind in ("binary_expression", "boolean_operator"):
            operator = current.child_by_field_name("operator")
            if operator is not None and operator.type in LOGICAL_OPERATORS:
                complexity += 1
        if kind in grammar.blocks:
            depth += 1
            deepest = max(deepest, depth)
        stack.extend((child, depth) for child in current.children)
    return complexity, deepest


def parse_tree_sitter(language: str, data: bytes) -> ParsedFile:
    """Symbols, references, imports and metrics of one file in ``language``."""
    parser, reason = load_parser(language)
    if parser is None:
        return ParsedFile(note=reason)
    grammar = GRAMMARS[language]
    tree = parser.parse(data)
    out = ParsedFile()
    definitions = grammar.definitions
    name_nodes: set[int] = set()
    stack: list[tuple[Any, str, str]] = [(tree.root_node, "", "")]  # node, scope, scope kind
    seen = 0
    while stack:
        node, scope, scope_kind = stack.pop()
        seen += 1
        if seen > _MAX_NODES:
            out.note = f"stopped after {_MAX_NODES} syntax nodes: symbols are partial"
            break
        kind = node.type
        child_scope, child_kind = scope, scope_kind
        if kind in definitions:
            name_node = _name_of(node)
            if name_node is not None:
                name = _text(name_node).rsplit("::", 1)[-1]
                symbol_kind = definitions[kind]
                if kind == "type_spec":
                    inner = node.child_by_field_name("type")
                    symbol_kind = {"struct_type": "struct", "interface_type": "interface"}.get(
                        inner.type if inner is not None else "", "type")
                if symbol_kind == "function" and scope_kind in _CLASSLIKE | {"impl"}:
                    symbol_kind = "method"
                if kind == "method_declaration" and language == "go":
                    receiver = node.child_by_field_name("receiver")
                    owner = _text(receiver).strip("()").split()[-1].lstrip("*") \
                        if receiver is not None else ""
                    qual = f"{owner}.{name}" if owner else name
                else:
                    qual = f"{scope}.{name}" if scope else name
                start, end = node.start_point[0] + 1, node.end_point[0] + 1
                is_body = node.child_by_field_name("body") is not None
                if symbol_kind in ("struct", "enum", "class") and not is_body \
                        and kind.endswith("_specifier"):
                    pass  # a use of `struct x`, not its definition
                else:
                    name_nodes.add(name_node.id)
                    out.symbols.append(Symbol(name, qual, symbol_kind, start, end,
                                              _signature(node), _doc(node)))
                    if symbol_kind in ("function", "method"):
                        complexity, nesting = _metrics(node, grammar, definitions)
                        out.metrics.append(FunctionMetrics(qual, start, end, complexity,
                                                           nesting))
                    child_scope, child_kind = qual, symbol_kind
        elif kind in grammar.scopes:
            owner = _scope_name(node)
            if owner:
                child_scope = f"{scope}.{owner}" if scope else owner
                child_kind = "impl"
        elif kind in grammar.imports:
            out.imports.append(Import(_import_module(node), node.start_point[0] + 1))
            continue
        elif kind in _IDENTIFIERS and node.id not in name_nodes:
            out.references.append(Reference(_text(node), node.start_point[0] + 1, scope))
            continue
        stack.extend((child, child_scope, child_kind) for child in reversed(node.children))
    if tree.root_node.has_error and not out.note:
        out.note = "the file has syntax errors: symbols may be partial"
    return out
