"""Keys generated once per test session (RSA generation is the slow part)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from joserfc.jwk import ECKey, RSAKey

from .kit import ec, rsa


@dataclass(frozen=True)
class TestKeys:
    __test__ = False

    rsa1: RSAKey
    ec1: ECKey
    rsa2: RSAKey
    #: not the issuer's: a forger's key, published under the issuer's kid in the token
    forger: RSAKey


@pytest.fixture(scope="session")
def keys() -> TestKeys:
    return TestKeys(rsa("rsa-1"), ec("ec-1"), rsa("rsa-2"), rsa("rsa-1"))
