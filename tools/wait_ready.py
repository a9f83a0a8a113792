"""Wait until a ``vllm serve`` answers ``/health`` with 200, or fail as soon as it exits.

Shared by tools/demo.sh (as a script) and tests/test_serve.py (as a function).

    python tools/wait_ready.py PORT PID TIMEOUT_S [--log FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.request
from collections.abc import Callable


class ServerExited(RuntimeError):
    """The server process ended before it became ready."""


def wait_ready(port: int, alive: Callable[[], bool], timeout_s: float) -> float:
    """Poll ``http://127.0.0.1:PORT/health`` once a second; return the seconds waited.

    Raises :class:`ServerExited` when ``alive()`` turns False and ``TimeoutError``
    after ``timeout_s``.
    """
    t0 = time.time()
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return time.time() - t0
        except OSError:
            pass
        if not alive():
            raise ServerExited(f"the server on port {port} exited during start-up")
        if time.time() - t0 > timeout_s:
            raise TimeoutError(f"the server on port {port} was not ready in {timeout_s:.0f} s")
        time.sleep(1)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("port", type=int)
    ap.add_argument("pid", type=int, help="the server's process id")
    ap.add_argument("timeout_s", type=float)
    ap.add_argument("--log", default=None, help="the server's log, named in the error message")
    args = ap.parse_args()
    try:
        waited = wait_ready(args.port, lambda: _pid_alive(args.pid), args.timeout_s)
    except (ServerExited, TimeoutError) as e:
        sys.exit(f"[demo] {e}" + (f"; see {args.log}" if args.log else ""))
    print(f"[demo]     ready after {waited:.0f} s", flush=True)


if __name__ == "__main__":
    main()
