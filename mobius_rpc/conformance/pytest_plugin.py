"""A pytest plugin: the ``mcp_conformance`` fixture (registered through ``pytest11``).

Another project checks its server in a test of its own::

    def test_server_conforms(mcp_conformance):
        mcp_conformance("python -m my_server", fuzz=1000, seed=7)

The fixture runs :func:`mobius_rpc.conformance.check_server` and fails the
test with the broken requirements and the minimal failing messages; it
returns the :class:`~mobius_rpc.conformance.report.Report` when all is well.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest

__all__ = ("mcp_conformance",)


@pytest.fixture
def mcp_conformance() -> Callable[..., Any]:
    def run(target: Any, **options: Any) -> Any:
        from .runner import check_server

        report = check_server(target, **options)
        if not report.ok:
            buffer = io.StringIO()
            report.render(buffer, color=False)
            pytest.fail(f"{report.target} is not conformant:\n{buffer.getvalue()}",
                        pytrace=False)
        return report

    return run
