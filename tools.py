"""Everything around the model: the variants' data, batching, evaluation, metrics, figures, checkpoints.

`train.py` and `test.py` are built from these functions; each one does one thing and can be used
alone from a notebook (`data = make_data(VARIANTS["2g-samples"])`, `evaluate(model, data)`, ...).
"""
import argparse
import csv
import io
import json
import math
import os
import random
import string
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from components import GPT, GPTConfig, Vocab


class UsageError(Exception):
    """A problem with what the user asked for; the entry scripts print it in one line and exit."""


class Parser(argparse.ArgumentParser):
    """The entry scripts' argument parser: a bad argument is one line, not the usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


# ----------------------------------------------------------------------------------------------
# The variants

LOWER = tuple(string.ascii_lowercase)
UPPER = tuple(string.ascii_uppercase)
NUMBERS = tuple(str(i) for i in range(26))  # each number is ONE token


@dataclass(frozen=True)
class Variant:
    """One version of the experiment. Group i trains with markers[i] and is tested with markers[i-1]."""

    name: str
    groups: tuple  # ((group name, tokens), ...)
    markers: tuple
    text: bool = False  # one running text and a plain language-model loss, instead of 2-token samples
    block_size: int = 2
    n_layer: int = 1
    steps: int = 500


VARIANTS = {
    "2g-samples": Variant("2g-samples", (("lowercase", LOWER), ("uppercase", UPPER)), ("!", "?")),
    "2g-text": Variant("2g-text", (("lowercase", LOWER), ("uppercase", UPPER)), ("!", "?"),
                       text=True, block_size=8, steps=1000),
    "3g-samples": Variant("3g-samples", (("lowercase", LOWER), ("uppercase", UPPER), ("numbers", NUMBERS)),
                          ("!", "?", "."), n_layer=2),
}

# The original's training settings, shared by every variant.
DEFAULTS = dict(lr=1e-4, weight_decay=0.0, batch_size=128, d_model=128, heads=4)


def make_vocab(variant):
    return Vocab([t for _, tokens in variant.groups for t in tokens] + list(variant.markers))


def marker_of(variant, group, inverted):
    """The marker a group is paired with: its own in training, the previous group's in the test."""
    return variant.markers[(group - inverted) % len(variant.markers)]


def pairing(variant, inverted):
    """[(character, marker), ...] of the training pairing, or of the inverted (test) pairing."""
    return [(c, marker_of(variant, g, inverted)) for g, (_, tokens) in enumerate(variant.groups) for c in tokens]


def pairing_text(pairs):
    """The text variant's running text: 'a!a' 'b!b' ... one triple per pair."""
    return [t for c, m in pairs for t in (c, m, c)]


# ----------------------------------------------------------------------------------------------
# Data

@dataclass
class Probe:
    """Prompts with one right answer each, right-padded to the context length.

    The model is causal, so padding after a prompt's last token never changes its answer.
    """

    prompts: torch.Tensor  # (P, T)
    last: torch.Tensor  # (P,) position of each prompt's last token
    answers: torch.Tensor  # (P,)

    def to(self, device):
        return Probe(self.prompts.to(device), self.last.to(device), self.answers.to(device))


@dataclass
class Split:
    """Rows for the loss, and the split's questions read off those same rows."""

    x: torch.Tensor  # (N, T) inputs
    targets: torch.Tensor  # (N, T) next tokens, -1 where not scored
    row: torch.Tensor  # (P,) the row of x holding each question
    last: torch.Tensor  # (P,) the position in that row of the question's last token (its marker)
    answers: torch.Tensor  # (P,)

    def to(self, device):
        return Split(*(t.to(device) for t in (self.x, self.targets, self.row, self.last, self.answers)))

    def probe(self):
        return Probe(self.x[self.row], self.last, self.answers)


@dataclass
class Data:
    variant: Variant
    vocab: Vocab
    train: Split
    test: Split
    probes: dict  # name -> Probe, more questions scored each step (the text variant's in-context probes)
    triples: torch.Tensor = None  # (n, 3) the text variant's training triples, which batches are cut from

    def __post_init__(self):
        self.pairs = pair_indices(self)  # (marker pairs, same-group letter pairs), for the distances
        # What `evaluate` reads every step, in one batch: the splits' rows, then the probes' prompts.
        self.sources = {"train": self.train, "test": self.test, **self.probes}
        self.eval_sizes = [len(s.x if isinstance(s, Split) else s.prompts) for s in self.sources.values()]
        self.eval_x = torch.cat([s.x if isinstance(s, Split) else s.prompts for s in self.sources.values()])

    def to(self, device):
        return Data(self.variant, self.vocab, self.train.to(device), self.test.to(device),
                    {k: p.to(device) for k, p in self.probes.items()},
                    None if self.triples is None else self.triples.to(device))


def make_probe(sequences, answers, block_size):
    """A Probe from token lists (each at most block_size long) and their answers."""
    prompts = torch.zeros(len(sequences), block_size, dtype=torch.long)
    for i, seq in enumerate(sequences):
        prompts[i, :len(seq)] = torch.tensor(seq)
    last = torch.tensor([len(seq) - 1 for seq in sequences])
    return Probe(prompts, last, torch.tensor(answers, dtype=torch.long))


def samples_split(vocab, pairs):
    """2-token samples 'c m' -> c, scored at the last position only."""
    x = torch.tensor([[vocab.ids[c], vocab.ids[m]] for c, m in pairs])  # (N, 2)
    targets = torch.stack([torch.full_like(x[:, 0], -1), x[:, 0]], dim=1)
    return Split(x, targets, torch.arange(len(x)), torch.ones(len(x), dtype=torch.long), x[:, 0])


