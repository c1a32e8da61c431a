"""Check a trained model: score both pairings, or answer prompts of your own.

    python test.py                              # 2g-samples: accuracies, wrong answers, marker distance,
                                                # and tsne_test.png, attention.png beside the checkpoint
    python test.py a? A! b?                     # one line per prompt: PROMPT -> ANSWER
    python test.py --variant 2g-text 'a!ab?'    # the text model, with a one-shot prompt
    python test.py --checkpoint runs/x/model.pt
"""
import signal
import sys
from pathlib import Path

import torch

import tools
from tools import VARIANTS, UsageError


def get_parser():
    p = tools.Parser(description="Reload a trained checkpoint and check its answers.")
    p.add_argument("prompts", nargs="*", metavar="PROMPT",
                   help="prompts to answer, e.g. 'a?' or '21?' (spaces only separate tokens)")
    p.add_argument("--variant", choices=VARIANTS, default=None,
                   help="experiment version (default: the checkpoint's, else 2g-samples)")
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint file (default: output/<variant>/model.pt)")
    return p


def load(args):
    """(checkpoint, model, data) as the arguments ask, with the checkpoint checked against --variant."""
    path = args.checkpoint or Path("output") / (args.variant or "2g-samples") / "model.pt"
    ckpt = tools.load_checkpoint(path)
    if args.variant is not None and ckpt["variant"] != args.variant:
        raise UsageError(f"{path} is a checkpoint of {ckpt['variant']}, not of --variant {args.variant}")
    model = tools.model_from_checkpoint(ckpt, path)
    model.eval()
    settings = ckpt["args"]  # a run that trained on some inverted pairs is tested on the others
    data = tools.make_data(VARIANTS[ckpt["variant"]], settings.get("inverted_fraction", 0.0), settings.get("seed", 0))
    return path, ckpt, model, data


def parse_prompts(texts, vocab, block_size):
    """Token lists of the prompts; UsageError for an empty one, an unknown character, or one too long."""
    prompts = []
    for text in texts:
        try:
            ids = vocab.encode(text)
        except ValueError as e:
            raise UsageError(f"prompt {text!r}: {e}") from None
        if not ids:
            raise UsageError(f"prompt {text!r} is empty")
        if len(ids) > block_size:
            raise UsageError(f"prompt {text!r} has {len(ids)} tokens; this model reads at most {block_size}")
        prompts.append(ids)
    return prompts


@torch.no_grad()
def answer(model, data, texts):
    prompts = parse_prompts(texts, data.vocab, data.variant.block_size)
    probe = tools.make_probe(prompts, [0] * len(prompts), data.variant.block_size)
    return [data.vocab.tokens[i] for i in tools.predict(model, probe)]


def show(vocab, probe, i):
    return vocab.decode(probe.prompts[i, :probe.last[i] + 1].tolist())


@torch.no_grad()
def score(model, data, name, probe, max_wrong=None):
    """Print a probe's accuracy and its wrong answers."""
    answers = tools.predict(model, probe)
    wrong = (answers != probe.answers).nonzero().flatten().tolist()
    n = len(probe.answers)
    print(f"{name:<44} {n - len(wrong):3d}/{n} = {1 - len(wrong) / n:.3f}")
    for i in wrong[:max_wrong]:
        print(f"    {show(data.vocab, probe, i)!r} -> {data.vocab.tokens[answers[i]]} "
              f"(expected {data.vocab.tokens[probe.answers[i]]})")
    if max_wrong is not None and len(wrong) > max_wrong:
        print(f"    ... and {len(wrong) - max_wrong} more")


def report(path, ckpt, model, data):
    print(f"{path}: {ckpt['variant']}, seed {ckpt['args'].get('seed')}, step {ckpt['step']}")
    score(model, data, "train (training pairing)", data.train.probe())
    score(model, data, "test (inverted pairing)", data.test.probe())
    if data.probes:
        print("in-context probes, all on the inverted pairing:")
        for name, probe in data.probes.items():
            score(model, data, "  " + tools.IN_CONTEXT_LABELS[f"{name}_acc"], probe, max_wrong=5)
    d = {k: v.item() for k, v in tools.distances(model, data).items()}
    print(f"markers' cosine distance: input embeddings {d['marker_distance']:.3f} "
          f"(same-group letter pairs, median: {d['letter_distance']:.3f}), "
          f"output-layer rows {d['marker_distance_out']:.3f} (letters: {d['letter_distance_out']:.3f})")
    tools.plot_tsne(tools.vector_tables(model), data, path.parent / "tsne_test.png",
                    f"t-SNE of {path}: {ckpt['variant']}, step {ckpt['step']}")
    print(f"saved {path.parent / 'tsne_test.png'}")
    title = f"Attention at step {ckpt['step']}: {ckpt['variant']}, seed {ckpt['args'].get('seed')}"
    tools.plot_attention(model, data, path.parent / "attention.png", title)
    print(f"saved {path.parent / 'attention.png'}")


def main(argv=None):
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `python test.py | head` ends quietly
    args = get_parser().parse_args(argv)
    try:
        path, ckpt, model, data = load(args)
        if args.prompts:
            for text, a in zip(args.prompts, answer(model, data, args.prompts)):
                print(f"{text} -> {a}")
        else:
            report(path, ckpt, model, data)
    except UsageError as e:
        sys.exit(f"test.py: error: {e}")


if __name__ == "__main__":
    main()
