"""Train the model on one variant of the experiment and write everything to its run folder.

    python train.py                                   # 2g-samples, the original's settings
    python train.py --variant 3g-samples --seed 1     # another variant, another seed
    python train.py --out output/2g-samples --resume --steps 2000
    python train.py --animate                         # also training.gif, the run as an animation
    python train.py --seeds 20 --accumulate-grads  # seeds 0..19 -> output/2g-samples/seeds-accumulate/

The run folder gets model.pt, metrics.csv (one row per step), summary.json, train.log and figures.
A seed study writes only seeds.csv (a row per seed), seeds.json (their aggregate) and seeds.png.
"""
import argparse
import math
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import tools
from components import GPT, GPTConfig
from tools import VARIANTS, DEFAULTS, UsageError

MODEL_ARGS = ("variant", "d_model", "heads", "layers", "inverted_fraction")  # what a resumed run cannot change
# What a seed study's folder is named after when it differs from the variant's default; flags are
# named by their option, except these shorter ones. The first seed is named too, so that studies
# of other seeds do not overwrite each other.
STUDY_ARGS = ("seed", "steps", "lr", "weight_decay", "batch_size", "d_model", "heads", "layers",
              "accumulate_grads", "grokfast_alpha", "grokfast_lamb", "inverted_fraction", "shuffle_text")
STUDY_NAMES = {"seed": "from", "accumulate_grads": "accumulate"}


def get_parser():
    p = tools.Parser(description="Train a small transformer to repeat the character before a marker, and test "
                           "it on the inverted character-marker pairing it never saw.")
    p.add_argument("--variant", choices=VARIANTS, default=None,
                   help="experiment version (default: 2g-samples; on --resume, the run's)")
    p.add_argument("--steps", type=int, default=None, help="total training steps (default: 500; 1000 for 2g-text)")
    p.add_argument("--seed", type=int, default=None, help="random seed for init and batches (default: 0)")
    p.add_argument("--lr", type=float, default=None, help=f"AdamW learning rate (default: {DEFAULTS['lr']})")
    p.add_argument("--weight-decay", type=float, default=None,
                   help=f"AdamW weight decay (default: {DEFAULTS['weight_decay']})")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"samples per step, drawn with replacement (default: {DEFAULTS['batch_size']})")
    p.add_argument("--d-model", type=int, default=None, help=f"model width (default: {DEFAULTS['d_model']})")
    p.add_argument("--heads", type=int, default=None, help=f"attention heads (default: {DEFAULTS['heads']})")
    p.add_argument("--layers", type=int, default=None, help="transformer blocks (default: 1; 2 for 3g-samples)")
    p.add_argument("--accumulate-grads", action="store_true", default=None,
                   help="never zero the gradients, as the original did: each update uses the sum of all "
                        "gradients so far")
    p.add_argument("--grokfast-alpha", type=float, default=None,
                   help="Grokfast: momentum of each gradient's running average (default: 0.98, the paper's)")
    p.add_argument("--grokfast-lamb", type=float, default=None,
                   help="Grokfast: add this many times the running average to each gradient before the update; "
                        "0 is off (default: 0; the paper uses 2)")
    p.add_argument("--inverted-fraction", type=float, default=None,
                   help="move this fraction of each group's inverted (test) pairs, chosen by --seed, into "
                        "training; the test is then on the inverted pairs still held out (default: 0; "
                        "sample variants only)")
    p.add_argument("--shuffle-text", action="store_true", default=None,
                   help="2g-text only: cut each batch from the training triples in a fresh random order")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where to train (default: auto, a GPU if there is one)")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: output/<variant>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out up to --steps total steps, with its settings")
    p.add_argument("--quiet", action="store_true", help="no progress bar, only the final summary line")
    p.add_argument("--animate", action="store_true",
                   help="also write training.gif: answers, t-SNE map and accuracy at up to 100 evenly spaced steps")
    p.add_argument("--seeds", type=int, default=None,
                   help="train this many seeds (--seed, --seed + 1, ...) side by side, and write only their "
                        "aggregate to <out>/seeds<suffix>/, the suffix naming the non-default settings")
    p.add_argument("--jobs", type=int, default=-1,
                   help="with --seeds: worker processes (-1: one per core)")
    return p