def text_split(vocab, pairs, block_size):
    """The running text as a language-model split: the windows that start at a triple, all positions scored.

    Its questions are, as in the original, the windows that end at a marker; the answer is the
    character before it. (block_size 8 makes these exactly the windows that start at a triple.)
    """
    ids = torch.tensor(vocab.encode("".join(pairing_text(pairs))))
    windows = ids.unfold(0, block_size + 1, 3)  # (N, T + 1), one window per triple that starts one
    x = windows[:, :-1]
    row = torch.arange(len(x))
    last = torch.full_like(row, block_size - 1)
    return Split(x, windows[:, 1:], row, last, x[:, -2])


def in_context_probes(variant, vocab, seed=0):
    """Questions that tell copying from the text's alphabetical shortcut, all on the inverted pairing.

    zero_shot:      'b?' alone                          -> b
    one_shot_pred:  'a?ab?' (example = predecessor)     -> b   (what the test text always shows)
    one_shot_other: 'k?kb?' (any other example letter)  -> b   (only copying answers this)
    test_shuffled:  the test text with its triples in a fixed random order
    """
    rng = random.Random(seed)
    zero, pred, other = ([], []), ([], []), ([], [])
    for g, (_, tokens) in enumerate(variant.groups):
        m = vocab.ids[marker_of(variant, g, inverted=True)]
        ids = [vocab.ids[c] for c in tokens]
        for i, c in enumerate(ids):
            zero[0].append([c, m])
            zero[1].append(c)
            if i > 0:
                pred[0].append([ids[i - 1], m, ids[i - 1], c, m])
                pred[1].append(c)
            e = rng.choice([e for j, e in enumerate(ids) if j not in (i, i - 1)])
            other[0].append([e, m, e, c, m])
            other[1].append(c)
    shuffled = pairing(variant, inverted=True)
    rng.shuffle(shuffled)
    return {
        "zero_shot": make_probe(*zero, variant.block_size),
        "one_shot_pred": make_probe(*pred, variant.block_size),
        "one_shot_other": make_probe(*other, variant.block_size),
        "test_shuffled": text_split(vocab, shuffled, variant.block_size).probe(),
    }


def moved_count(variant, inverted_fraction):
    """How many of each group's inverted pairs move into training: the fraction of the group, rounded."""
    return [math.floor(inverted_fraction * len(tokens) + 0.5) for _, tokens in variant.groups]


def moved_pairs(variant, inverted_fraction, seed):
    """Indices into pairing(variant, inverted=True) of the pairs moved into training, the same for a seed.

    Each group gives the same fraction of its pairs, so no group's test is emptier than another's.
    """
    generator = torch.Generator().manual_seed(seed)
    moved, offset = [], 0
    for (_, tokens), k in zip(variant.groups, moved_count(variant, inverted_fraction)):
        moved += (offset + torch.randperm(len(tokens), generator=generator)[:k]).tolist()
        offset += len(tokens)
    return sorted(moved)


def make_data(variant, inverted_fraction=0.0, seed=0):
    """The variant's training set, its inverted-pairing test set, and the probes evaluated each step.

    inverted_fraction > 0 (sample variants only) moves that fraction of the inverted pairs, chosen
    by `seed`, into training; the test set is then the inverted pairs still held out.
    """
    vocab = make_vocab(variant)
    train_pairs, test_pairs = pairing(variant, inverted=False), pairing(variant, inverted=True)
    if inverted_fraction:
        if variant.text:
            raise ValueError("inverted_fraction applies to the sample variants only")
        moved = set(moved_pairs(variant, inverted_fraction, seed))
        train_pairs += [p for i, p in enumerate(test_pairs) if i in moved]
        test_pairs = [p for i, p in enumerate(test_pairs) if i not in moved]
    if variant.text:
        train = text_split(vocab, train_pairs, variant.block_size)
        test = text_split(vocab, test_pairs, variant.block_size)
        triples = torch.tensor([[vocab.ids[t] for t in (c, m, c)] for c, m in train_pairs])
        return Data(variant, vocab, train, test, in_context_probes(variant, vocab), triples)
    return Data(variant, vocab, samples_split(vocab, train_pairs), samples_split(vocab, test_pairs), {})


def get_batch(data, batch_size, generator, shuffle_text=False):
    """batch_size training rows drawn uniformly with replacement: inputs and targets, both (B, T).

    The text variant draws windows of its running text at any offset. With shuffle_text the text is
    laid out from the training triples in a fresh random order for each batch, so that the
    alphabetical order cannot be used as a shortcut.
    """
    if data.triples is None:
        x, targets = data.train.x, data.train.targets
    else:
        triples = data.triples
        if shuffle_text:
            triples = triples[torch.randperm(len(triples), generator=generator).to(triples.device)]
        windows = triples.flatten().unfold(0, data.variant.block_size + 1, 1)  # (N, T + 1)
        x, targets = windows[:, :-1], windows[:, 1:]
    idx = torch.randint(len(x), (batch_size,), generator=generator).to(x.device)
    return x[idx], targets[idx]


# ----------------------------------------------------------------------------------------------
# Evaluation and metrics

def predict(model, probe):
    """The model's greedy answer to each prompt of a probe: (P,)."""
    logits, _ = model(probe.prompts)
    return logits[torch.arange(len(probe.last), device=probe.last.device), probe.last].argmax(-1)


@torch.no_grad()
def evaluate(model, data):
    """Loss and accuracy of both splits, and accuracy of every probe, from one forward pass over all of them."""
    model.eval()
    logits, _ = model(data.eval_x)  # (R, T, V)
    model.train()
    out = {}
    for (name, s), part in zip(data.sources.items(), logits.split(data.eval_sizes)):
        if isinstance(s, Split):
            out[f"{name}_loss"] = F.cross_entropy(part.flatten(0, 1), s.targets.flatten(), ignore_index=-1)
            part = part[s.row]
        answers = part[torch.arange(len(s.last), device=part.device), s.last].argmax(-1)
        out[f"{name}_acc"] = (answers == s.answers).float().mean()
    return {k: out[k] for k in sorted(out, key=lambda k: k.endswith("_acc"))}  # losses first


