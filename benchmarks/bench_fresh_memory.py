"""What touching fresh memory costs on this machine, beside rewriting memory already touched.

The cost of scoring a pair (``benchmarks/bench_pair_scores.py``) moved by seconds from run to
run; on this project's virtual machine, whose host backs guest memory lazily, the first touch of
new pages is the suspect. This measures it directly, in one process:

- ``fresh``: ``--arrays`` arrays of (``--rows``, ``--width``) float64 (the ridge probe's (n, D)
  at a 2,560-wide pair, 254 MB each by default) allocated and filled one after another, all kept
  alive, so every one needs pages the process has not touched;
- ``rewrite`` (the baseline, same run): the last of them filled again, ``--arrays`` times: the same
  bytes written to pages already backed.

Each fill's seconds and MB/s are kept.

    python3 benchmarks/bench_fresh_memory.py          # -> results/fresh_memory.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import finish_record, run_record

OUTPUT = Path(__file__).resolve().parents[1] / "results" / "fresh_memory.json"


def timed_fill(array: np.ndarray, value: float) -> float:
    """Seconds to write ``value`` into every element of ``array``."""
    start = time.perf_counter()
    array.fill(value)
    return time.perf_counter() - start


def main() -> None:
    from featlt.runtime import write_json_atomic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=12_406)
    parser.add_argument("--width", type=int, default=2_560)
    parser.add_argument("--arrays", type=int, default=10)
    parser.add_argument("-o", "--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    record = run_record(sys.argv)
    mb = args.rows * args.width * 8 / 1e6
    kept: list[np.ndarray] = []
    fresh = []
    for _ in range(args.arrays):
        kept.append(np.empty((args.rows, args.width)))
        fresh.append(timed_fill(kept[-1], 1.0))
    rewrite = [timed_fill(kept[-1], 2.0) for _ in range(args.arrays)]

    def summary(seconds: list[float]) -> dict[str, Any]:
        return {"seconds_each": [round(s, 4) for s in seconds],
                "mb_per_second_each": [round(mb / s, 1) for s in seconds],
                "seconds_median": round(float(np.median(seconds)), 4)}

    document = {
        "what": "first touch of fresh float64 arrays (all kept alive) against rewriting one "
                "already touched, in one process",
        "array": {"rows": args.rows, "width": args.width, "mb": round(mb, 1)},
        "fresh": summary(fresh),
        "rewrite": summary(rewrite),
        "run": finish_record(record),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.output, document)
    print(f"fresh {mb:.0f} MB arrays: {', '.join(f'{s:.2f}' for s in fresh)} s; rewrite median "
          f"{np.median(rewrite):.3f} s; written to {args.output}")


if __name__ == "__main__":
    main()
