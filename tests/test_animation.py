"""training.gif and attention.png: the frames the animation records, its t-SNE fit, and the attention weights."""
import numpy as np
import pytest
import torch
from PIL import Image

import tools
import train
from components import GPT, GPTConfig
from tools import VARIANTS


def test_frame_steps_are_even_and_include_both_ends():
    steps = tools.frame_steps(0, 500)
    assert len(steps) == 100 and steps[0] == 0 and steps[-1] == 500
    assert set(np.diff(steps)) <= {5, 6}
    assert tools.frame_steps(0, 8) == list(range(9))
    assert tools.frame_steps(300, 500, 11) == list(range(300, 501, 20))


def test_animate_writes_a_gif_with_one_frame_per_recorded_step(tmp_path):
    train.main(["--steps", "8", "--animate", "--quiet", "--out", str(tmp_path)])
    with Image.open(tmp_path / "training.gif") as gif:
        assert gif.format == "GIF"
        assert gif.n_frames == 9  # steps 0..8; the held last frame is stored once
    assert (tmp_path / "attention.png").is_file()
    assert not list(tmp_path.glob(".*.tmp*"))  # every temporary file was renamed into place


def test_no_gif_without_animate(tmp_path):
    train.main(["--steps", "2", "--quiet", "--out", str(tmp_path)])
    assert (tmp_path / "attention.png").is_file() and not (tmp_path / "training.gif").exists()


@pytest.mark.parametrize("name", ["2g-samples", "2g-text", "3g-samples"])
def test_attention_rows_sum_to_one_over_the_past_and_are_zero_on_the_future(name):
    variant = VARIANTS[name]
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=81, block_size=variant.block_size, n_layer=variant.n_layer))
    idx = torch.randint(81, (16, variant.block_size))
    weights = model.attention(idx)
    assert len(weights) == variant.n_layer
    future = torch.triu(torch.ones(variant.block_size, variant.block_size, dtype=torch.bool), 1)
    for att in weights:  # (B, n_head, T, T)
        assert att.shape == (16, 4, variant.block_size, variant.block_size)
        assert torch.allclose(att.sum(-1), torch.ones(()), atol=1e-6)
        assert (att[..., future] == 0).all()
        assert (att[..., ~future] > 0).all()


def test_attention_prompts_pair_each_character_with_both_markers():
    data = tools.make_data(VARIANTS["3g-samples"])
    train_prompts, test_prompts = tools.attention_prompts(data)
    assert torch.equal(train_prompts[:, 0], test_prompts[:, 0])
    train_pairs = {tuple(p) for p in data.train.x.tolist()}
    test_pairs = {tuple(p) for p in data.test.x.tolist()}
    assert {tuple(p) for p in train_prompts.tolist()} <= train_pairs
    assert {tuple(p) for p in test_prompts.tolist()} <= test_pairs
    text = tools.make_data(VARIANTS["2g-text"])
    train_windows, test_windows = tools.attention_prompts(text)
    chars = [text.vocab.ids[c] for c in tools.LOWER + tools.UPPER]
    assert torch.isin(train_windows[:, [0, 2, 3]], torch.tensor(chars)).all()
    assert torch.equal(train_windows[:, [0, 2, 3, 5, 6]], test_windows[:, [0, 2, 3, 5, 6]])  # same characters
    assert not torch.equal(train_windows[:, -1], test_windows[:, -1])  # the other marker


def test_joint_tsne_keeps_clusters_apart_and_a_still_snapshot_still():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(2, 16)) * 10
    points = np.concatenate([c + rng.normal(size=(10, 16)) for c in centres])  # (20, 16): two clusters
    maps = tools.joint_tsne(np.stack([points] * 4), n_iter=400)  # four identical frames
    cluster = np.repeat([0, 1], 10)
    for m in maps:
        d = np.linalg.norm(m[:, None] - m[None], axis=-1) + np.eye(20) * 1e9
        assert (cluster[d.argmin(1)] == cluster).all()  # every point's nearest neighbour is in its cluster
    spread = np.linalg.norm(maps[0] - maps[0].mean(0), axis=1).mean()
    assert np.abs(np.diff(maps, axis=0)).max() < 0.01 * spread
