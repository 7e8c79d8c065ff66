"""A large real codebase from a package registry: Django's source distribution.

Fetched once with ``pip download --no-binary :all: --no-deps`` into
``MOBIUS_TEST_CACHE`` (default ``~/.cache/mobius-test``); skipped, saying why,
when the registry cannot be reached.  Only the ``django/`` package (about 900
Python files) is indexed, which keeps the test to seconds; the benchmark
indexes the whole tree.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import anyio
import pytest

from mobius_rpc.context.indexer import index_project
from mobius_rpc.context.languages.python_ast import parse_python
from mobius_rpc.context.store import MemoryIndex
from mobius_rpc.context.surface import build_context_server
from mobius_rpc.storage import open_store
from tests.conftest import connect

pytestmark = pytest.mark.slow
SPEC = "django==5.1"


@pytest.fixture(scope="module")
def django_package() -> Path:
    cache = Path(os.environ.get("MOBIUS_TEST_CACHE", Path.home() / ".cache" / "mobius-test"))
    tree = cache / "Django-5.1"
    if not tree.is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        got = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-binary",
                              ":all:", "--no-deps", SPEC, "-d", str(cache)],
                             capture_output=True, text=True, timeout=600)
        archive = cache / "Django-5.1.tar.gz"
        if got.returncode != 0 or not archive.exists():
            pytest.skip(f"cannot fetch {SPEC} from the registry: {got.stderr.strip()[-200:]}")
        with tarfile.open(archive) as tar:
            tar.extractall(cache, filter="data")
    return tree / "django"


def test_django_precision(django_package: Path) -> None:
    async def run() -> None:
        async with open_store("memory:django") as store:
            server, engine = build_context_server([django_package], store)
            report = await engine.reindex(engine.project(None))
            assert report.indexed > 800
            assert any("binary" in s.reason for s in report.skipped)  # the .mo catalogues
            async with connect(server) as client:
                async def call(name: str, args: dict[str, object]) -> dict[str, object]:
                    result = await client.call_tool(name, args)
                    assert not result.get("isError"), result
                    return result["structuredContent"]  # type: ignore[no-any-return]

                for identifier, path in (("QuerySet", "db/models/query.py"),
                                         ("ModelAdmin", "contrib/admin/options.py"),
                                         ("get_random_string", "utils/crypto.py")):
                    hits = (await call("search_code", {"query": identifier}))["hits"]
                    assert (hits[0]["path"], hits[0]["name"]) == (path, identifier)  # type: ignore[index]
                refs = await call("references", {"name": "get_random_string", "limit": 200})
                callers = {r["path"] for r in refs["references"]}  # type: ignore[attr-defined]
                assert {"core/management/utils.py", "middleware/csrf.py"} <= callers
                summary = await call("summary", {"budget_tokens": 1000})
                central = [m["path"] for m in summary["central_modules"]]  # type: ignore[attr-defined]
                # the modules nearly everything imports, ranked over the import graph
                assert {"utils/functional.py", "conf/__init__.py",
                        "core/exceptions.py"} <= set(central[:15]), central

    anyio.run(run)


def test_django_complexity_agrees_with_radon(django_package: Path) -> None:
    from radon.complexity import cc_visit
    compared = 0
    for path in ("db/models/query.py", "forms/models.py", "utils/http.py"):
        text = (django_package / path).read_text()
        ours = {(m.qualname.rsplit(".", 1)[-1], m.line_start): m.complexity
                for m in parse_python(path, text).metrics}
        for block in cc_visit(text):
            for function in [block, *getattr(block, "methods", [])]:
                if type(function).__name__ != "Function":
                    continue
                found = [c for (name, line), c in ours.items()
                         if name == function.name and line <= function.lineno <= line + 10]
                assert function.complexity in found, (path, function.name)
                compared += 1
    assert compared > 200


def test_django_incremental_reindex_reads_only_what_changed(django_package: Path,
                                                            tmp_path: Path) -> None:
    async def run() -> None:
        index = MemoryIndex()
        sub = django_package / "utils"
        first = await index_project("u", sub, index)
        again = await index_project("u", sub, index)
        assert first.indexed > 40 and again.planned == 0 and again.unchanged == first.indexed

    anyio.run(run)
