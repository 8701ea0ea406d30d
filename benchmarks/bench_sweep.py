"""Orchestration overhead of a sweep: wall time against the trials' own time.

Runs ``python -m fno_sweeps.scaling`` (the ``cpu`` preset by default) into a fresh folder,
timing the whole command (Ray's start and shutdown included), then reads the results
table and compares:

    ideal    = sum of the trials' own wall times (``wall_s``: data, training, evaluation,
               checkpoint) / the number of concurrent slots
    overhead = measured wall time - ideal, in total, as a share of ideal, and per trial

and splits it into: before the first trial started (Ray and Tune start-up, the
first worker's imports), idle slots while trials ran, and after the last trial ended
(Ray's shutdown and the report, which the sweep writes at its end).

    python benchmarks/bench_sweep.py                    # cpu preset, 2 slots on 2 cores
    python benchmarks/bench_sweep.py --set n_train=[16] --slots 2
    python benchmarks/bench_sweep.py --out /tmp/bench    # keep results and report.html
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from fno.results import read_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--set", action="append", default=[], help="passed on to scaling.py")
    parser.add_argument("--slots", type=int, default=2, help="concurrent trials (scaling.py --concurrency)")
    parser.add_argument("--out", default=None, help="keep the sweep (results, report) here (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or tmp
        cmd = [sys.executable, "-m", "fno_sweeps.scaling", "--preset", args.preset, "--out", out]
        cmd += ["--concurrency", str(args.slots), "--no-dashboard"]
        for item in args.set:
            cmd += ["--set", item]
        launched = time.time()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        ended = time.time()
        table = read_results(Path(out) / args.preset / "results")
    wall = ended - launched
    statuses = table.column("status").to_pylist()
    own = table.column("wall_s").to_pylist()
    starts = [datetime.fromisoformat(s).timestamp() for s in table.column("started_at").to_pylist()]
    first, last = min(starts), max(s + w for s, w in zip(starts, own, strict=True))
    ideal = sum(own) / args.slots
    overhead = wall - ideal
    busy_span = last - first
    print(f"preset {args.preset}: {len(own)} trials ({statuses.count('ok')} ok), {args.slots} slots")
    print(f"  wall time of the command        {wall:8.1f} s")
    print(f"  sum of trials' own time / slots {ideal:8.1f} s  (sum {sum(own):.1f} s)")
    print(
        f"  overhead                        {overhead:8.1f} s  = {overhead / ideal:.1%} of ideal, "
        f"{overhead / len(own):.2f} s per trial"
    )
    print(f"    before the first trial started {first - launched:7.1f} s")
    print(f"    idle slots while trials ran    {busy_span - ideal:7.1f} s")
    print(f"    after the last trial ended     {ended - last:7.1f} s")


if __name__ == "__main__":
    main()
