"""Each variant's data: the original's train and test sets, the inverted pairing, batches, probes."""
import torch

import tools
from tools import VARIANTS


def decode_rows(data, split):
    p = split.probe()
    return {data.vocab.decode(p.prompts[i, :p.last[i] + 1].tolist()) + "->" + data.vocab.tokens[p.answers[i]]
            for i in range(len(p.answers))}


def test_2g_samples():
    data = tools.make_data(VARIANTS["2g-samples"])
    train, test = decode_rows(data, data.train), decode_rows(data, data.test)
    assert len(data.vocab) == 54 and len(train) == len(test) == 52
    assert {"a!->a", "z!->z", "A?->A", "Z?->Z"} <= train
    assert {"a?->a", "z?->z", "A!->A", "Z!->Z"} <= test
    assert not train & test
    assert (data.train.targets[:, 0] == -1).all()  # only the last position is scored


def test_3g_samples():
    data = tools.make_data(VARIANTS["3g-samples"])
    train, test = decode_rows(data, data.train), decode_rows(data, data.test)
    assert len(data.vocab) == 81 and len(train) == len(test) == 78
    assert {"a!->a", "A?->A", "21.->21"} <= train
    assert {"a.->a", "A!->A", "21?->21"} <= test
    assert not train & test


def test_2g_text():
    data = tools.make_data(VARIANTS["2g-text"])
    text = "".join(data.vocab.decode(t.tolist()) for t in data.triples)
    assert text.startswith("a!ab!bc!c") and text.endswith("Y?YZ?Z") and len(text) == 156
    # windows of 8 with targets shifted by one, all positions scored
    assert (data.train.x[:, 1:] == data.train.targets[:, :-1]).all()
    train, test = decode_rows(data, data.train), decode_rows(data, data.test)
    assert "a!ab!bc!->c" in train and "b?bc?cd?->d" in test and "X!XY!YZ!->Z" in test
    assert len(train) == len(test) == 50 and not train & test


def test_batches_come_from_training_data():
    data = tools.make_data(VARIANTS["2g-samples"])
    x, y = tools.get_batch(data, 128, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (128, 2)
    rows = {tuple(r) for r in data.train.x.tolist()}
    assert all(tuple(r) in rows for r in x.tolist())


def test_shuffle_text_cuts_batches_from_differently_ordered_text():
    data = tools.make_data(VARIANTS["2g-text"])
    g = torch.Generator().manual_seed(0)
    (x1, y1), (x2, y2) = (tools.get_batch(data, 256, g, shuffle_text=True) for _ in range(2))
    pairs = lambda x: {tuple(w) for w in x[:, [1, 3]].tolist() if data.vocab.tokens[w[0]] in "!?"}
    # the letter after a triple: always the alphabetical successor in the original text, here not
    original = {tuple(w) for w in data.train.x[:, [1, 3]].tolist()}
    assert pairs(x1) - original and pairs(x1) != pairs(x2)
    assert (x1[:, 1:] == y1[:, :-1]).all()
    same = torch.Generator().manual_seed(0)
    assert torch.equal(tools.get_batch(data, 256, same, shuffle_text=True)[0], x1)


class Successor(torch.nn.Module):
    """Answers the letter after the one two positions back: the text's alphabetical shortcut, no copying."""

    def __init__(self, vocab_size):
        super().__init__()
        self.vocab_size = vocab_size

    def forward(self, idx, targets=None):
        guess = (torch.roll(idx, 2, dims=1) + 1) % self.vocab_size
        return torch.nn.functional.one_hot(guess, self.vocab_size).float(), None


def test_successor_shortcut_passes_the_test_text_but_not_other_examples():
    data = tools.make_data(VARIANTS["2g-text"])
    acc = {k: v.item() for k, v in tools.evaluate(Successor(len(data.vocab)), data).items()}
    assert acc["test_acc"] == 1.0 and acc["train_acc"] == 1.0
    assert acc["one_shot_pred_acc"] == 1.0
    assert acc["one_shot_other_acc"] == 0.0
    assert acc["test_shuffled_acc"] < 0.2


def test_probes_ask_what_they_say():
    data = tools.make_data(VARIANTS["2g-text"])
    show = lambda p, i: data.vocab.decode(p.prompts[i, :p.last[i] + 1].tolist())
    zero, pred, other = (data.probes[k] for k in ("zero_shot", "one_shot_pred", "one_shot_other"))
    assert show(zero, 0) == "a?" and show(zero, 26) == "A!"
    assert show(pred, 0) == "a?ab?" and data.vocab.tokens[pred.answers[0]] == "b"
    for i in range(len(other.answers)):
        e, m, e2, c, m2 = show(other, i)
        assert e == e2 and m == m2 and e != c and ord(c) - ord(e) != 1 and data.vocab.tokens[other.answers[i]] == c
