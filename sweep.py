"""Train over a grid of train.py settings x seeds, side by side, and summarise each grid point.

    python sweep.py --grid d_model=16,32,64,128 --grid layers=1,2 --seeds 5 --name size
    python sweep.py --grid weight_decay=0,1 --grid lr=1e-4,1e-3 --seeds 5 --name reg --steps 300

Any train.py option is an axis (d_model or --d-model; true/false for switches); the other train.py
options pass through to every run. output/sweeps/<name>/ gets runs.csv (a row per run), points.csv
(a row per grid point), sweep.png and sweep.json. The same command run again skips the runs already
in runs.csv, so a stopped sweep goes on where it stopped.
"""
import argparse
import csv
import itertools
import json
import re
import shlex
import sys
import time
from pathlib import Path

import tools
import train
from tools import UsageError

NOT_AXES = {"help", "out", "resume", "quiet", "device", "seed", "seeds", "jobs", "animate"}  # seeds: --seeds
TRUE, FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
POINT_STEPS = ("step_train_100", "step_test_100", "delay")


def get_parser():
    # allow_abbrev=False: train.py's --seed must not be read as an abbreviation of --seeds
    p = tools.Parser(prog="sweep.py", description="Train over a grid of train.py settings x seeds and summarise each grid point. "
                                 "Every other option is train.py's (see python train.py --help) and applies to "
                                 "every run; its --seed is the first seed.", allow_abbrev=False)
    p.add_argument("--grid", action="append", default=[], metavar="OPTION=V1,V2,...",
                   help="an axis: a train.py option and its values; give one --grid per axis")
    p.add_argument("--seeds", type=int, default=5, help="runs per grid point, with seeds --seed, --seed + 1, ... (default: 5)")
    p.add_argument("--name", default=None, help="the sweep's name (default: its axes' names joined by '-')")
    p.add_argument("--out", type=Path, default=None, help="sweep folder (default: output/sweeps/<name>)")
    p.add_argument("--jobs", type=int, default=-1, help="runs side by side (default -1: one per core, or per cluster worker)")
    p.add_argument("--backend", choices=("loky", "dask", "ray"), default="loky",
                   help="joblib backend (default: loky, this machine's cores); dask joins the scheduler in "
                        "DASK_SCHEDULER_ADDRESS, ray the cluster in RAY_ADDRESS (their packages must be installed)")
    return p


def axis_options():
    """{dest: argparse action} of the train.py options a grid can sweep."""
    return {a.dest: a for a in train.get_parser()._actions if a.dest not in NOT_AXES}


def parse_value(action, text, spec):
    """One grid value, read as train.py reads its option; UsageError naming the axis if it cannot be."""
    if action.nargs == 0:  # a switch such as --accumulate-grads
        if text.lower() not in TRUE + FALSE:
            raise UsageError(f"--grid {spec}: {text!r} is not true or false")
        return text.lower() in TRUE
    try:
        value = action.type(text) if action.type else text
    except ValueError:
        raise UsageError(f"--grid {spec}: {text!r} is not a valid {action.type.__name__}") from None
    if action.choices is not None and value not in action.choices:
        raise UsageError(f"--grid {spec}: {text!r} is not one of {', '.join(map(str, action.choices))}")
    return value


def parse_grid(specs):
    """{axis: [values]} from --grid OPTION=V1,V2,... specs, in the order given."""
    if not specs:
        raise UsageError("give at least one --grid OPTION=V1,V2,...")
    options, axes = axis_options(), {}
    for spec in specs:
        name, _, values = spec.partition("=")
        axis = name.strip().lstrip("-").replace("-", "_")
        if not values.strip():
            raise UsageError(f"--grid {spec!r}: write OPTION=V1,V2,...")
        if axis not in options:
            raise UsageError(f"--grid {spec}: {name!r} is not a train.py option that can be swept "
                             f"(one of {', '.join(sorted(options))}; the seed is --seeds')")
        if axis in axes:
            raise UsageError(f"--grid {axis} is given twice")
        axes[axis] = [parse_value(options[axis], v.strip(), spec) for v in values.split(",")]
        if len(set(axes[axis])) < len(axes[axis]):
            raise UsageError(f"--grid {spec}: a value is repeated")
    return axes