def resolve_args(args, resumed=None):
    """Fill what the user left unset: from the resumed run, else from the variant's defaults. Then check it."""
    given = {k: v for k, v in vars(args).items() if v is not None}
    if resumed is not None:
        for k in MODEL_ARGS + (("seed",) if resumed["inverted_fraction"] else ()):  # the seed picks the data
            if k in given and given[k] != resumed[k]:
                raise UsageError(f"--resume: the run in {args.out} has {k}={resumed[k]}, not {given[k]}")
        settings = {**vars(args), **resumed, **given}
    else:
        variant = VARIANTS[given.get("variant", "2g-samples")]
        defaults = dict(DEFAULTS, variant=variant.name, steps=variant.steps, seed=0, layers=variant.n_layer,
                        accumulate_grads=False, grokfast_alpha=0.98, grokfast_lamb=0.0, inverted_fraction=0.0,
                        shuffle_text=False)
        settings = {**vars(args), **defaults, **given}
    args = argparse.Namespace(**settings)
    args.out = Path(args.out) if args.out is not None else Path("output") / args.variant
    for name in ("steps", "batch_size", "lr", "d_model", "heads", "layers"):
        if not getattr(args, name) > 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if not (args.weight_decay >= 0 and math.isfinite(args.lr)):
        raise UsageError("--weight-decay must be >= 0 and --lr finite")
    if args.d_model % args.heads:
        raise UsageError(f"--d-model {args.d_model} is not divisible by --heads {args.heads}")
    if not (0 <= args.grokfast_alpha < 1 and 0 <= args.grokfast_lamb < math.inf):
        raise UsageError("--grokfast-alpha must be in [0, 1) and --grokfast-lamb >= 0 and finite")
    variant = VARIANTS[args.variant]
    if args.inverted_fraction and variant.text:
        raise UsageError("--inverted-fraction applies to the sample variants, not to 2g-text")
    held_out = [len(tokens) - k for (_, tokens), k in zip(variant.groups,
                                                          tools.moved_count(variant, args.inverted_fraction))]
    if not (0 <= args.inverted_fraction < 1 and min(held_out) > 0):
        raise UsageError(f"--inverted-fraction must be >= 0 and leave each group inverted pairs to test, "
                         f"got {args.inverted_fraction}")
    if args.shuffle_text and not variant.text:
        raise UsageError("--shuffle-text applies to the 2g-text variant only")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file, not a folder")
    if args.seeds is not None and args.seeds < 1:
        raise UsageError(f"--seeds must be positive, got {args.seeds}")
    if args.jobs == 0:
        raise UsageError("--jobs must not be 0 (-1: one per core)")
    return args


def plain_args(args):
    """The run's settings as plain data, for the checkpoint and summary.json."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
            if k not in ("resume", "quiet", "animate", "seeds", "jobs")}


class Interrupt:
    """The first Ctrl-C asks training to stop after the current step, instead of killing the process."""

    def __init__(self):
        self.requested = False
        self.previous = signal.signal(signal.SIGINT, self.request)

    def request(self, signum, frame):
        self.requested = True

    def hold(self):
        """While the outputs are written, a further Ctrl-C does nothing."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def release(self):
        signal.signal(signal.SIGINT, self.previous)


def measure(model, data, step):
    """One row of metrics.csv: the model as it is after `step` updates, before the next."""
    values = {**tools.evaluate(model, data), **tools.distances(model, data), "weight_norm": tools.weight_norm(model)}
    return {"step": step, **dict(zip(values, torch.stack(list(values.values())).tolist()))}


def log_line(r):
    return (f"step {r['step']:6d} | train loss {r['train_loss']:.4f} | test loss {r['test_loss']:.4f} | "
            f"train acc {r['train_acc']:.3f} | test acc {r['test_acc']:.3f} | marker dist {r['marker_distance']:.3f}")


@dataclass
class Run:
    """A training run's state: what its checkpoint holds and what its outputs are drawn from."""

    args: argparse.Namespace
    data: tools.Data
    model: GPT
    optimizer: torch.optim.Optimizer
    batches: torch.Generator  # draws the batches; its state is saved, so a resumed run draws the same ones
    rows: list  # one dict of metrics a step: metrics.csv
    log: list  # train.log's lines
    first: dict  # the token-vector tables at step 0, for tsne_first.png
    step: int = 0
    grokfast: list = None  # Grokfast's running average of each parameter's gradient
    step_seconds: float = 0.0
    interrupted: bool = False
    frames: list = None  # snapshots for training.gif (tools.snapshot), when animated