def token_groups(data):
    """{group name: token ids} for the characters' groups and the markers."""
    ids = {name: [data.vocab.ids[t] for t in tokens] for name, tokens in data.variant.groups}
    ids["markers"] = [data.vocab.ids[m] for m in data.variant.markers]
    return ids


def pair_indices(data):
    """(marker pairs, same-group character pairs) as index tensors (2, n) into the vocabulary."""
    groups = token_groups(data)
    markers = torch.combinations(torch.tensor(groups.pop("markers"))).T
    letters = torch.cat([torch.combinations(torch.tensor(ids)) for ids in groups.values()]).T
    device = data.train.x.device
    return markers.to(device), letters.to(device)


def cosine_distances(vectors, pairs):
    """1 - cosine similarity of the rows of vectors (V, C) for each index pair (2, n)."""
    v = F.normalize(vectors, dim=1)
    return 1 - (v[pairs[0]] * v[pairs[1]]).sum(1)


def vector_tables(model):
    """The two tables of token vectors the analogy is read from: input embeddings and output-layer rows."""
    return {"input": model.wte.weight, "output": model.lm_head.weight}


@torch.no_grad()
def table_distances(tables, pairs):
    """Markers' mean cosine distance and same-group letter pairs' median, in each table of token vectors.

    tables: {"input": (V, C), "output": (V, C)} as `vector_tables` gives them; pairs: `Data.pairs`.
    """
    markers, letters = pairs
    out = {}
    for name, w in tables.items():
        suffix = "" if name == "input" else "_out"
        out["marker_distance" + suffix] = cosine_distances(w, markers).mean()
        out["letter_distance" + suffix] = cosine_distances(w, letters).median()
    return out


def distances(model, data):
    """table_distances of the model's input embeddings and output-layer rows."""
    return table_distances(vector_tables(model), data.pairs)


@torch.no_grad()
def weight_norm(model):
    return torch.nn.utils.get_total_norm(list(model.parameters()))


def grokfast(params, ema, alpha, lamb):
    """Grokfast-EMA (Lee et al. 2024): amplify the slow part of each gradient, in place, before the update.

    ema <- alpha * ema + (1 - alpha) * grad, then grad <- grad + lamb * ema. Returns the averages
    (one tensor a parameter); pass ema=None at the first step: the average then starts at the first
    gradient, as in the paper's code, rather than at zero.
    """
    grads = [p.grad for p in params]
    if ema is None:
        ema = [g.detach().clone() for g in grads]
    else:
        for e, g in zip(ema, grads):
            e.mul_(alpha).add_(g, alpha=1 - alpha)
    for e, g in zip(ema, grads):
        g.add_(e, alpha=lamb)
    return ema


def first_step(rows, key, value=1.0):
    """First step at which rows[key] reached value, or None."""
    return next((r["step"] for r in rows if r[key] >= value), None)


RESULT_KEYS = ("train_acc", "test_acc", "step_train_100", "step_test_100", "delay",
               "marker_cosine_distance", "letter_cosine_distance",
               "marker_cosine_distance_out", "letter_cosine_distance_out")


def result_row(summary):
    """A run's summary reduced to the figures compared across runs; delay = step_test_100 - step_train_100.

    The text variant's runs also carry their in-context accuracies.
    """
    s = dict(summary)
    s["delay"] = None if None in (s["step_train_100"], s["step_test_100"]) else s["step_test_100"] - s["step_train_100"]
    return {k: s[k] for k in (*RESULT_KEYS, *IN_CONTEXT_LABELS) if k in s}


def quartiles(values):
    """{median, q25, q75, n} of the values that are not None (a step never reached is None)."""
    v = np.array([x for x in values if x is not None], dtype=float)
    if len(v) == 0:
        return {"median": None, "q25": None, "q75": None, "n": 0}
    q25, median, q75 = np.percentile(v, [25, 50, 75])
    return {"median": float(median), "q25": float(q25), "q75": float(q75), "n": len(v)}


def aggregate(rows):
    """What a set of runs (result_row dicts) says together.

    fraction_generalized: share of runs whose final test accuracy is 1.0. Steps and delay are
    summarised over the runs that reached them (their count is `n` in each). The markers' cosine
    distance is set against the median distance of same-group letter pairs in the same table.
    In-context accuracies (text variant) get their quartiles and the share of runs at 1.0.
    """
    out = {"n": len(rows), "fraction_generalized": float(np.mean([r["test_acc"] == 1.0 for r in rows]))}
    for k in ("step_train_100", "step_test_100", "delay"):
        out[k] = quartiles(r[k] for r in rows)
    for suffix in ("", "_out"):
        markers = [r["marker_cosine_distance" + suffix] for r in rows]
        letters = [r["letter_cosine_distance" + suffix] for r in rows]
        out["marker_cosine_distance" + suffix] = quartiles(markers)
        out["letter_cosine_distance" + suffix] = quartiles(letters)
        out["fraction_markers_closer" + suffix] = float(np.mean([m < l for m, l in zip(markers, letters)]))
    for k in IN_CONTEXT_LABELS:
        if k in rows[0]:
            values = [r[k] for r in rows]
            out[k] = {**quartiles(values), "fraction_perfect": float(np.mean([v == 1.0 for v in values]))}
    return out


# ----------------------------------------------------------------------------------------------
# Files: every write goes to a temporary name and is renamed into place, so a crash at any
# moment leaves the previous complete file or the new one, never a truncated one.

@contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name ends in the real one's extension: some writers pick the format from it.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the result is an ordinary file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2) + "\n")


def format_cell(v):
    """A value as the CSV files write it: floats to 7 digits, None as an empty cell."""
    return "" if v is None else f"{v:.7g}" if isinstance(v, float) else str(v)


