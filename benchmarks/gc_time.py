"""Time the garbage collector takes during one compression, per model-free strategy, at 100k tokens.

The library never switches the collector off (that would change the whole process); instead it keeps the
number of GC-tracked objects a compression creates small (atoms stored as columns of strings and integers,
plain dicts for term counts), so that long prompts do not set off full collections. This measures what is
left: the collector's own time, read from ``gc.callbacks``, next to the compression's wall time.

Run: ``python benchmarks/gc_time.py [--size 100000] [--rounds 5]``
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from typing import Any

from occ_research.strategies import STRATEGIES, make_strategy, runs_model

try:
    from benchmarks.test_latency import prompt
except ImportError:  # run as a script from the benchmarks folder
    from test_latency import prompt  # type: ignore[no-redef]


class GcClock:
    """Seconds spent in collections, and how many of each generation, since the last ``reset``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = [0, 0, 0]
        self._started = 0.0

    def reset(self) -> None:
        self.seconds, self.collections = 0.0, [0, 0, 0]

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.collections[info["generation"]] += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--strategies", nargs="*", help="default: every model-free strategy")
    parser.add_argument("--sources", nargs="*", default=["qmsum", "sharegpt"])
    args = parser.parse_args()
    clock = GcClock()
    gc.callbacks.append(clock)
    print("| strategy | text | median ms | GC ms per call (median) | full collections per call |")
    print("|---|---|---:|---:|---:|")
    for source in args.sources:
        messages, question = prompt(source, args.size)
        for name in args.strategies or STRATEGIES.names():
            strategy = make_strategy(name)
            if runs_model(strategy):
                continue
            strategy.compress(messages, rate=0.25, question=question)  # warm up
            walls, pauses, full = [], [], 0
            for _ in range(args.rounds):
                clock.reset()
                started = time.perf_counter()
                strategy.compress(messages, rate=0.25, question=question)
                walls.append(time.perf_counter() - started)
                pauses.append(clock.seconds)
                full += clock.collections[2]
            print(
                f"| {name} | {source} | {statistics.median(walls) * 1e3:.1f} | "
                f"{statistics.median(pauses) * 1e3:.1f} | {full / args.rounds:.1f} |"
            )


if __name__ == "__main__":
    main()
