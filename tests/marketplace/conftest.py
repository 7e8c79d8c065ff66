"""Fixtures for the marketplace tests: a marketplace on a fresh home, real installers.

Downloads are cached in ``$MOBIUS_MARKET_TEST_CACHE`` (default
``~/.cache/mobius-rpc/market-test``) so repeated runs, CI's included, fetch each
package from its registry once; the installs themselves are always real.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mobius_rpc.marketplace import (
    Installer,
    Marketplace,
    MemoryMarketStore,
    SecretBox,
    probe,
)
from mobius_rpc.security.audit import AuditLog
from mobius_rpc.security.store import MemorySecurityStore

from ..storage.conftest import pg_cluster  # noqa: F401  (the real PostgreSQL fixture)

CACHE = Path(os.environ.get("MOBIUS_MARKET_TEST_CACHE")
             or Path.home() / ".cache" / "mobius-rpc" / "market-test")
KEY = b"k" * 32


def needs_node() -> pytest.MarkDecorator:
    return pytest.mark.skipif(shutil.which("npm") is None or shutil.which("node") is None,
                              reason="node and npm are needed for npm extensions")


def needs_bwrap() -> pytest.MarkDecorator:
    return pytest.mark.skipif(shutil.which("bwrap") is None,
                              reason="bubblewrap is not installed (apt-get install bubblewrap; "
                                     ".ci/run does this)")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def security() -> MemorySecurityStore:
    return MemorySecurityStore()


@pytest.fixture
def audit(security: MemorySecurityStore) -> AuditLog:
    return AuditLog(security)


@pytest.fixture
async def market(home: Path, audit: AuditLog) -> AsyncIterator[Marketplace]:
    yield Marketplace(MemoryMarketStore(), home=home, box=SecretBox(KEY), audit=audit,
                      sandbox=probe(),
                      installer=Installer(cache=CACHE, python=sys.executable))