def format_csv(rows):
    """Rows as CSV text with a fixed format, so equal runs give equal bytes."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(rows[0].keys())
    writer.writerows([format_cell(v) for v in r.values()] for r in rows)
    return buf.getvalue()


def read_csv(path):
    with open(path, newline="") as f:
        return [{k: int(v) if k == "step" else float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def save_checkpoint(path, ckpt):
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(ckpt, f)  # to a file object: the archive inside is not named after the temporary file


CHECKPOINT_KEYS = {"model", "config", "vocab", "variant", "args", "step"}


def load_checkpoint(path):
    """A checkpoint dict, loaded without ever unpickling arbitrary objects; UsageError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no checkpoint file at {path}")
    if path.stat().st_size == 0:
        raise UsageError(f"checkpoint {path} is empty")
    try:
        with warnings.catch_warnings():  # torch warns about odd pickle protocols; the error below says enough
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if "Unsupported global" in str(e):
            raise UsageError(f"refusing to load {path}: it holds Python objects that would need "
                             "arbitrary unpickling") from None
        raise UsageError(f"{path} is not a readable checkpoint (corrupt or not saved by torch.save)") from None
    if not isinstance(ckpt, dict) or not CHECKPOINT_KEYS <= ckpt.keys():
        raise UsageError(f"{path} is not an analogrok checkpoint")
    if ckpt["variant"] not in VARIANTS or ckpt["vocab"] != make_vocab(VARIANTS[ckpt["variant"]]).tokens:
        raise UsageError(f"{path} is a checkpoint of an unknown variant")
    return ckpt


def model_from_checkpoint(ckpt, path="checkpoint"):
    try:
        model = GPT(GPTConfig(**ckpt["config"]))
        model.load_state_dict(ckpt["model"])
    except Exception:
        raise UsageError(f"{path}: its weights do not fit its model config") from None
    return model


# ----------------------------------------------------------------------------------------------
# Seeds and devices

def set_seed(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # CUDA too


def pick_device(name):
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    return name


# ----------------------------------------------------------------------------------------------
# Figures: one function a figure, each saved at a size read on screen.

GROUP_COLOURS = {"lowercase": "tab:blue", "uppercase": "tab:orange", "numbers": "tab:green", "markers": "tab:red"}
DPI = 110


def save_figure(fig, path):
    import matplotlib.pyplot as plt
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)


def figure(*args, **kwargs):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt.subplots(*args, **kwargs)


IN_CONTEXT_LABELS = {
    "zero_shot_acc": "zero-shot 'b?'",
    "one_shot_pred_acc": "one-shot, predecessor example 'a?ab?'",
    "one_shot_other_acc": "one-shot, other example 'k?kb?'",
    "test_shuffled_acc": "test text, triples shuffled",
}


def plot_accuracy(rows, path, title):
    """Train and test accuracy against step; the weights' L2 norm on a second, log axis."""
    fig, ax = figure(figsize=(8, 4.5))
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["train_acc"] for r in rows], label="train", color="tab:blue", lw=2)
    ax.plot(steps, [r["test_acc"] for r in rows], label="test (inverted pairing)", color="tab:orange", lw=2)
    for key, label in IN_CONTEXT_LABELS.items():
        if key in rows[0]:
            ax.plot(steps, [r[key] for r in rows], label=label, lw=1, ls="--")
    ax.set(xlabel="step", ylabel="accuracy", ylim=(-0.02, 1.02), title=title)
    norm = ax.twinx()
    norm.plot(steps, [r["weight_norm"] for r in rows], color="grey", lw=1, label="weight L2 norm")
    norm.set_yscale("log")
    from matplotlib.ticker import FuncFormatter
    plain = FuncFormatter(lambda v, _: f"{v:g}")  # not 9.4x10^1 on a narrow range
    norm.yaxis.set_major_formatter(plain)
    norm.yaxis.set_minor_formatter(plain)
    norm.set_ylabel("weight L2 norm (log scale)")
    lines = ax.get_lines() + norm.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="center right", fontsize=8)
    save_figure(fig, path)


def plot_loss(rows, path, title):
    fig, ax = figure(figsize=(8, 4.5))
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["train_loss"] for r in rows], label="train")
    ax.plot(steps, [r["test_loss"] for r in rows], label="test (inverted pairing)")
    ax.set(xlabel="step", ylabel="cross-entropy loss", yscale="log", title=title)
    ax.legend()
    save_figure(fig, path)


SWEEP_STEPS = {"step_train_100": ("train 100%", "tab:blue"), "step_test_100": ("test 100%", "tab:orange"),
               "delay": ("delay (test - train)", "tab:green")}


def sweep_value(points, key):
    """points[i][key] as floats, NaN where a point has none (no run reached it)."""
    return np.array([np.nan if p.get(key) is None else float(p[key]) for p in points])


def plot_sweep(points, axes, path, title):
    """A sweep's figure from points.csv's rows: line plots for one axis, heatmaps for two or more."""
    if len(axes) == 1:
        plot_sweep_lines(points, axes[0], path, title)
    else:
        plot_sweep_heatmaps(points, axes, path, title)


def plot_sweep_lines(points, axis, path, title):
    """Fraction generalised, and the steps' medians with interquartile bands, at each value of one axis."""
    fig, (left, right) = figure(1, 2, figsize=(12, 4.5), layout="constrained")
    pos = np.arange(len(points))
    ticks = [f"{p[axis]:g}" if isinstance(p[axis], float) else str(p[axis]) for p in points]
    left.plot(pos, sweep_value(points, "fraction_generalized"), marker="o", color="tab:purple",
              label="fraction of seeds at test accuracy 1.0")
    left.plot(pos, sweep_value(points, "test_acc_median"), marker="s", ls="--", color="tab:orange",
              label="median final test accuracy")
    left.set(xticks=pos, xticklabels=ticks, xlabel=axis, ylabel="fraction / accuracy", ylim=(-0.03, 1.03),
             title="generalisation at the last step")
    left.legend(fontsize=8)
    for key, (name, colour) in SWEEP_STEPS.items():
        right.plot(pos, sweep_value(points, f"{key}_median"), marker="o", color=colour, label=f"{name}, median")
        right.fill_between(pos, sweep_value(points, f"{key}_q25"), sweep_value(points, f"{key}_q75"),
                           color=colour, alpha=0.2, label=f"{name}, quartiles")
    right.set(xticks=pos, xticklabels=ticks, xlabel=axis, ylabel="step",
              title="first step at 100% (runs that got there)")
    right.legend(fontsize=8)
    fig.suptitle(title)
    save_figure(fig, path)