def plan(axes, fixed, seeds):
    """Every grid point x seed as train.py's resolved args: [(point, args)], point = {axis: value}."""
    given = {k for k, v in vars(fixed).items() if v is not None}
    if both := given & axes.keys():
        raise UsageError(f"{', '.join(sorted(both))}: both a grid axis and a fixed option")
    if fixed.resume:
        raise UsageError("--resume: run the same sweep command again instead; it skips the finished runs")
    if seeds < 1:
        raise UsageError(f"--seeds must be positive, got {seeds}")
    first = fixed.seed if fixed.seed is not None else 0
    runs = []
    for values in itertools.product(*axes.values()):
        point = dict(zip(axes, values))
        for seed in range(first, first + seeds):
            try:
                args = train.resolve_args(argparse.Namespace(**{**vars(fixed), **point, "seed": seed, "out": None}))
            except UsageError as e:
                raise UsageError(f"grid point {label(point)}: {e}") from None
            runs.append((point, args))
    return runs


def label(point):
    return ", ".join(f"{k}={tools.format_cell(v)}" for k, v in point.items())


def settings(args):
    """A run's settings, as its runs.csv row starts: train.py's args less where it ran."""
    return {k: v for k, v in train.plain_args(args).items() if k not in ("out", "device")}


def key(settings):
    return tuple(tools.format_cell(v) for v in settings.values())


def run_row(summary):
    """runs.csv's row of a finished run: its settings, then its figures."""
    s = settings(argparse.Namespace(**summary["args"]))
    return {**s, **tools.result_row(summary), "params": summary["params"], "ms_per_step": summary["ms_per_step"]}


def read_rows(path):
    """runs.csv's rows as strings, or [] if there is none yet."""
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def number(text):
    return None if text == "" else float(text)


def results(row):
    """A runs.csv row's figures as tools.aggregate takes them (steps never reached are None)."""
    return {k: number(row[k]) for k in tools.RESULT_KEYS}


def summarise(runs, rows):
    """points.csv's rows: for each grid point, what its runs found (tools.aggregate), flattened."""
    by_key = {tuple(r.get(k, "") for k in settings(runs[0][1])): r for r in rows}
    points = {}
    for point, args in runs:
        points.setdefault(key(point), (point, []))[1].append(by_key.get(key(settings(args))))
    out = []
    for point, found in points.values():
        found = [results(r) for r in found if r is not None]
        row = {**point, "runs": len(found)}
        if found:
            a = tools.aggregate(found)
            row["fraction_generalized"] = a["fraction_generalized"]
            row["test_acc_median"] = tools.quartiles(r["test_acc"] for r in found)["median"]
            for k in POINT_STEPS:
                row.update({f"{k}_{q}": a[k][q] for q in ("median", "q25", "q75", "n")})
            for suffix in ("", "_out"):
                row[f"marker_cosine_distance{suffix}_median"] = a[f"marker_cosine_distance{suffix}"]["median"]
                row[f"letter_cosine_distance{suffix}_median"] = a[f"letter_cosine_distance{suffix}"]["median"]
                row[f"fraction_markers_closer{suffix}"] = a[f"fraction_markers_closer{suffix}"]
        out.append(row)
    return out


def connect(backend):
    """Make a cluster backend known to joblib; the clusters' addresses come from their usual variables."""
    try:
        if backend == "dask":
            from distributed import Client
            return Client()  # joins DASK_SCHEDULER_ADDRESS if set, else starts a local cluster
        if backend == "ray":
            from ray.util.joblib import register_ray
            register_ray()  # ray.init() then joins RAY_ADDRESS if set
    except ImportError:
        raise UsageError(f"--backend {backend} needs its package: pip install "
                         f"{'dask[distributed]' if backend == 'dask' else 'ray'}") from None


