"""Indexing: the walk and its skips, parsers per language, complexity, incremental runs."""

from __future__ import annotations

import os
import re
from pathlib import Path

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mobius_rpc.context.indexer import index_project
from mobius_rpc.context.languages import grammars
from mobius_rpc.context.languages.python_ast import parse_python
from mobius_rpc.context.languages.treesitter import parse_tree_sitter
from mobius_rpc.context.store import MemoryIndex
from mobius_rpc.context.tokens import index_tokens, query_tokens, split_identifier
from mobius_rpc.context.walk import WalkLimits, read_text, resolve_inside, walk

REPO = Path(__file__).resolve().parents[2]


def _tree(root: Path) -> None:
    (root / "pkg").mkdir()
    (root / "pkg" / "a.py").write_text("def a():\n    return 1\n")
    (root / "pkg" / "gen.py").write_text("x = 1\n")
    (root / "pkg" / "keep.log").write_text("kept by negation\n")
    (root / "pkg" / "drop.log").write_text("ignored\n")
    (root / ".gitignore").write_text("*.log\n!keep.log\nbuild/\n")
    (root / "pkg" / ".gitignore").write_text("gen.py\n")
    (root / "build").mkdir()
    (root / "build" / "out.py").write_text("ignored = True\n")
    (root / "blob.bin").write_bytes(b"\x00\x01\x02binary")
    (root / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    (root / "huge.py").write_text("x = 1\n" * 50_000)
    (root / "escape").symlink_to("/etc")
    (root / "loop").symlink_to(root)
    (root / "dangling").symlink_to(root / "missing")


def test_walk_honours_gitignore_and_skips_with_reasons(tmp_path: Path) -> None:
    _tree(tmp_path)
    result = walk(tmp_path, WalkLimits(max_file_bytes=100_000))
    paths = [e.path for e in result.files]
    assert "pkg/a.py" in paths and "pkg/keep.log" in paths
    assert "pkg/drop.log" not in paths and "pkg/gen.py" not in paths
    assert not any(p.startswith("build/") for p in paths)
    reasons = {s.path: s.reason for s in result.skipped}
    assert "leaves the project root" in reasons["escape"]
    assert "already visited" in reasons["loop"]
    assert "dangles" in reasons["dangling"]
    assert reasons["huge.py"].startswith("oversized")
    assert read_text(tmp_path, "blob.bin", 1000)[2] == "binary (NUL bytes)"
    assert read_text(tmp_path, "latin.txt", 1000)[2] == "undecodable: not UTF-8"


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "escape/passwd", "pkg/../../x",
                                  "", "a\x00b", "missing.py"])
def test_nothing_outside_the_root_resolves(tmp_path: Path, path: str) -> None:
    _tree(tmp_path)
    assert resolve_inside(tmp_path, path) is None
    assert read_text(tmp_path, path, 1000)[0] is None


def test_python_symbols_references_imports() -> None:
    source = ('"""Module."""\nimport os\nfrom . import sibling\nLIMIT = 3\n\n'
              'class Box(Base):\n    """A box.\n\n    More."""\n\n'
              '    @property\n    def size(self, n: int = 1) -> int:\n'
              '        return helper(n) + os.sep.count("/")\n\n'
              'def helper(n):\n    return n\n')
    parsed = parse_python("pkg/mod.py", source)
    by_name = {s.qualname: s for s in parsed.symbols}
    assert by_name["Box"].kind == "class" and by_name["Box"].doc == "A box."
    assert by_name["Box"].signature == "class Box(Base)"
    size = by_name["Box.size"]
    assert (size.kind, size.line_start, size.line_end) == ("method", 11, 13)
    assert size.signature == "def size(self, n: int=1) -> int"
    assert by_name["LIMIT"].kind == "constant" and by_name["helper"].kind == "function"
    calls = [(r.name, r.line, r.scope) for r in parsed.references if r.name == "helper"]
    assert calls == [("helper", 13, "Box.size")]
    assert {i.module for i in parsed.imports} == {"os", "pkg", "pkg.sibling"}


SNIPPETS = {
    "javascript": (b"import x from './x';\nclass A { m() { return f(1) } }\n"
                   b"function f(a) { return a && 1 }\n",
                   {("A", "class"), ("A.m", "method"), ("f", "function")}, "./x"),
    "typescript": (b"import {y} from 'y';\ninterface I { a: number }\nenum E { A }\n"
                   b"export function g(): void {}\n",
                   {("I", "interface"), ("E", "enum"), ("g", "function")}, "y"),
    "go": (b'package p\nimport "fmt"\ntype T struct{}\nfunc (t *T) M() { fmt.Println() }\n'
           b"func F() {}\n", {("T", "struct"), ("T.M", "method"), ("F", "function")}, "fmt"),
    "rust": (b"use std::io;\nstruct S;\nimpl S { fn m(&self) {} }\nfn f() {}\n",
             {("S", "struct"), ("S.m", "method"), ("f", "function")}, "std::io"),
    "java": (b"import java.util.List;\nclass A { void m() {} }\ninterface I {}\n",
             {("A", "class"), ("A.m", "method"), ("I", "interface")}, "java.util.List"),
    "c": (b"#include <stdio.h>\nstruct S { int a; };\nint f(int x) { return x; }\n",
          {("S", "struct"), ("f", "function")}, "stdio.h"),
    "cpp": (b"#include \"a.h\"\nnamespace n { class C { int m() { return 0; } }; }\n",
            {("n.C", "class"), ("n.C.m", "method")}, "a.h"),
}


