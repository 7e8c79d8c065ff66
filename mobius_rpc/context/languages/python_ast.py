"""Python files through the standard library's ``ast``: the reference parser.

Symbols are modules' functions, classes, methods and nested functions, and
module-level assignments (UPPER_CASE names are constants).  References are
every name read and every attribute accessed, with the qualified name of the
enclosing definition.  Imports are absolute module names (relative imports are
resolved against the file's own module path), and for ``from a import b`` both
``a`` and ``a.b`` (``b`` may be a submodule).

Cyclomatic complexity counts decisions the way radon does (McCabe's number:
one plus each ``if``/``elif``/conditional expression, loop (plus its
``else``), ``except`` handler (plus ``try``'s ``else``), extra boolean operand,
comprehension ``for``/``if``, ``assert`` (one, whatever its condition), and
``match`` case except a bare ``_``), leaving out nested functions, which get numbers of their own.
"""

from __future__ import annotations

import ast
from pathlib import Path

from ..model import FunctionMetrics, Import, ParsedFile, Reference, Symbol

__all__ = ("parse_python", "module_name", "package_prefix")

_BLOCKS = (ast.If, ast.For, ast.AsyncFor, ast.While, ast.With, ast.AsyncWith, ast.Try,
           ast.Match, ast.TryStar)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_DOC_CHARS = 400
#: names whose uses nobody asks for, and which were a fifth of all reference rows
_UNREFERENCED = frozenset({"self", "cls"})


def package_prefix(root: Path) -> str:
    """``"a.b."`` when the project root is itself package ``a.b`` (it and its parents hold
    ``__init__.py``), so its files' modules get the names their importers use."""
    names: list[str] = []
    directory = root.resolve()
    while (directory / "__init__.py").is_file() and directory.name:
        names.insert(0, directory.name)
        directory = directory.parent
    return "".join(f"{name}." for name in names)


def module_name(path: str, prefix: str = "") -> str:
    """The dotted module a project-relative ``.py`` path defines (``src/`` dropped)."""
    parts = path[:-3].split("/") if path.endswith(".py") else path.split("/")
    if parts and parts[0] in ("src", "lib") and len(parts) > 1:
        parts = parts[1:]
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return (prefix + ".".join(parts)).rstrip(".")


def _doc(node: ast.AST) -> str:
    if not isinstance(node, (*_FUNCTIONS, ast.ClassDef, ast.Module)):
        return ""
    text = ast.get_docstring(node, clean=True) or ""
    return text.split("\n\n", 1)[0].strip()[:_DOC_CHARS]


def _signature(node: ast.AST) -> str:
    try:
        if isinstance(node, _FUNCTIONS):
            prefix = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
            returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
            return f"{prefix} {node.name}({ast.unparse(node.args)}){returns}"[:300]
        if isinstance(node, ast.ClassDef):
            bases = ", ".join(ast.unparse(b) for b in [*node.bases, *node.keywords])
            return f"class {node.name}({bases})" if bases else f"class {node.name}"
    except (ValueError, RecursionError):
        return ""
    return ""


def _complexity(node: ast.AST) -> int:
    total = 0
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (*_FUNCTIONS, ast.ClassDef)):
            continue  # measured on their own
        if isinstance(child, ast.Assert):
            total += 1  # one decision, whatever its condition holds (as radon counts)
            continue
        if isinstance(child, ast.Try | ast.TryStar):
            total += len(child.handlers) + bool(child.orelse)
        elif isinstance(child, ast.BoolOp):
            total += len(child.values) - 1
        elif isinstance(child, (ast.If, ast.IfExp)):
            total += 1
        elif isinstance(child, ast.Match):
            wildcard = any(isinstance(c.pattern, ast.MatchAs) and c.pattern.pattern is None
                           for c in child.cases)
            total += max(0, len(child.cases) - wildcard)
        elif isinstance(child, (ast.For, ast.AsyncFor, ast.While)):
            total += 1 + bool(child.orelse)
        elif isinstance(child, ast.comprehension):
            total += 1 + len(child.ifs)
        total += _complexity(child)
    return total


