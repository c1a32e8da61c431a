"""Speed of the default runs: ms per training step and whole-process seconds, median of several runs.

    python benchmarks/speed.py                 # every variant, 3 runs each
    python benchmarks/speed.py --variant 2g-samples --repeats 5

Each run is a fresh `python train.py --quiet` process (imports, training, figures, everything),
written to a temporary folder.
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tools import VARIANTS  # noqa: E402


def time_run(variant, out):
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "train.py", "--variant", variant, "--out", str(out), "--quiet"], cwd=ROOT,
                   check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    return seconds, json.loads((out / "summary.json").read_text())["ms_per_step"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", choices=VARIANTS, action="append", help="variant to time (default: all)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    print(f"{'variant':<12} {'ms/step':>8} {'whole run (s)':>14}   runs")
    for variant in args.variant or VARIANTS:
        with tempfile.TemporaryDirectory() as tmp:
            results = [time_run(variant, Path(tmp) / str(i)) for i in range(args.repeats)]
        seconds, ms = zip(*results)
        print(f"{variant:<12} {statistics.median(ms):8.2f} {statistics.median(seconds):14.2f}   "
              f"median of {args.repeats}: " + ", ".join(f"{s:.1f}s" for s in seconds))


if __name__ == "__main__":
    main()
