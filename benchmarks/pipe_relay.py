"""The floor of any second stdio hop: a process that copies bytes between its
own stdio and a child's, parsing nothing.

    python benchmarks/pipe_relay.py COMMAND [ARGS ...]

``benchmarks/gateway.py --floor`` puts it where the gateway would be: what it
costs is what one more process and two more pipe crossings cost on this
machine, below which no gateway (which must at least parse, route and
re-frame each message) can go.  One thread per direction, ``os.read`` and
``os.write`` on the raw descriptors: the least Python can do per message.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading


def pump(source: int, sink: int) -> None:
    while True:
        data = os.read(source, 1 << 16)
        if not data:
            break
        view = memoryview(data)
        while view:
            view = view[os.write(sink, view):]


def main() -> int:
    child = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             bufsize=0)
    assert child.stdin is not None and child.stdout is not None
    down = threading.Thread(target=pump, args=(child.stdout.fileno(), 1), daemon=True)
    down.start()
    try:
        pump(0, child.stdin.fileno())
    except OSError:
        pass
    child.stdin.close()
    code = child.wait()
    down.join(5)
    return code


if __name__ == "__main__":
    sys.exit(main())
