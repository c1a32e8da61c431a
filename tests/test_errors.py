"""Bad input gets a one-line error and a non-zero exit, never a traceback, and never costs a saved run."""
import pickle
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings, strategies as st

import test as test_script
import tools
import train
from conftest import ROOT


def error_of(main, argv):
    """The message main() exits with (it must exit, with a message, not raise anything else)."""
    with pytest.raises(SystemExit) as exit:
        main([str(a) for a in argv])
    assert exit.value.code not in (0, None)
    return str(exit.value.code)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("good")
    train.main(["--steps", "3", "--out", str(out), "--quiet"])
    return out / "model.pt"


@pytest.mark.parametrize("argv, words", [
    (["--steps", 0], "--steps must be positive"),
    (["--steps", -5], "--steps must be positive"),
    (["--batch-size", 0], "--batch-size must be positive"),
    (["--lr", 0], "--lr must be positive"),
    (["--lr", -1e-3], "--lr must be positive"),
    (["--d-model", 30, "--heads", 4], "not divisible"),
    (["--weight-decay", -1], "--weight-decay"),
    (["--shuffle-text"], "2g-text"),
    (["--resume"], "--resume needs --out"),
])
def test_train_rejects_bad_settings(argv, words):
    assert words in error_of(train.main, argv)


def test_train_rejects_unknown_variant(capsys):
    with pytest.raises(SystemExit) as exit:
        train.main(["--variant", "4g-samples"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice" in err and len(err.strip().splitlines()) == 1


def test_resume_checks_the_run(ckpt, tmp_path):
    assert "no checkpoint" in error_of(train.main, ["--resume", "--out", tmp_path])
    assert "variant=2g-samples" in error_of(train.main, ["--resume", "--out", ckpt.parent,
                                                         "--variant", "3g-samples", "--steps", 9])
    assert "d_model=128" in error_of(train.main, ["--resume", "--out", ckpt.parent, "--d-model", 64, "--steps", 9])
    assert "already at step 3" in error_of(train.main, ["--resume", "--out", ckpt.parent, "--steps", 3])


def test_a_failed_run_leaves_the_saved_one_alone(ckpt):
    before = {p.name: p.read_bytes() for p in ckpt.parent.iterdir()}
    error_of(train.main, ["--resume", "--out", ckpt.parent, "--variant", "3g-samples", "--steps", 9])
    error_of(train.main, ["--out", ckpt.parent, "--d-model", 30])
    assert {p.name: p.read_bytes() for p in ckpt.parent.iterdir()} == before


@pytest.mark.parametrize("prompt, words", [
    ("a%", "unknown character '%'"),
    ("", "empty"),
    ("   ", "empty"),
    ("a!a", "at most 2"),
])
def test_test_rejects_bad_prompts(ckpt, prompt, words):
    assert words in error_of(test_script.main, ["--checkpoint", ckpt, prompt])


def test_test_rejects_bad_checkpoints(ckpt, tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    corrupt = ckpt.read_bytes()
    (tmp_path / "cut.pt").write_bytes(corrupt[:len(corrupt) // 2])
    assert "no checkpoint file" in error_of(test_script.main, ["--checkpoint", tmp_path / "missing.pt"])
    assert "is empty" in error_of(test_script.main, ["--checkpoint", tmp_path / "empty.pt"])
    assert "not a readable checkpoint" in error_of(test_script.main, ["--checkpoint", tmp_path / "junk.pt"])
    assert "not a readable checkpoint" in error_of(test_script.main, ["--checkpoint", tmp_path / "cut.pt"])
    assert "not an analogrok checkpoint" in error_of(test_script.main, ["--checkpoint", tmp_path / "other.pt"])
    assert "of 2g-samples, not of --variant 2g-text" in error_of(
        test_script.main, ["--checkpoint", ckpt, "--variant", "2g-text"])


class Payload:
    """An object whose unpickling would run code: it would create the file `path`."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_checkpoint_needing_arbitrary_unpickling_is_refused_and_never_runs(ckpt, tmp_path):
    marker = tmp_path / "code-ran"
    evil = torch.load(ckpt, weights_only=True)
    evil["extra"] = Payload(str(marker))
    torch.save(evil, tmp_path / "evil.pt")
    assert "refusing" in error_of(test_script.main, ["--checkpoint", tmp_path / "evil.pt"])
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps(Payload(str(marker))))
    error_of(test_script.main, ["--checkpoint", tmp_path / "plain.pkl"])
    assert not marker.exists()


def test_errors_are_one_line_without_traceback(ckpt):
    for argv in (["train.py", "--steps", "0"], ["test.py", "--checkpoint", str(ckpt), "é?"]):
        proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode != 0
        assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_any_prompt_text_parses_or_gets_the_one_line_error(text):
    vocab = tools.make_vocab(tools.VARIANTS["3g-samples"])
    try:
        ids = test_script.parse_prompts([text], vocab, block_size=8)
    except tools.UsageError as e:
        assert "\n" not in str(e)
    else:
        assert 1 <= len(ids[0]) <= 8 and all(0 <= i < len(vocab) for i in ids[0])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_load_or_get_the_one_line_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("fuzz") / "model.pt"
    path.write_bytes(data)
    with pytest.raises(tools.UsageError):  # no byte string short of a real checkpoint is one
        tools.load_checkpoint(path)


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=2_000_000), st.binary(min_size=1, max_size=64))
def test_damaged_checkpoints_load_or_get_the_one_line_error(ckpt, tmp_path_factory, at, junk):
    good = ckpt.read_bytes()
    at = at % len(good)
    path = tmp_path_factory.mktemp("damaged") / "model.pt"
    path.write_bytes(good[:at] + junk + good[at + len(junk):])
    try:
        tools.model_from_checkpoint(tools.load_checkpoint(path), path)
    except tools.UsageError as e:
        assert "\n" not in str(e)
