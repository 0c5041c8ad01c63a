"""Peak memory of ``genlab sample`` as n grows: the .npy is streamed in chunks, so the
resident memory should not grow with n (the output goes to disk, not to RAM).

    python benchmarks/sample_memory.py                 # n = 10^3 ... 10^6 on a gmm run of digits
    python benchmarks/sample_memory.py --max-exp 5     # shorter

Fits a small gmm on the bundled digits into a temporary folder, then runs
``genlab sample RUN -n N --npy OUT.npy`` (and ``-o grid.png`` beside it) as separate
processes and reads each one's peak resident set size (ru_maxrss of the child). Prints a
markdown table; ``--json`` also writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")


def run(args: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB, wall seconds) of ``python -m genlab ARGS`` in a child process."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "genlab", *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"genlab {' '.join(args)} failed: {proc.stderr.read().decode()}")
    return usage.ru_maxrss / 1024, seconds  # Linux: ru_maxrss in KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-exp", type=int, default=6, help="largest n = 10^max_exp")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "gmm"
        run(["fit", "gmm", "--data", "digits", "--out", str(run_dir), "-p", "n_components=10", "-q"])
        baseline, _ = run(["sample", str(run_dir), "-n", "1", "-o", str(Path(tmp) / "one.png")])
        for exp in range(3, args.max_exp + 1):
            n = 10**exp
            npy = Path(tmp) / f"s{n}.npy"
            rss, seconds = run(["sample", str(run_dir), "-n", str(n), "--npy", str(npy)])
            size = npy.stat().st_size / 2**20
            npy.unlink()
            rss_grid, _ = run(
                [
                    "sample",
                    str(run_dir),
                    "-n",
                    str(n),
                    "--npy",
                    str(npy),
                    "-o",
                    str(Path(tmp) / "grid.png"),
                    "--overwrite",
                ]
            )
            npy.unlink()
            rows.append(
                {
                    "n": n,
                    "npy_mib": round(size, 1),
                    "peak_rss_mib": round(rss, 1),
                    "peak_rss_with_grid_mib": round(rss_grid, 1),
                    "seconds": round(seconds, 2),
                }
            )
            print(
                f"n = {n:>9,}: peak RSS {rss:7.1f} MiB (with the grid {rss_grid:7.1f} MiB), .npy {size:7.1f} MiB, {seconds:.1f} s",
                file=sys.stderr,
            )
    print("| n | .npy written (MiB) | peak RSS, --npy (MiB) | peak RSS, --npy + -o grid (MiB) | seconds |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['n']:,} | {r['npy_mib']} | {r['peak_rss_mib']} | {r['peak_rss_with_grid_mib']} | {r['seconds']} |")
    print(f"\nbaseline: `genlab sample -n 1` peaks at {baseline:.1f} MiB (Python, torch and the model)")
    if args.json is not None:
        args.json.write_text(json.dumps({"baseline_rss_mib": round(baseline, 1), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