@pytest.mark.parametrize("language", sorted(SNIPPETS))
def test_tree_sitter_symbols_per_language(language: str) -> None:
    source, expected, module = SNIPPETS[language]
    parsed = parse_tree_sitter(language, source)
    assert expected <= {(s.qualname, s.kind) for s in parsed.symbols}, parsed.symbols
    assert module in {i.module for i in parsed.imports}
    assert parsed.note == ""


def test_missing_grammar_degrades_to_text_search(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(grammars.GRAMMARS, "go", grammars.Grammar("tree_sitter_not_installed"))
    grammars.load_parser.cache_clear()
    try:
        parsed = parse_tree_sitter("go", b"package p\nfunc F() {}\n")
    finally:
        grammars.load_parser.cache_clear()
    assert parsed.symbols == [] and "text search only" in parsed.note
    assert "tree-sitter-not-installed" in parsed.note


def test_complexity_agrees_with_radon_on_this_repository() -> None:
    from radon.complexity import cc_visit
    compared = 0
    for path in sorted((REPO / "mobius_rpc" / "server").glob("*.py")):
        text = path.read_text()
        ours = {(m.qualname.rsplit(".", 1)[-1], m.line_start): m.complexity
                for m in parse_python(path.name, text).metrics}
        for block in cc_visit(text):
            for function in [block, *getattr(block, "methods", [])]:
                if type(function).__name__ != "Function":
                    continue
                found = [c for (name, line), c in ours.items()
                         if name == function.name and line <= function.lineno <= line + 10]
                assert function.complexity in found, (path.name, function.name)
                compared += 1
    assert compared > 100


@given(st.text(max_size=200))
def test_tokens_are_plain_and_queries_match_the_index(text: str) -> None:
    indexed = index_tokens(text).split()
    assert all(re.fullmatch(r"[a-z0-9]+", token) for token in indexed)
    assert set(query_tokens(text)) <= set(indexed) | set()  # a query finds what it indexes


def test_identifier_splitting() -> None:
    assert split_identifier("parseHTTPRequest_v2") == ["parse", "http", "request", "v", "2"]
    assert query_tokens("build_demo_server") == ["builddemoserver", "build", "demo", "server"]


def test_incremental_runs_write_only_what_changed(tmp_path: Path) -> None:
    for n in range(10):
        (tmp_path / f"m{n}.py").write_text(f"def f{n}():\n    return {n}\n")
    index = MemoryIndex()
    seen: list[tuple[int, int]] = []

    async def progress(done: int, total: int, message: str) -> None:
        seen.append((done, total))

    async def run() -> None:
        first = await index_project("p", tmp_path, index, progress=progress, batch_files=4)
        assert (first.planned, first.indexed) == (10, 10) and seen[0] == (0, 10)
        assert seen[-1] == (10, 10)
        again = await index_project("p", tmp_path, index)
        assert (again.planned, again.unchanged) == (0, 10)
        same = tmp_path / "m1.py"
        os.utime(same, ns=(1, 1))  # new mtime, same bytes: only touched
        (tmp_path / "m2.py").write_text("def renamed():\n    return 2\n")
        (tmp_path / "m3.py").unlink()
        third = await index_project("p", tmp_path, index)
        assert (third.planned, third.indexed, third.touched, third.deleted) == (2, 1, 1, 1)
        assert await index.definitions("p", "renamed", 5)
        assert not await index.definitions("p", "f2", 5)
        assert not await index.definitions("p", "f3", 5)

    anyio.run(run)


def test_cancelling_stops_at_a_batch_and_the_next_run_continues(tmp_path: Path) -> None:
    for n in range(12):
        (tmp_path / f"m{n}.py").write_text(f"def f{n}():\n    return {n}\n")
    index = MemoryIndex()

    async def run() -> None:
        with anyio.CancelScope() as scope:
            async def progress(done: int, total: int, message: str) -> None:
                if done >= 4:
                    scope.cancel()
            await index_project("p", tmp_path, index, progress=progress, batch_files=4)
        assert len(await index.file_states("p")) == 4
        rest = await index_project("p", tmp_path, index)
        assert (rest.planned, rest.unchanged) == (8, 4)

    anyio.run(run)


def test_hostile_files_are_skipped_or_noted_not_crashed(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.py")  # opening it would block the walk forever
    (tmp_path / "deep.py").write_text("x = " + "(" * 5000 + ")" * 5000 + "\n")
    (tmp_path / "deep.js").write_text("x = " + "[" * 20000 + "]" * 20000 + ";\n")
    (tmp_path / "bad.py").write_text("def broken(:\n")
    (tmp_path / "ok.py").write_text("def fine():\n    return 1\n")
    (tmp_path / "bom.py").write_bytes(b"\xef\xbb\xbfdef with_bom():\n    return 1\n")
    nested = tmp_path
    for n in range(70):
        nested = nested / f"d{n}"
    nested.mkdir(parents=True)
    (nested / "far.py").write_text("def far():\n    return 1\n")
    index = MemoryIndex()

    async def run() -> None:
        report = await index_project("p", tmp_path, index)
        reasons = {s.path: s.reason for s in report.skipped}
        assert reasons["pipe.py"] == "not a regular file"
        assert any("deeper than 64" in r for r in reasons.values())
        files = {f.path: f for f in await index.files("p")}
        assert "not valid Python 3" in files["bad.py"].note  # tree-sitter took over
        assert files["deep.py"].note  # too deep for ast: text search only, said so
        assert "deep.js" in files
        assert await index.definitions("p", "fine", 5)
        assert await index.definitions("p", "with_bom", 5)

    anyio.run(run)
