"""The model and the tokenizer: shapes, causality, parameter counts, encode/decode."""
import pytest
import torch

import tools
from components import GPT, GPTConfig, Vocab
from tools import VARIANTS


@pytest.mark.parametrize("name", VARIANTS)
def test_vocab_round_trip(name):
    vocab = tools.make_vocab(VARIANTS[name])
    ids = list(range(len(vocab)))
    assert vocab.encode(vocab.decode(ids, sep=" ")) == ids
    assert len(set(vocab.tokens)) == len(vocab)


def test_multi_character_tokens_by_longest_match():
    vocab = tools.make_vocab(VARIANTS["3g-samples"])
    assert len(vocab) == 81
    assert vocab.decode(vocab.encode("21?")) == "21?"
    assert vocab.encode("21?") == [vocab.ids["21"], vocab.ids["?"]]
    assert vocab.encode("2 1?") == [vocab.ids["2"], vocab.ids["1"], vocab.ids["?"]]  # spaces separate
    assert vocab.encode(" a . ") == [vocab.ids["a"], vocab.ids["."]]
    assert vocab.encode("") == []


def test_unknown_character_is_named():
    with pytest.raises(ValueError, match="'%'"):
        Vocab(["a", "!"]).encode("a%!")


@pytest.mark.parametrize("name, params", [("2g-samples", 212_278), ("2g-text", 213_046)])
def test_parameter_count_matches_the_original(name, params):
    v = VARIANTS[name]
    model = GPT(GPTConfig(len(tools.make_vocab(v)), v.block_size, v.n_layer))
    assert model.num_params() == params


def test_shapes_and_loss():
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16))
    idx = torch.randint(11, (3, 8))
    logits, loss = model(idx)
    assert logits.shape == (3, 8, 11) and loss is None
    targets = torch.full((3, 8), -1)
    targets[:, -1] = 4
    _, loss = model(idx, targets)
    expected = torch.nn.functional.cross_entropy(logits[:, -1], targets[:, -1])
    assert torch.allclose(loss, expected)
    attention = model.attention(idx)
    assert len(attention) == 2 and attention[0].shape == (3, 2, 8, 8)


def test_causal_later_tokens_do_not_change_earlier_logits():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=4, n_embd=32))
    idx = torch.randint(11, (4, 8))
    changed = idx.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 11
    a, _ = model(idx)
    b, _ = model(changed)
    assert torch.allclose(a[:, :5], b[:, :5], atol=1e-6)
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_attention_rows_sum_to_one_and_ignore_the_future():
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_head=4, n_embd=32))
    att = model.attention(torch.randint(11, (2, 8)))[0]  # (B, nh, T, T)
    assert torch.allclose(att.sum(-1), torch.ones(2, 4, 8))
    assert (att.triu(diagonal=1) == 0).all()