def sweep(axes, runs, out, jobs=-1, backend="loky", command="", quiet=False):
    """Train the runs not yet in out/runs.csv, adding each as it ends; then write points.csv, sweep.png, sweep.json.

    sweep.json lists every call of the sweep: its command, how many runs it trained, its wall time.
    """
    t0 = time.perf_counter()
    rows = read_rows(out / "runs.csv")
    done = {tuple(r.get(k, "") for k in settings(runs[0][1])) for r in rows}
    todo = [args for _, args in runs if key(settings(args)) not in done]
    n_points = len(runs) // len({a.seed for _, a in runs})
    print(f"{out}: {n_points} grid points x {len(runs) // n_points} seeds = {len(runs)} runs; "
          f"{len(runs) - len(todo)} already in runs.csv, {len(todo)} to train ({backend}, jobs {jobs})")
    if todo:
        connect(backend)
        from tqdm import tqdm
        finished = train.train_many(todo, jobs, backend, return_as="generator_unordered")
        for summary, _ in tqdm(finished, total=len(todo), desc=out.name, unit="run", disable=quiet):
            rows.append({k: tools.format_cell(v) for k, v in run_row(summary).items()})  # as read back from runs.csv
            tools.write_text(out / "runs.csv", tools.format_csv(rows))  # at once: a stopped sweep keeps its finished runs
    points = summarise(runs, rows)
    tools.write_text(out / "points.csv", tools.format_csv(points))
    first = runs[0][1]
    title = (f"Sweep '{out.name}': {first.variant}, {first.steps} steps, "
             f"{len(runs) // n_points} seeds per point")
    tools.plot_sweep(points, list(axes), out / "sweep.png", title)
    wall = round(time.perf_counter() - t0, 1)
    history = json.loads((out / "sweep.json").read_text())["history"] if (out / "sweep.json").exists() else []
    tools.write_json(out / "sweep.json", {  # the history keeps what each call trained and how long it took
        "axes": {k: [tools.format_cell(v) for v in vs] for k, vs in axes.items()}, "seeds": sorted({a.seed for _, a in runs}),
        "runs": len(runs), "history": history + [{"command": command, "trained": len(todo), "wall_seconds": wall,
                                                  "backend": backend, "jobs": jobs}]})
    return points, wall


def point_line(p, axes):
    if not p["runs"]:
        return f"{label({a: p[a] for a in axes})}: no runs"
    steps = "never" if p["step_test_100_median"] is None else f"median step {p['step_test_100_median']:.0f}"
    return (f"{label({a: p[a] for a in axes})}: generalised {p['fraction_generalized']:.2f} of {p['runs']}, "
            f"test 100% at {steps}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args, rest = get_parser().parse_known_args(argv)
    fixed = train.get_parser().parse_args(rest)
    out = None
    try:
        axes = parse_grid(args.grid)
        runs = plan(axes, fixed, args.seeds)
        name = args.name or "-".join(axes)
        if not re.fullmatch(r"[\w.-]+", name):
            raise UsageError(f"--name {name!r}: use letters, digits, '.', '_' and '-' only")
        out = args.out or Path("output") / "sweeps" / name
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out {out} is a file, not a folder")
        if args.jobs == 0:
            raise UsageError("--jobs must not be 0")
        points, wall = sweep(axes, runs, out, args.jobs, args.backend, "python sweep.py " + shlex.join(argv),
                             fixed.quiet)
    except UsageError as e:
        sys.exit(f"sweep.py: error: {e}")
    except KeyboardInterrupt:
        sys.exit(f"\nstopped; the finished runs are in {out / 'runs.csv' if out else 'runs.csv'}. "
                 "Run the same command again to go on.")
    for p in points:
        print(point_line(p, axes))
    print(f"wrote {out / 'runs.csv'}, {out / 'points.csv'}, {out / 'sweep.png'} in {wall:.0f} s")
    return points


if __name__ == "__main__":
    main()
