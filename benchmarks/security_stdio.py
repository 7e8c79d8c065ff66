"""What the policy and the audit log cost on ``mobius serve --stdio``: tools/call latency
(p50) and server CPU per call, three servers in one run.  Prints numbers only.

Servers (each its own process, the context engine on one small project, one SQLite
store file each):

* ``off``: the context engine on stdio as it ran before security was attached there
  (``run_stdio(principal=local_principal())``, no policy, no audit);
* ``policy``: ``mobius serve --stdio --no-audit`` (the organization's rules only);
* ``secured``: ``mobius serve --stdio`` (rules and the audit log, the default).

One client per server sends ``tools/call search_code`` one at a time (the next after
the answer: stdio's usual use, a host waiting on each call); ``--calls`` per slice,
slices interleaved (off, policy, secured, secured, policy, off, ...) for ``--rounds``
so a drifting machine slows all alike.  p50 is the median of each slice's median;
CPU per call is from /proc (the secured server's includes its audit writer).
After the load the secured store's audit log is counted and verified.

    python benchmarks/security_stdio.py [--calls 300] [--rounds 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_OFF = ("import anyio, sys\n"
        "from mobius_rpc.context.serve import context_server\n"
        "from mobius_rpc.security.serving import local_principal\n"
        "server = context_server([sys.argv[2]], sys.argv[1], 'both')\n"
        "anyio.run(lambda: server.run_stdio(principal=local_principal()))\n")
_CALL = {"name": "search_code", "arguments": {"query": "bench_entry"}}


class Peer:
    """One stdio server and a line-at-a-time client of it."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env)
        self.next_id = 0
        self.ask("initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                "clientInfo": {"name": "bench", "version": "1"}})
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message).encode() + b"\n")
        self.proc.stdin.flush()

    def ask(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdout is not None
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit("a server ended early")
            answer: dict[str, Any] = json.loads(line)
            if answer.get("id") == self.next_id:
                if "result" not in answer or answer["result"].get("isError"):
                    raise SystemExit(f"a call failed: {answer}")
                return answer

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp, "project")
        root.mkdir()
        (root / "a.py").write_text("def bench_entry():\n    return 1\n")
        env = {**os.environ, "MOBIUS_HOME": str(Path(tmp, "home"))}
        env.pop("MOBIUS_STORE", None)
        url = {arm: f"sqlite:///{tmp}/{arm}.db" for arm in ("off", "policy", "secured")}
        serve = [sys.executable, "-m", "mobius_rpc", "serve", "--stdio"]
        peers = {
            "off": Peer([sys.executable, "-c", _OFF, url["off"], str(root)], env),
            "policy": Peer([*serve, "--store", url["policy"], "--no-audit", str(root)], env),
            "secured": Peer([*serve, "--store", url["secured"], str(root)], env)}
        for peer in peers.values():
            for _ in range(50):  # warm: the index is built, caches are full
                peer.ask("tools/call", _CALL)
        p50: dict[str, list[float]] = {arm: [] for arm in peers}
        cpu: dict[str, float] = dict.fromkeys(peers, 0.0)
        order = list(peers)
        for round_ in range(args.rounds):
            for arm in order if round_ % 2 == 0 else order[::-1]:
                peer, times = peers[arm], []
                before = peer.cpu()
                for _ in range(args.calls):
                    start = time.perf_counter()
                    peer.ask("tools/call", _CALL)
                    times.append(time.perf_counter() - start)
                cpu[arm] += peer.cpu() - before
                p50[arm].append(statistics.median(times) * 1e6)
        for peer in peers.values():
            peer.close()
        verify = subprocess.run([sys.executable, "-m", "mobius_rpc", "audit", "verify",
                                 "--store", url["secured"]], capture_output=True, text=True,
                                env=env, timeout=120)
        calls = args.calls * args.rounds
        out: dict[str, Any] = {"calls_per_arm": calls, "arms": {}}
        base = statistics.median(p50["off"])
        for arm in peers:
            median = statistics.median(p50[arm])
            out["arms"][arm] = {"p50_us": round(median, 1),
                                "p50_vs_off": round(median / base, 3),
                                "cpu_us_per_call": round(cpu[arm] / calls * 1e6, 1),
                                "p50_per_round_us": [round(x, 1) for x in p50[arm]]}
        out["audit_verify"] = verify.stdout.strip() or verify.stderr.strip()
        print(json.dumps(out, indent=2))
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=2))
        if verify.returncode != 0:
            raise SystemExit("the audit log did not verify")


if __name__ == "__main__":
    main()
