"""Code analysis of a file or symbol, and the project summary (a ranked repo map).

The import graph links files: a Python import names a module, mapped to the
file that defines it; a relative JavaScript/TypeScript import and a C/C++
``#include`` name a path, resolved against the importing file or by file
name.  Modules are ranked by PageRank over that graph (a file many central
files import is central), and the summary fills its token budget with the
outlines of the best-ranked files first.
"""

from __future__ import annotations

import dataclasses
import posixpath

from .answers import AnalysisAnswer, FunctionInfo, ModuleRank, OutlineEntry, SummaryAnswer
from .engine import ContextEngine, Project
from .languages.python_ast import module_name, package_prefix
from .model import FileRow
from .queries import BadRequest, fit

__all__ = ("analyze", "summarize", "import_graph", "pagerank")

_ENTRY_NAMES = ("__main__.py", "main.py", "cli.py", "app.py", "manage.py", "setup.py",
                "main.go", "main.rs", "index.js", "index.ts", "main.c", "main.cpp")
_JS_SUFFIXES = ("", ".ts", ".tsx", ".js", ".jsx", ".mjs", "/index.ts", "/index.js")
_MAX_EDGES = 500_000


def import_graph(files: list[FileRow], edges: list[tuple[str, str]], prefix: str = ""
                 ) -> dict[str, set[str]]:
    """``path -> paths it imports`` among the project's own files."""
    paths = {f.path for f in files}
    modules = {module_name(f.path, prefix): f.path for f in files if f.language == "python"}
    by_name: dict[str, list[str]] = {}
    for f in files:
        by_name.setdefault(posixpath.basename(f.path), []).append(f.path)
    graph: dict[str, set[str]] = {f.path: set() for f in files}
    for path, module in edges:
        target = modules.get(module)
        if target is None and module.startswith("."):
            base = posixpath.normpath(posixpath.join(posixpath.dirname(path), module))
            target = next((base + s for s in _JS_SUFFIXES if base + s in paths), None)
        if target is None and module.endswith((".h", ".hpp", ".hh")):
            candidates = by_name.get(posixpath.basename(module), [])
            target = candidates[0] if len(candidates) == 1 else None
        if target is not None and target != path:
            graph.setdefault(path, set()).add(target)
    return graph


def pagerank(graph: dict[str, set[str]], rounds: int = 30, damping: float = 0.85
             ) -> dict[str, float]:
    nodes = list(graph)
    if not nodes:
        return {}
    rank = dict.fromkeys(nodes, 1.0 / len(nodes))
    for _ in range(rounds):
        sink = sum(rank[n] for n in nodes if not graph[n]) / len(nodes)
        new = dict.fromkeys(nodes, (1 - damping) / len(nodes) + damping * sink)
        for node in nodes:
            targets = graph[node]
            if targets:
                share = damping * rank[node] / len(targets)
                for target in targets:
                    new[target] = new.get(target, 0.0) + share
        rank = new
    return rank


async def _graph(engine: ContextEngine, project: Project) -> dict[str, set[str]]:
    """The import graph, built once per index generation (a re-index drops it)."""
    cached = engine.derived.get((project.name, "graph"))
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    index = await engine.index()
    files = await index.files(project.name)
    graph = import_graph(files, await index.import_edges(project.name, _MAX_EDGES),
                         package_prefix(project.root))
    if project.state == "ready":  # a graph of a half-built index is not kept
        engine.derived[(project.name, "graph")] = graph
    return graph


async def _ranked(engine: ContextEngine, project: Project) -> dict[str, float]:
    cached = engine.derived.get((project.name, "rank"))
    if cached is None:
        cached = pagerank(await _graph(engine, project))
        if project.state == "ready":
            engine.derived[(project.name, "rank")] = cached
    return cached


