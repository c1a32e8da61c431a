"""Training and the two entry points end to end: learning, outputs, checkpoints, determinism, resume."""
import json
import signal
import subprocess
import sys
import time

import pytest
import torch

import test as test_script
import tools
import train
from conftest import ROOT

FILES = ["model.pt", "metrics.csv", "summary.json", "train.log", "accuracy.png", "loss.png",
         "tsne_first.png", "tsne_last.png", "predictions.png"]


def run_train(*argv):
    return train.main([*map(str, argv), "--quiet"])


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """A 2g-samples run long enough to learn its training set (step 125 at seed 0)."""
    out = tmp_path_factory.mktemp("run")
    return out, run_train("--steps", 160, "--out", out)


def test_short_run_learns_the_training_set_and_writes_every_file(short_run):
    out, summary = short_run
    assert summary["train_acc"] == 1.0 and summary["step_train_100"] is not None
    for name in FILES:
        assert (out / name).stat().st_size > 0, name
    rows = tools.read_csv(out / "metrics.csv")
    assert [r["step"] for r in rows] == list(range(161))
    assert json.loads((out / "summary.json").read_text())["train_acc"] == rows[-1]["train_acc"]
    assert not list(out.glob(".*.tmp"))  # no temporary file left behind


def test_checkpoint_is_plain_data_and_rebuilds_the_model(short_run):
    out, summary = short_run
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert ckpt["variant"] == "2g-samples" and ckpt["step"] == 160 and ckpt["args"]["seed"] == 0
    model = tools.model_from_checkpoint(tools.load_checkpoint(out / "model.pt"))
    data = tools.make_data(tools.VARIANTS["2g-samples"])
    acc = tools.evaluate(model, data)
    assert acc["train_acc"].item() == summary["train_acc"] and acc["test_acc"].item() == summary["test_acc"]


def test_test_script_scores_and_answers(short_run, capsys):
    out, _ = short_run
    test_script.main(["--checkpoint", str(out / "model.pt")])
    report = capsys.readouterr().out
    assert "train (training pairing)" in report and "52/52" in report and "cosine distance" in report
    assert (out / "tsne_test.png").stat().st_size > 0
    test_script.main(["--checkpoint", str(out / "model.pt"), "a!", "B?"])
    assert capsys.readouterr().out.splitlines() == ["a! -> a", "B? -> B"]


def test_same_seed_gives_identical_metrics(tmp_path):
    run_train("--steps", 20, "--out", tmp_path / "a", "--variant", "2g-text", "--shuffle-text")
    run_train("--steps", 20, "--out", tmp_path / "b", "--variant", "2g-text", "--shuffle-text")
    assert (tmp_path / "a" / "metrics.csv").read_bytes() == (tmp_path / "b" / "metrics.csv").read_bytes()
    run_train("--steps", 20, "--out", tmp_path / "c", "--variant", "2g-text", "--shuffle-text", "--seed", 1)
    assert (tmp_path / "a" / "metrics.csv").read_bytes() != (tmp_path / "c" / "metrics.csv").read_bytes()


@pytest.mark.parametrize("extra", [[], ["--accumulate-grads"]])
def test_resumed_run_equals_an_uninterrupted_one(tmp_path, extra):
    run_train("--steps", 40, "--out", tmp_path / "whole", *extra)
    run_train("--steps", 15, "--out", tmp_path / "parts", *extra)
    summary = run_train("--steps", 40, "--out", tmp_path / "parts", "--resume")
    assert summary["steps"] == 40 and summary["accumulate_grads"] == bool(extra)
    assert (tmp_path / "whole" / "metrics.csv").read_bytes() == (tmp_path / "parts" / "metrics.csv").read_bytes()


def test_ctrl_c_saves_the_run_and_exits_130(tmp_path):
    """Stops at the end of the step, saves everything, says how to resume; a second Ctrl-C changes nothing."""
    out = tmp_path / "long"
    proc = subprocess.Popen([sys.executable, "train.py", "--steps", "100000", "--out", str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # the progress bar: wait until training has really started
        if "step/s" in line or "s/step" in line:
            break
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)  # a second Ctrl-C, while the first is being handled or the run saved: ignored
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "--resume" in stdout and "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and 0 < summary["steps"] < 100000
    assert tools.load_checkpoint(out / "model.pt")["step"] == summary["steps"]
