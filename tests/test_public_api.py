"""The curated public API and the command line."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import mobius_rpc
from mobius_rpc.cli import host_config


def test_every_public_name_is_exported_and_exists() -> None:
    assert len(set(mobius_rpc.__all__)) == len(mobius_rpc.__all__)
    for name in mobius_rpc.__all__:
        assert getattr(mobius_rpc, name) is not None, name
    public_classes = {name for name, value in vars(mobius_rpc).items()
                      if inspect.isclass(value) and not name.startswith("_")}
    assert public_classes <= set(mobius_rpc.__all__)


def test_print_config_for_each_host() -> None:
    for host, key in (("claude", "mcpServers"), ("cursor", "mcpServers"), ("vscode", "servers")):
        out = subprocess.run([sys.executable, "-m", "mobius_rpc", "serve", "--print-config", host],
                             capture_output=True, text=True, timeout=30, check=True).stdout
        config = json.loads(out)
        entry = config[key]["mobius-demo"]
        assert entry["args"][-2:] == ["serve", "--stdio"]
        assert entry == host_config(host)[key]["mobius-demo"]
    assert json.loads(out)["servers"]["mobius-demo"]["type"] == "stdio"


def test_serve_without_transport_is_a_usage_error() -> None:
    done = subprocess.run([sys.executable, "-m", "mobius_rpc", "serve"], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 2 and "--stdio" in done.stderr