def _nesting(node: ast.AST, depth: int = 0) -> int:
    deepest = depth
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (*_FUNCTIONS, ast.ClassDef, ast.Lambda)):
            continue
        inner = depth + 1 if isinstance(child, _BLOCKS) else depth
        deepest = max(deepest, _nesting(child, inner))
    return deepest


class _Visitor(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool) -> None:
        self.module = module
        self.is_package = is_package
        self.out = ParsedFile()
        self.scope: list[tuple[str, str]] = []  # (qualname, kind)

    def _qual(self, name: str) -> str:
        return f"{self.scope[-1][0]}.{name}" if self.scope else name

    def _define(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        if isinstance(node, ast.ClassDef):
            kind = "class"
        else:
            kind = "method" if self.scope and self.scope[-1][1] == "class" else "function"
        qual = self._qual(node.name)
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        end = node.end_lineno or node.lineno
        self.out.symbols.append(Symbol(node.name, qual, kind, start, end, _signature(node),
                                       _doc(node)))
        if kind != "class":
            self.out.metrics.append(FunctionMetrics(qual, start, end, 1 + _complexity(node),
                                                    _nesting(node)))
        for decorator in node.decorator_list:
            self.visit(decorator)
        if not isinstance(node, ast.ClassDef):
            self.visit(node.args)
            if node.returns:
                self.visit(node.returns)
        else:
            for base in [*node.bases, *node.keywords]:
                self.visit(base)
        self.scope.append((qual, kind))
        for statement in node.body:
            self.visit(statement)
        self.scope.pop()

    visit_FunctionDef = _define  # noqa: N815 - ast.NodeVisitor's naming
    visit_AsyncFunctionDef = _define  # noqa: N815
    visit_ClassDef = _define  # noqa: N815

    def visit_Assign(self, node: ast.Assign | ast.AnnAssign) -> None:  # noqa: N802
        if not self.scope:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    kind = "constant" if target.id.isupper() else "variable"
                    self.out.symbols.append(Symbol(target.id, target.id, kind, node.lineno,
                                                   node.end_lineno or node.lineno))
        self.generic_visit(node)

    visit_AnnAssign = visit_Assign  # noqa: N815

    def visit_Name(self, node: ast.Name) -> None:  # noqa: N802
        if isinstance(node.ctx, ast.Load) and node.id not in _UNREFERENCED:
            self.out.references.append(Reference(node.id, node.lineno, self._scope()))

    def visit_Attribute(self, node: ast.Attribute) -> None:  # noqa: N802
        self.out.references.append(Reference(node.attr, node.end_lineno or node.lineno,
                                             self._scope()))
        self.visit(node.value)

    def _scope(self) -> str:
        return self.scope[-1][0] if self.scope else ""

    def visit_Import(self, node: ast.Import) -> None:  # noqa: N802
        for alias in node.names:
            self.out.imports.append(Import(alias.name, node.lineno))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:  # noqa: N802
        base = node.module or ""
        if node.level:
            package = self.module.split(".") if self.is_package else self.module.split(".")[:-1]
            keep = len(package) - (node.level - 1)
            if keep < 0:
                return
            base = ".".join([*package[:keep], *([base] if base else [])])
        if base:
            self.out.imports.append(Import(base, node.lineno))
        for alias in node.names:
            if alias.name != "*":
                self.out.imports.append(Import(f"{base}.{alias.name}" if base else alias.name,
                                               node.lineno))


def parse_python(path: str, text: str, prefix: str = "") -> ParsedFile:
    """Symbols, references, imports and metrics of one Python file (``prefix``: see
    :func:`package_prefix`)."""
    try:
        tree = ast.parse(text, filename=path)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        return ParsedFile(note=f"not parsed ({type(exc).__name__}): text search only")
    visitor = _Visitor(module_name(path, prefix), path.endswith("__init__.py"))
    try:
        visitor.visit(tree)
    except RecursionError:
        return ParsedFile(note="nested too deeply to analyse: text search only")
    # one row per name, line and scope: `a.b(a)` is one use of `a` on that line
    visitor.out.references = list(dict.fromkeys(visitor.out.references))
    return visitor.out
