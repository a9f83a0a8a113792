"""tools/bench_gemm.py's timing order: contenders run A B C C B A and each reports the mean of
its two runs, so that a clock drifting linearly over the sequence (the H100 under its power cap)
biases none of them."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

from bench_gemm import _mirrored  # noqa: E402


def test_mirrored_order_and_means():
    calls: list[str] = []
    clock = iter(range(100))  # each measurement is 1.0 plus a drift that grows with every call

    def measure(name: str, base: float):
        def m() -> float:
            calls.append(name)
            return base + 0.1 * next(clock)
        return m

    means, (first, second) = _mirrored([measure("a", 1.0), measure("b", 2.0), measure("c", 3.0)])
    assert calls == ["a", "b", "c", "c", "b", "a"]
    assert first == [1.0, 2.1, 3.2] and second == [1.5, 2.4, 3.3]
    # a linear drift adds the same 0.25 to every mean: the differences between contenders are exact
    assert [round(v, 9) for v in means] == [1.25, 2.25, 3.25]
