"""Wall time of a whole seed study, as a user runs it: `python train.py --seeds 20` in a fresh process.

    python benchmarks/seeds.py                      # 20 seeds of 2g-samples, 3 repeats, median
    python benchmarks/seeds.py --variant 3g-samples --seeds 10 --repeats 5

The outputs go to a temporary folder. The machine's load average is printed beside each time:
on a shared machine other people's work slows every run.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", choices=("2g-samples", "2g-text", "3g-samples"), default="2g-samples")
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--jobs", type=int, default=-1, help="worker processes (-1: one per core)")
    args = p.parse_args()
    if args.seeds < 1 or args.repeats < 1:
        p.error("--seeds and --repeats must be positive")
    times = []
    with tempfile.TemporaryDirectory() as out:
        for i in range(args.repeats):
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            subprocess.run([sys.executable, str(ROOT / "train.py"), "--variant", args.variant, "--seeds",
                            str(args.seeds), "--jobs", str(args.jobs), "--out", out, "--quiet"],
                           cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
            times.append(time.perf_counter() - t0)
            print(f"run {i + 1}: {times[-1]:.1f} s  (load average before it: {load:.1f} on {os.cpu_count()} cores)")
    print(f"{args.variant}, {args.seeds} seeds, whole process: median {statistics.median(times):.1f} s "
          f"of {args.repeats} (min {min(times):.1f}, max {max(times):.1f})")


if __name__ == "__main__":
    main()