def start(args, resumed=None):
    """A fresh run, measured at step 0, or the run of the checkpoint `resumed`, ready to go on."""
    device = tools.pick_device(args.device)
    variant = VARIANTS[args.variant]
    data = tools.make_data(variant, args.inverted_fraction, args.seed).to(device)
    config = GPTConfig(vocab_size=len(data.vocab), block_size=variant.block_size, n_layer=args.layers,
                       n_head=args.heads, n_embd=args.d_model)
    tools.set_seed(args.seed)
    model = GPT(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay, fused=True)
    batches = torch.Generator().manual_seed(args.seed)
    if resumed is None:
        first = {k: w.detach().clone() for k, w in tools.vector_tables(model).items()}
        return Run(args, data, model, optimizer, batches, [measure(model, data, 0)], [], first)
    model.load_state_dict(resumed["model"])
    optimizer.load_state_dict(resumed["optimizer"])
    for p, g in zip(model.parameters(), resumed["grads"] or []):
        p.grad = g.to(device)
    batches.set_state(resumed["rng"]["batches"])
    torch.set_rng_state(resumed["rng"]["torch"])
    grokfast = [e.to(device) for e in resumed["grokfast"]] if resumed.get("grokfast") else None
    step = resumed["step"]
    if step >= args.steps:
        raise UsageError(f"--resume: the run in {args.out} is already at step {step}; ask for more --steps")
    rows = [r for r in tools.read_csv(args.out / "metrics.csv") if r["step"] <= step]
    log = (args.out / "train.log").read_text().splitlines()
    return Run(args, data, model, optimizer, batches, rows, log, resumed["first_vectors"], step, grokfast)


