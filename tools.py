"""Everything around the model: the variants' data, batching, evaluation, metrics, figures, checkpoints.

`train.py` and `test.py` are built from these functions; each one does one thing and can be used
alone from a notebook (`data = make_data(VARIANTS["2g-samples"])`, `evaluate(model, data)`, ...).
"""
import csv
import io
import json
import math
import os
import random
import string
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from components import GPT, GPTConfig, Vocab


class UsageError(Exception):
    """A problem with what the user asked for; the entry scripts print it in one line and exit."""


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


def make_data(variant):
    """The variant's training set, its inverted-pairing test set, and the probes evaluated each step."""
    vocab = make_vocab(variant)
    train_pairs, test_pairs = pairing(variant, inverted=False), pairing(variant, inverted=True)
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
    sources = {"train": data.train, "test": data.test, **data.probes}
    inputs = [s.x if isinstance(s, Split) else s.prompts for s in sources.values()]
    model.eval()
    logits, _ = model(torch.cat(inputs))  # (R, T, V)
    model.train()
    out = {}
    for (name, s), part in zip(sources.items(), logits.split([len(x) for x in inputs])):
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
def distances(model, data):
    """Markers' mean cosine distance and same-group letter pairs' median, in both vector tables."""
    markers, letters = data.pairs
    out = {}
    for name, w in vector_tables(model).items():
        suffix = "" if name == "input" else "_out"
        out["marker_distance" + suffix] = cosine_distances(w, markers).mean()
        out["letter_distance" + suffix] = cosine_distances(w, letters).median()
    return out


@torch.no_grad()
def weight_norm(model):
    return torch.nn.utils.get_total_norm(list(model.parameters()))


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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text):
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_json(path, obj):
    write_text(path, json.dumps(obj, indent=2) + "\n")


def format_csv(rows):
    """Rows of numbers as CSV text with a fixed format, so equal runs give equal bytes; None is an empty cell."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(rows[0].keys())
    for r in rows:
        writer.writerow(["" if v is None else v if isinstance(v, int) else f"{v:.7g}" for v in r.values()])
    return buf.getvalue()


def read_csv(path):
    with open(path, newline="") as f:
        return [{k: int(v) if k == "step" else float(v) for k, v in r.items()} for r in csv.DictReader(f)]


def save_checkpoint(path, ckpt):
    with atomic_path(path) as tmp:
        torch.save(ckpt, tmp)


CHECKPOINT_KEYS = {"model", "config", "vocab", "variant", "args", "step"}


def load_checkpoint(path):
    """A checkpoint dict, loaded without ever unpickling arbitrary objects; UsageError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no checkpoint file at {path}")
    if path.stat().st_size == 0:
        raise UsageError(f"checkpoint {path} is empty")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if "weights_only" in str(e) or "Weights only load failed" in str(e):
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
    norm.set_ylabel("weight L2 norm (log)")
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
    markers, letters = (p.cpu() for p in data.pairs)
    fig, axes = figure(1, 2, figsize=(12, 5.5))
    names = {"input": "input embeddings (wte)", "output": "output-layer rows (lm_head)"}
    caption = []
    for ax, (name, w) in zip(axes, tables.items()):
        w = w.detach().float().cpu()
        draw_tsne(ax, tsne(w.numpy(), seed), data, names[name])
        m = cosine_distances(w, markers).mean().item()
        l = cosine_distances(w, letters).median().item()
        caption.append(f"{name}: markers {m:.3f}, same-group letter pairs (median) {l:.3f}")
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