def plot_sweep_heatmaps(points, axes, path, title):
    """Heatmaps over the first two axes: fraction generalised, median step of test 100%, median delay.

    One row of heatmaps per combination of the other axes' values; empty cells: no run got there.
    """
    import matplotlib
    x_axis, y_axis, rest = axes[0], axes[1], axes[2:]
    xs = list(dict.fromkeys(p[x_axis] for p in points))
    ys = list(dict.fromkeys(p[y_axis] for p in points))
    facets = list(dict.fromkeys(tuple(p[a] for a in rest) for p in points))
    panels = [("fraction_generalized", "fraction generalised", "RdYlGn"),
              ("step_test_100_median", "median first step of test 100%", "viridis"),
              ("delay_median", "median delay (test 100% - train 100%)", "viridis")]
    fig, grid_axes = figure(len(facets), 3, figsize=(15, (0.5 * len(ys) + 2.4) * len(facets) + 0.6),
                            squeeze=False, layout="constrained")

    def text(v):
        return f"{v:g}" if isinstance(v, float) else str(v)

    for (key, name, cmap), column in zip(panels, grid_axes.T):
        cmap = matplotlib.colormaps[cmap].with_extremes(bad="lightgrey")
        values = sweep_value(points, key)
        vmin, vmax = (0, 1) if key == "fraction_generalized" else (np.nanmin(values, initial=0), np.nanmax(values, initial=1))
        for facet, ax in zip(facets, column):
            cells = np.full((len(ys), len(xs)), np.nan)
            runs, reached = np.zeros((2, len(ys), len(xs)), dtype=int)
            for p, v in zip(points, values):
                if tuple(p[a] for a in rest) == facet:
                    cells[ys.index(p[y_axis]), xs.index(p[x_axis])] = v
                    runs[ys.index(p[y_axis]), xs.index(p[x_axis])] = p["runs"]
                    reached[ys.index(p[y_axis]), xs.index(p[x_axis])] = p.get(key.replace("_median", "_n")) or 0
            image = ax.imshow(cells, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower", aspect="auto")
            for (i, j), v in np.ndenumerate(cells):
                if key == "fraction_generalized":
                    label = f"{round(v * runs[i, j])}/{runs[i, j]}"
                else:  # the median is over the runs that got there: say how many when not all
                    label = "-" if np.isnan(v) else f"{v:.0f}" + (f" ({reached[i, j]}/{runs[i, j]})"
                                                                  if reached[i, j] < runs[i, j] else "")
                ax.text(j, i, label, ha="center", va="center", fontsize=9,
                        bbox=dict(facecolor="white", alpha=0.7, lw=0, pad=1.5))
            ax.set_xticks(range(len(xs)), [text(x) for x in xs])
            ax.set_yticks(range(len(ys)), [text(y) for y in ys])
            ax.set(xlabel=x_axis, ylabel=y_axis,
                   title=name + "".join(f"\n{a}={text(v)}" for a, v in zip(rest, facet)))
            ax.title.set_fontsize(9)
            fig.colorbar(image, ax=ax, label="fraction of seeds" if key == "fraction_generalized" else "step")
    fig.suptitle(title)
    save_figure(fig, path)


def curves(runs, key):
    """(steps, runs' values) of one metric: the step axis and a (n_runs, n_steps) array."""
    return np.array([r["step"] for r in runs[0]]), np.array([[r[key] for r in rows] for rows in runs])


def draw_band(ax, steps, values, color, label, ls="-"):
    """The median over runs (bold) and the band between the 25th and 75th percentiles."""
    q25, median, q75 = np.percentile(values, [25, 50, 75], axis=0)
    ax.plot(steps, median, color=color, lw=2, ls=ls, label=label)
    ax.fill_between(steps, q25, q75, color=color, alpha=0.2, lw=0)


def plot_seeds(runs, path, title):
    """Many seeds' runs (a list of metric-row lists) in one figure.

    Left: every seed's train and test accuracy (thin), their medians (bold) and interquartile bands.
    Middle: the markers' cosine distance against the median same-group letter pair, in both vector
    tables. Right, for the text variant: the in-context accuracies' medians, telling copying from
    the alphabetical-successor shortcut.
    """
    in_context = [k for k in IN_CONTEXT_LABELS if k in runs[0][0]]
    fig, axes = figure(1, 3 if in_context else 2, figsize=(19 if in_context else 13, 4.8))
    ax = axes[0]
    for key, color, label in (("train_acc", "tab:blue", "train"), ("test_acc", "tab:orange", "test (inverted pairing)")):
        steps, values = curves(runs, key)
        ax.plot(steps, values.T, color=color, lw=0.5, alpha=0.35)
        draw_band(ax, steps, values, color, f"{label}: median, IQR band")
    ax.set(xlabel="step", ylabel="accuracy", ylim=(-0.02, 1.02), title=f"Accuracy, each of {len(runs)} seeds")
    ax.legend(loc="lower right", fontsize=8)
    ax = axes[1]
    for suffix, ls, table in (("", "-", "input embeddings"), ("_out", "--", "output-layer rows")):
        draw_band(ax, *curves(runs, "marker_distance" + suffix), "tab:red", f"markers, {table}", ls)
        draw_band(ax, *curves(runs, "letter_distance" + suffix), "tab:grey", f"same-group letter pairs, {table}", ls)
    ax.set(xlabel="step", ylabel="cosine distance (median over seeds)", title="Markers vs typical letter pair")
    ax.legend(fontsize=8)
    if in_context:
        ax = axes[2]
        draw_band(ax, *curves(runs, "test_acc"), "black", "test text (original order)")
        for key, color in zip(in_context, ("tab:green", "tab:purple", "tab:brown", "tab:olive")):
            draw_band(ax, *curves(runs, key), color, IN_CONTEXT_LABELS[key])
        ax.set(xlabel="step", ylabel="accuracy (median over seeds)", ylim=(-0.02, 1.02),
               title="Inverted pairing: which rule is used")
        ax.legend(fontsize=8)
    fig.suptitle(title)
    save_figure(fig, path)


def tsne(vectors, seed=0):
    """2-D t-SNE of the rows of vectors (perplexity 5, as in the original)."""
    from sklearn.manifold import TSNE
    return TSNE(n_components=2, perplexity=5, init="pca", random_state=seed,
                method="exact").fit_transform(np.asarray(vectors, dtype=np.float64))


def draw_tsne(ax, points, data, title):
    """Scatter of 2-D points, one per vocabulary token, coloured by group, every point labelled."""
    for group, ids in token_groups(data).items():
        ax.scatter(points[ids, 0], points[ids, 1], s=28, color=GROUP_COLOURS[group], label=group)
        for i in ids:
            ax.annotate(data.vocab.tokens[i], points[i], fontsize=7, xytext=(2, 2), textcoords="offset points")
    ax.set(title=title, xticks=[], yticks=[])


def plot_tsne(tables, data, path, title, seed=0):
    """t-SNE of both token-vector tables side by side, with the markers' distances in the caption.

    tables: {"input": (V, C), "output": (V, C)} tensors, as `vector_tables` gives them.
    """
    tables = {name: w.detach().float().cpu() for name, w in tables.items()}
    d = table_distances(tables, [p.cpu() for p in data.pairs])
    fig, axes = figure(1, 2, figsize=(12, 5.5))
    names = {"input": "input embeddings (wte)", "output": "output-layer rows (lm_head)"}
    caption = []
    for ax, (name, w) in zip(axes, tables.items()):
        draw_tsne(ax, tsne(w.numpy(), seed), data, names[name])
        suffix = "" if name == "input" else "_out"
        caption.append(f"{name}: markers {d['marker_distance' + suffix]:.3f}, "
                       f"same-group letter pairs (median) {d['letter_distance' + suffix]:.3f}")
    axes[0].legend(loc="best", fontsize=8)
    fig.suptitle(title)
    fig.text(0.5, -0.01, "cosine distance  -  " + ";   ".join(caption), ha="center", fontsize=9)
    save_figure(fig, path)


@torch.no_grad()
def prediction_grid(model, data):
    """The answer to every 'character marker' prompt: (rows, answers, right), one row per group x marker.

    rows: [(group index, marker, pairing)] with pairing 'train', 'test' or 'unseen';
    answers: (rows, 26) token ids; right: (rows, 26) booleans.
    """
    v = data.variant
    rows, prompts = [], []
    for g, (_, tokens) in enumerate(v.groups):
        for m in v.markers:
            kind = ("train" if m == marker_of(v, g, False) else "test" if m == marker_of(v, g, True) else "unseen")
            rows.append((g, m, kind))
            prompts += [[data.vocab.ids[c], data.vocab.ids[m]] for c in tokens]
    probe = make_probe(prompts, [p[0] for p in prompts], v.block_size).to(data.train.x.device)
    answers = predict(model, probe).view(len(rows), -1).cpu()
    return rows, answers, answers == probe.answers.view(len(rows), -1).cpu()


def draw_predictions(ax, grid, data, title):
    rows, answers, right = grid
    v = data.variant
    ax.imshow(right.numpy(), cmap="RdYlGn", vmin=-0.3, vmax=1.3, aspect="auto")
    for r in range(answers.shape[0]):
        for c in range(answers.shape[1]):
            ax.text(c, r, data.vocab.tokens[answers[r, c]], ha="center", va="center", fontsize=7)
    ax.set_yticks(range(len(rows)), [f"{v.groups[g][0]} + '{m}' ({kind})" for g, m, kind in rows], fontsize=8)
    ax.set_xticks(range(answers.shape[1]), [f"{i + 1}" for i in range(answers.shape[1])], fontsize=6)
    ax.set_xlabel("n-th character of the group")
    ax.set_title(title, fontsize=10)


def plot_predictions(model, data, path, title):
    """Every character x every marker: the model's answer in each cell, green when right, red when wrong."""
    grid = prediction_grid(model, data)
    fig, ax = figure(figsize=(10, 0.45 * len(grid[0]) + 1.2))
    draw_predictions(ax, grid, data, title)
    save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# The training animation: a few snapshots recorded during training, one GIF frame each.

def frame_steps(first, last, n_frames=100):
    """At most n_frames evenly spaced steps from first to last, both included."""
    return sorted(set(np.linspace(first, last, min(n_frames, last - first + 1)).round().astype(int).tolist()))


@torch.no_grad()
def snapshot(model, data, step):
    """What a frame of the animation shows of the model: its answers and its output-layer rows.

    The output-layer rows, not the input embeddings: at lr 1e-4 the embeddings (initialised at
    scale 1) hardly move in a run, while the rows (initialised at scale 1/sqrt(n_embd)) do.
    """
    return {"step": step, "grid": prediction_grid(model, data), "vectors": model.lm_head.weight.detach().cpu().clone()}


def tsne_affinities(X, perplexity):
    """(F, V, V) symmetric input affinities of t-SNE for each of F sets of V points, each summing to one."""
    F, V, _ = X.shape
    sq = (X ** 2).sum(-1)
    D = sq[:, :, None] + sq[:, None, :] - 2 * X @ X.transpose(0, 2, 1)  # squared distances (F, V, V)
    off = ~np.eye(V, dtype=bool)
    D = D / D[:, off].mean(1)[:, None, None]  # scale-free, so one search range fits every frame
    D[:, ~off] = np.inf
    # Each point's precision beta, bisected in log space until its neighbours' entropy is log(perplexity).
    lo, hi = np.full((F, V, 1), -20.0), np.full((F, V, 1), 20.0)
    for _ in range(50):
        mid = (lo + hi) / 2
        logits = -np.exp(mid) * D
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        entropy = -(p * np.log(np.where(p > 0, p, 1))).sum(-1, keepdims=True)
        too_flat = entropy > np.log(perplexity)
        lo, hi = np.where(too_flat, mid, lo), np.where(too_flat, hi, mid)
    P = p + p.transpose(0, 2, 1)
    return np.maximum(P / P.sum((1, 2), keepdims=True), 1e-12)


def joint_tsne(snapshots, perplexity=5, smoothing=30.0, n_iter=1000):
    """2-D t-SNE maps (F, V, 2) of F snapshots of the same V vectors, fitted together as one problem.

    Every frame keeps its own t-SNE objective, so each map shows that step's neighbours; after each
    gradient step every point's path over the frames is smoothed (a proximal step on `smoothing`
    x its squared moves between frames), so a point moves smoothly instead of jumping. Stacking the
    snapshots into one sklearn fit would also be smooth, but a point's nearest neighbours are then
    mostly its own copies at nearby steps, and 100 x 54 points took about 50 s on 2 shared cores;
    this takes about 2 s.
    Plain t-SNE otherwise: shared PCA start, early exaggeration 12 for 250 steps, momentum, gains.
    """
    X = np.asarray(snapshots, dtype=np.float64)  # (F, V, C)
    F, V, C = X.shape
    P = tsne_affinities(X, perplexity)
    centred = X - X.reshape(-1, C).mean(0)
    Y = centred @ np.linalg.svd(centred.reshape(-1, C), full_matrices=False)[2][:2].T  # (F, V, 2)
    Y *= 1e-4 / Y[0].std()
    path = 2 * np.eye(F) - np.eye(F, k=1) - np.eye(F, k=-1)  # Laplacian of the chain of frames
    path[0, 0] = path[-1, -1] = 1
    smooth = np.linalg.inv(np.eye(F) + smoothing * path)
    update, gains = np.zeros_like(Y), np.ones_like(Y)
    off = 1 - np.eye(V)
    lr = max(V / 12 / 4, 50)  # sklearn's "auto" learning rate
    for it in range(n_iter):
        exaggeration, momentum = (12.0, 0.5) if it < 250 else (1.0, 0.8)
        sq = (Y ** 2).sum(-1)
        W = off / (1 + sq[:, :, None] + sq[:, None, :] - 2 * Y @ Y.transpose(0, 2, 1))  # Student-t kernel
        PQ = (exaggeration * P - W / W.sum((1, 2), keepdims=True)) * W
        grad = 4 * (PQ.sum(-1, keepdims=True) * Y - PQ @ Y)  # (F, V, 2) gradient of each frame's KL
        gains = np.where(update * grad < 0, gains + 0.2, gains * 0.8).clip(0.01)
        update = momentum * update - lr * gains * grad
        Y = (smooth @ (Y + update).reshape(F, -1)).reshape(F, V, 2)
    return Y


def animate_training(frames, rows, data, path, title, fps=10, hold_seconds=0.5):
    """training.gif: one frame per snapshot with the answer grid, the t-SNE map and the accuracy so far.

    The last frame stays on screen for hold_seconds before the GIF loops.
    """
    from matplotlib.animation import PillowWriter
    from threadpoolctl import threadpool_limits
    with threadpool_limits(1):  # (F, 54, 54) arrays: on 2 shared cores, BLAS threads only wait for each other
        points = joint_tsne(torch.stack([f["vectors"] for f in frames]).numpy())
    lo, hi = points.reshape(-1, 2).min(0), points.reshape(-1, 2).max(0)
    lo, hi = lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo)
    by_step = {r["step"]: r for r in rows}
    steps = [r["step"] for r in rows if frames[0]["step"] <= r["step"] <= frames[-1]["step"]]
    # Panels placed in inches: the answer grid across the top, the t-SNE map and the accuracy below.
    grid_h = 0.27 * len(frames[0]["grid"][0])
    W, H = 9.0, grid_h + 5.75
    fig, grid_ax = figure(figsize=(W, H))
    grid_ax.set_position([1.75 / W, 4.95 / H, (W - 1.95) / W, grid_h / H])
    tsne_ax = fig.add_axes([0.15 / W, 0.5 / H, 4.1 / W, 3.9 / H])
    acc_ax = fig.add_axes([5.85 / W, 0.5 / H, 3.0 / W, 3.9 / H])
    # The accuracy panel is drawn once; each frame only moves its cursor.
    acc_ax.plot(steps, [by_step[s]["train_acc"] for s in steps], label="train", color="tab:blue")
    acc_ax.plot(steps, [by_step[s]["test_acc"] for s in steps], label="test (inverted pairing)", color="tab:orange")
    cursor = acc_ax.axvline(frames[0]["step"], color="black", lw=1, label="this frame")
    acc_ax.set(xlabel="step", ylabel="accuracy", ylim=(-0.02, 1.02), title="accuracy")
    acc_ax.legend(loc="center right", fontsize=8)
    # The first frame is drawn by draw_predictions and draw_tsne; later frames only change their
    # artists' colours, texts and positions, which costs about a quarter less than drawing them anew.
    grid_title = "answer to each character + marker (green right, red wrong)"
    if data.variant.text:  # its accuracies count text windows; the grid asks the same pairs zero-shot
        grid_title = "answer to each zero-shot prompt 'character marker' (green right, red wrong)"
    draw_predictions(grid_ax, frames[0]["grid"], data, grid_title)
    draw_tsne(tsne_ax, points[0], data, "t-SNE of the output-layer rows")
    tsne_ax.set(xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]))
    tsne_ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, handletextpad=0.1)
    grid_ax.set(xticks=[], xlabel="")  # the letters in the cells say which column is which; text is the slow part
    cells, labels = grid_ax.texts, tsne_ax.texts  # in the order the draw functions made them
    groups = list(token_groups(data).values())
    order = [i for ids in groups for i in ids]
    writer = PillowWriter(fps=fps)
    with atomic_path(path) as tmp:
        with writer.saving(fig, tmp, dpi=90):
            for frame, xy in zip(frames, points):
                _, answers, right = frame["grid"]
                grid_ax.images[0].set_data(right.numpy())
                for cell, a in zip(cells, answers.flatten().tolist()):
                    cell.set_text(data.vocab.tokens[a])
                for dots, ids in zip(tsne_ax.collections, groups):
                    dots.set_offsets(xy[ids])
                for label, i in zip(labels, order):
                    label.xy = xy[i]
                cursor.set_xdata([frame["step"]])
                r = by_step[frame["step"]]
                fig.suptitle(f"{title}  -  step {frame['step']}:  train accuracy {r['train_acc']:.2f},  "
                             f"test accuracy {r['test_acc']:.2f}", fontsize=12, y=1 - 0.12 / H)
                writer.grab_frame()
            # Pillow stores repeated identical frames as one longer frame: the hold costs no file size.
            for _ in range(round(hold_seconds * fps)):
                writer.grab_frame()
    import matplotlib.pyplot as plt
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
# Attention maps