def fit(run, stop=lambda: False, after_step=lambda run: None):
    """Train up to run.args.steps updates, measuring the model after each; `stop()` ends it early.

    after_step(run) is called once each step is measured (the animation records its frames there).
    """
    args, model, optimizer = run.args, run.model, run.optimizer
    bar = None
    if not args.quiet:
        from tqdm import tqdm
        if run.step == 0:
            device = next(model.parameters()).device
            print(f"{args.variant}: {model.num_params():,} parameters, {args.steps} steps on {device}")
        bar = tqdm(total=args.steps, initial=run.step, desc=args.variant, unit="step", dynamic_ncols=True)
    log_every = max(1, args.steps // 50)
    if run.step == 0:
        run.log.append(log_line(run.rows[0]))
    start_step, t0 = run.step, time.perf_counter()
    while run.step < args.steps and not stop():
        x, y = tools.get_batch(run.data, args.batch_size, run.batches, args.shuffle_text)
        _, loss = model(x, y)
        loss.backward()
        if args.grokfast_lamb:
            run.grokfast = tools.grokfast(model.parameters(), run.grokfast, args.grokfast_alpha, args.grokfast_lamb)
        optimizer.step()
        if not args.accumulate_grads:
            optimizer.zero_grad(set_to_none=True)
        elif args.grokfast_lamb:  # the sum of all gradients goes on without this step's amplification
            for p, e in zip(model.parameters(), run.grokfast):
                p.grad.sub_(e, alpha=args.grokfast_lamb)
        run.step += 1
        r = measure(model, run.data, run.step)
        run.rows.append(r)
        after_step(run)
        if r["step"] % log_every == 0 or r["step"] == args.steps:
            run.log.append(log_line(r))
        if bar is not None:
            bar.update()
            if run.step % 10 == 0 or run.step == args.steps:
                bar.set_postfix(loss=f"{r['train_loss']:.3f}", train=f"{r['train_acc']:.2f}",
                                test=f"{r['test_acc']:.2f}", refresh=False)
    run.step_seconds = (time.perf_counter() - t0) / max(1, run.step - start_step)
    run.interrupted = run.step < args.steps
    if bar is not None:
        bar.close()
    return run


def summarize(run):
    """summary.json's figures (wall_seconds is filled in once the outputs are written)."""
    args, rows, last = run.args, run.rows, run.rows[-1]
    return {
        "variant": args.variant, "seed": args.seed, "steps": run.step, "params": run.model.num_params(),
        "train_acc": last["train_acc"], "test_acc": last["test_acc"],
        "step_train_100": tools.first_step(rows, "train_acc"), "step_test_100": tools.first_step(rows, "test_acc"),
        "marker_cosine_distance": last["marker_distance"], "letter_cosine_distance": last["letter_distance"],
        "marker_cosine_distance_out": last["marker_distance_out"],
        "letter_cosine_distance_out": last["letter_distance_out"],
        **{k: last[k] for k in tools.IN_CONTEXT_LABELS if k in last},
        "accumulate_grads": args.accumulate_grads, "interrupted": run.interrupted,
        "wall_seconds": None, "ms_per_step": round(1000 * run.step_seconds, 3),
        "device": str(next(run.model.parameters()).device), "torch": torch.__version__, "args": plain_args(args),
    }


def write_run(run, t_start):
    """The checkpoint, metrics, log, figures and summary of a run, each written atomically; returns the summary."""
    args, model, data, step, out = run.args, run.model, run.data, run.step, run.args.out
    variant, first, rows, optimizer, batches = data.variant, run.first, run.rows, run.optimizer, run.batches
    summary = summarize(run)
    grads = [p.grad for p in model.parameters()] if args.accumulate_grads and step > 0 else None
    tools.save_checkpoint(out / "model.pt", {
        "model": model.state_dict(), "config": vars(model.config), "vocab": data.vocab.tokens,
        "variant": variant.name, "args": plain_args(args), "step": step,
        "optimizer": optimizer.state_dict(), "grads": grads, "grokfast": run.grokfast,
        "rng": {"batches": batches.get_state(), "torch": torch.get_rng_state()},
        "first_vectors": {k: v.cpu() for k, v in first.items()},
    })
    tools.write_text(out / "metrics.csv", tools.format_csv(rows))
    tools.write_text(out / "train.log", "\n".join(run.log) + "\n")
    title = f"{variant.name}, seed {args.seed}" + (", accumulated gradients" if args.accumulate_grads else "")
    tools.plot_accuracy(rows, out / "accuracy.png", f"Accuracy: {title}")
    tools.plot_loss(rows, out / "loss.png", f"Loss: {title}")
    tools.plot_tsne(first, data, out / "tsne_first.png", f"t-SNE at step 0: {title}", args.seed)
    tools.plot_tsne(tools.vector_tables(model), data, out / "tsne_last.png", f"t-SNE at step {step}: {title}",
                    args.seed)
    tools.plot_predictions(model, data, out / "predictions.png", f"Answers at step {step}: {title}")
    tools.plot_attention(model, data, out / "attention.png", f"Attention at step {step}: {title}")
    if run.frames:
        tools.animate_training(run.frames, rows, data, out / "training.gif", title)
    summary["wall_seconds"] = round(time.perf_counter() - t_start, 2)
    tools.write_json(out / "summary.json", summary)  # last: a run folder with a summary is complete
    return summary


def train(args, resumed=None):
    """Train as `args` says (continuing the checkpoint `resumed`, if given), write the run folder, return the summary.

    The first Ctrl-C stops training after the current step; the run is then saved as it is.
    """
    t_start = time.perf_counter()
    run = start(args, resumed)
    interrupt = Interrupt()
    record = lambda run: None
    if args.animate:
        # Frames from where this run starts (step 0, or the resumed step) to its end; only
        # those steps pay for a snapshot.
        steps = set(tools.frame_steps(run.step, args.steps))
        run.frames = [tools.snapshot(run.model, run.data, run.step)]

        def record(run):
            if run.step in steps:
                run.frames.append(tools.snapshot(run.model, run.data, run.step))
    try:
        fit(run, stop=lambda: interrupt.requested, after_step=record)
        interrupt.hold()
        if run.frames and run.frames[-1]["step"] != run.step:  # interrupted: the last frame shows where it stopped
            run.frames.append(tools.snapshot(run.model, run.data, run.step))
        return write_run(run, t_start)
    finally:
        interrupt.release()


def train_quietly(args):
    """(summary, metric rows) of a run that writes nothing: for many runs side by side in worker processes."""
    torch.set_num_threads(1)
    args = argparse.Namespace(**{**vars(args), "quiet": True})
    run = fit(start(args))
    return summarize(run), run.rows


def train_many(runs, n_jobs=-1, backend="loky", return_as="list"):
    """train_quietly for each args in `runs`, side by side in worker processes: [(summary, rows), ...].

    backend is any joblib backend: "loky" (local processes), or "dask" / "ray" once their
    packages are installed and a cluster is connected. return_as="generator_unordered" yields each
    result as soon as its run ends (summary["args"] tells which run it is).
    """
    from joblib import Parallel, delayed, parallel_config
    with parallel_config(backend=backend, n_jobs=n_jobs):
        return Parallel(return_as=return_as)(delayed(train_quietly)(args) for args in runs)


def study_folder(args):
    """<out>/seeds<suffix>: '-accumulate', '-shuffle-text', '-lr0.001', ... for each non-default setting."""
    default = resolve_args(get_parser().parse_args(["--variant", args.variant]))
    name = "seeds"
    for k in STUDY_ARGS:
        value = getattr(args, k)
        if value != getattr(default, k):
            flag = STUDY_NAMES.get(k, k.replace("_", "-"))
            name += f"-{flag}" if isinstance(value, bool) else f"-{flag}{value}"
    return args.out / name


def seed_line(s):
    def at(k):
        return "never" if s[k] is None else f"{s[k]:4d}"
    return (f"seed {s['seed']:3d}: train acc {s['train_acc']:.3f} (100% at {at('step_train_100')}), "
            f"test acc {s['test_acc']:.3f} (100% at {at('step_test_100')}), marker distance "
            f"{s['marker_cosine_distance']:.3f} vs letter pairs {s['letter_cosine_distance']:.3f}")


def aggregate_line(a):
    def iqr(q):
        return "never" if q["median"] is None else f"{q['median']:.0f} [{q['q25']:.0f}-{q['q75']:.0f}] (n={q['n']})"
    return (f"{a['n']} seeds: {a['fraction_generalized']:.0%} reach test acc 1.0; steps to 100% train "
            f"{iqr(a['step_train_100'])}, to 100% test {iqr(a['step_test_100'])}, delay {iqr(a['delay'])}; "
            f"markers closer than the median letter pair in {a['fraction_markers_closer']:.0%} (input) and "
            f"{a['fraction_markers_closer_out']:.0%} (output layer) of seeds")


def train_seeds(args):
    """Train args.seeds seeds from args.seed on, in worker processes; write the study's three files.

    Returns (the study's folder, its seeds.json).
    """
    t_start = time.perf_counter()
    folder = study_folder(args)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is a file, not a folder")
    seeds = list(range(args.seed, args.seed + args.seeds))
    if not args.quiet:
        print(f"{args.variant}: {len(seeds)} seeds ({seeds[0]}..{seeds[-1]}), {args.steps} steps each, "
              f"-> {folder}")
    results = train_many([argparse.Namespace(**{**vars(args), "seed": s}) for s in seeds], n_jobs=args.jobs)
    # The markers' distance at step 0 too: whether training moved them, or they started where they end.
    rows = [{"seed": s["seed"], **tools.result_row(s), "marker_cosine_distance_step0": r[0]["marker_distance"],
             "marker_cosine_distance_out_step0": r[0]["marker_distance_out"]} for s, r in results]
    title = (f"{args.variant}, seeds {seeds[0]}-{seeds[-1]}" + (", accumulated gradients" if args.accumulate_grads
             else "") + (", shuffled text" if args.shuffle_text else ""))
    tools.write_text(folder / "seeds.csv", tools.format_csv(rows))
    tools.plot_seeds([r for _, r in results], folder / "seeds.png", f"Seed study: {title}")
    study = {"variant": args.variant, "seeds": seeds, **tools.aggregate(rows),
             **{k: tools.quartiles(r[k] for r in rows) for k in rows[0] if k.endswith("_step0")},
             "args": {k: v for k, v in plain_args(args).items() if k != "seed"},
             "wall_seconds": round(time.perf_counter() - t_start, 2), "torch": torch.__version__}
    tools.write_json(folder / "seeds.json", study)
    if not args.quiet:
        for s, _ in results:
            print(seed_line(s))
    return folder, study


def summary_line(s):
    def at(k):
        return "never" if s[k] is None else f"step {s[k]}"
    return (f"{s['variant']} seed {s['seed']}: train acc {s['train_acc']:.3f} (100% at {at('step_train_100')}), "
            f"test acc {s['test_acc']:.3f} (100% at {at('step_test_100')}), "
            f"marker distance {s['marker_cosine_distance']:.3f}, {s['ms_per_step']:.2f} ms/step, "
            f"{s['wall_seconds']:.1f} s")


def main(argv=None):
    args = get_parser().parse_args(argv)
    try:
        resumed = None
        if args.seeds is not None and args.resume:
            raise UsageError("--seeds trains fresh runs; it cannot --resume")
        if args.resume:
            if args.out is None:
                raise UsageError("--resume needs --out DIR, the run folder to continue")
            if not (args.out / "model.pt").is_file():
                raise UsageError(f"--resume: no checkpoint at {args.out / 'model.pt'}")
            resumed = tools.load_checkpoint(args.out / "model.pt")
        args = resolve_args(args, resumed and resumed["args"])
        if args.seeds is not None:
            folder, study = train_seeds(args)
            print(aggregate_line(study))
            print(f"wrote {folder}/seeds.csv, seeds.json, seeds.png in {study['wall_seconds']:.1f} s")
            return study
        summary = train(args, resumed)
    except UsageError as e:
        sys.exit(f"train.py: error: {e}")
    print(summary_line(summary))
    if summary["interrupted"]:
        print(f"interrupted at step {summary['steps']}; everything is saved in {args.out}. Resume with:\n"
              f"  python train.py --out {args.out} --resume --steps {args.steps}")
        sys.exit(130)
    return summary


if __name__ == "__main__":
    main()