async def analyze(engine: ContextEngine, project: Project, path: str, symbol: str | None,
                  note: str = "") -> AnalysisAnswer:
    index = await engine.index()
    row = await index.file(project.name, path)
    if row is None:
        reason = engine.read_reason(project, path) or "not in the index"
        raise BadRequest(f"cannot analyse {path!r}: {reason}")
    metrics = await index.metrics(project.name, path)
    if symbol:
        metrics = [m for m in metrics if symbol in (m.qualname, m.qualname.rsplit(".", 1)[-1])
                   or m.qualname.startswith(symbol + ".")]
        if not metrics:
            raise BadRequest(f"no function or method {symbol!r} in {path}")
    functions = [FunctionInfo(m.qualname, m.line_start, m.line_end, m.complexity, m.nesting)
                 for m in metrics]
    imports = await index.imports(project.name, path)
    if row.language == "python":
        module = module_name(path, package_prefix(project.root))
        dependents = await index.importers(project.name, [module], 1000)
    else:
        graph = await _graph(engine, project)
        dependents = sorted(p for p, targets in graph.items() if path in targets)
    budget = engine.limits.answer_chars // 3
    kept, cut = fit(functions, budget)
    notes = [note] if note else []
    if row.note:
        notes.append(row.note)
    if cut:
        notes.append(f"answer budget reached: {len(functions) - len(kept)} functions left out "
                     "(pass symbol to narrow)")
    dependents = [d for d in dependents if d != path]
    return AnalysisAnswer(path, row.language, row.lines, row.size, kept,
                          max((m.complexity for m in metrics), default=0),
                          max((m.nesting for m in metrics), default=0),
                          imports[:200], dependents[:200],
                          cut or len(imports) > 200 or len(dependents) > 200, "; ".join(notes))


async def summarize(engine: ContextEngine, project: Project, budget_tokens: int,
                    note: str = "") -> SummaryAnswer:
    index = await engine.index()
    cached = engine.derived.get((project.name, f"summary:{budget_tokens}"))
    if cached is not None:
        return dataclasses.replace(cached, note=note or cached.note)  # type: ignore[no-any-return]
    files = await index.files(project.name)
    graph = await _graph(engine, project)
    rank = await _ranked(engine, project)
    indegree: dict[str, int] = {}
    for targets in graph.values():
        for target in targets:
            indegree[target] = indegree.get(target, 0) + 1
    languages: dict[str, int] = {}
    for f in files:
        languages[f.language] = languages.get(f.language, 0) + 1
    central = sorted(rank, key=lambda p: (-rank[p], p))[:15]
    modules = [ModuleRank(p, round(rank[p] * len(rank), 3), indegree.get(p, 0)) for p in central]
    entries = sorted(f.path for f in files if posixpath.basename(f.path) in _ENTRY_NAMES)[:20]
    budget = max(200, min(budget_tokens, engine.limits.answer_chars // 4)) * 4
    outline: list[OutlineEntry] = []
    used = 0
    truncated = False
    parsed = sorted((p for p in rank if p in graph), key=lambda p: (-rank[p], p))
    for path in parsed[:200]:
        symbols = await index.symbols(project.name, path)
        names = [f"{s.kind} {s.qualname} (line {s.line_start})" for s in symbols
                 if s.kind not in ("variable",)][:40]
        if not names:
            continue
        cost = len(path) + sum(len(n) + 4 for n in names) + 10
        if used + cost > budget:
            truncated = True
            break
        outline.append(OutlineEntry(path, names))
        used += cost
    notes = [note] if note else []
    if truncated:
        notes.append(f"outline cut at about {budget // 4} tokens: raise budget_tokens for more")
    answer = SummaryAnswer(project.name, len(files), sum(f.lines for f in files),
                           sum(f.size for f in files), languages, entries, modules, outline,
                           truncated, "; ".join(notes))
    if not note and project.state == "ready":  # only a finished index's summary is kept
        engine.derived[(project.name, f"summary:{budget_tokens}")] = answer
    return answer