def attention_prompts(data, n=4):
    """(training prompts, test prompts): the same characters, each with its training marker and with the other.

    2-token variants: about n characters spread over the groups. The text variant: two windows of
    the training text ending at a marker, one among lowercase and one among uppercase triples, and
    the same windows of the test text.
    """
    v = data.variant
    if v.text:
        rows = data.train.row[[len(data.train.row) // 8, len(data.train.row) * 5 // 8]]
        return data.train.x[rows], data.test.x[rows]
    per_group = max(1, n // len(v.groups))
    train, test = [], []
    for g, (_, tokens) in enumerate(v.groups):
        for c in tokens[::len(tokens) // per_group][:per_group]:
            train.append([data.vocab.ids[c], data.vocab.ids[marker_of(v, g, False)]])
            test.append([data.vocab.ids[c], data.vocab.ids[marker_of(v, g, True)]])
    device = data.train.x.device
    return torch.tensor(train, device=device), torch.tensor(test, device=device)


@torch.no_grad()
def plot_attention(model, data, path, title):
    """Each layer's and head's attention weights for training prompts (left) and test prompts (right).

    One small map a prompt: row = the position that reads, column = the position read; future
    positions are masked (grey). The panel title is the prompt and the model's answer at its end,
    green when right.
    """
    train, test = attention_prompts(data)
    prompts = torch.cat([train, test])  # (P, T)
    att = torch.stack(model.attention(prompts), 1).cpu()  # (P, n_layer, n_head, T, T)
    answers = predict(model, Probe(prompts, torch.full((len(prompts),), prompts.shape[1] - 1), None)).cpu()
    expected = prompts[:, -2].cpu()  # every prompt ends in a marker; the answer is the character before it
    P, L, H, T, _ = att.shape
    k = len(train)
    size = 0.55 + 0.23 * T  # inches a panel
    fig, axes = figure(L * H, P + 1, figsize=(size * (P + 0.4) + 1.2, size * L * H + 1.2), squeeze=False,
                       gridspec_kw=dict(width_ratios=[1] * k + [0.4] + [1] * k, wspace=0.15, hspace=0.5 if T > 2 else 0.7))
    future = np.triu(np.ones((T, T), dtype=bool), 1)
    for i in range(P):
        col = i if i < k else i + 1
        tokens = [data.vocab.tokens[t] for t in prompts[i].tolist()]
        for layer in range(L):
            for head in range(H):
                ax = axes[layer * H + head, col]
                a = att[i, layer, head].numpy()
                image = ax.imshow(np.ma.masked_array(a, future), cmap="Blues", vmin=0, vmax=1)
                ax.set_facecolor("0.85")
                ax.set_xticks(range(T), tokens, fontsize=8)
                ax.set_yticks(range(T), tokens, fontsize=8)
                ax.tick_params(length=0, pad=1)
                if T <= 4:  # small maps: the weights as numbers
                    for q in range(T):
                        for key in range(q + 1):
                            ax.text(key, q, f"{a[q, key]:.2f}", ha="center", va="center", fontsize=7,
                                    color="white" if a[q, key] > 0.6 else "black")
                if col == 0:
                    ax.set_ylabel(f"layer {layer + 1}\nhead {head + 1}", fontsize=8)
                if layer == head == 0:
                    right = answers[i] == expected[i]
                    ax.set_title(f"{data.vocab.decode(prompts[i].tolist())} -> {data.vocab.tokens[answers[i]]}",
                                 fontsize=8, color="tab:green" if right else "tab:red")
    for ax in axes[:, k]:
        ax.axis("off")
    fig.colorbar(image, ax=axes, shrink=0.5, label="attention weight (row reads column)")
    top = axes[0, 0].get_position().y1  # the headers go above the panels, wherever the colour bar left them
    for name, first, last in (("training prompts", 0, k - 1), ("test prompts: the other marker", k + 1, P)):
        x = (axes[0, first].get_position().x0 + axes[0, last].get_position().x1) / 2
        fig.text(x, top + 0.035 + 0.25 / fig.get_figheight(), name, ha="center", fontsize=10, weight="bold")
    fig.suptitle(title, y=top + 0.06 + 0.55 / fig.get_figheight())
    save_figure(fig, path)
