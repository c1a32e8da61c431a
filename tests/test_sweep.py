"""Sweeps: grid parsing, the outputs of a tiny sweep, skipping finished runs; Grokfast; moving inverted pairs."""
import csv
import json

import pytest
import torch

import sweep
import tools
import train
from tools import VARIANTS, UsageError

TINY = ["--steps", "3", "--heads", "2", "--quiet"]


def read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_grid_parses_values_as_train_py_does():
    axes = sweep.parse_grid(["d_model=16,32", "--weight-decay=0,1e-2", "accumulate-grads=false,true",
                             "variant=3g-samples"])
    assert axes == {"d_model": [16, 32], "weight_decay": [0.0, 0.01], "accumulate_grads": [False, True],
                    "variant": ["3g-samples"]}


@pytest.mark.parametrize("spec", ["nope=1,2", "d_model=a,b", "d_model=", "d_model", "seed=1,2", "out=x",
                                  "d_model=16,16", "variant=4g", "accumulate_grads=maybe", "lr=1e-3,,1e-4"])
def test_bad_grid_is_one_line_error(spec, capsys):
    with pytest.raises(UsageError):
        sweep.parse_grid([spec])
    with pytest.raises(SystemExit) as e:
        sweep.main(["--grid", spec])
    assert str(e.value).startswith("sweep.py: error:") and "\n" not in str(e.value)


@pytest.mark.parametrize("argv", [["--grid", "d_model=10,16"],  # 10 is not divisible by 4 heads
                                  ["--grid", "d_model=16", "--d-model", "32"],
                                  ["--grid", "lr=0,1e-3"], ["--grid", "d_model=16", "--seeds", "0"],
                                  ["--grid", "d_model=16", "--name", "a/b"]])
def test_bad_sweep_is_one_line_error(argv, tmp_path):
    with pytest.raises(SystemExit) as e:
        sweep.main(argv + ["--out", str(tmp_path / "s")])
    assert str(e.value).startswith("sweep.py: error:") and "\n" not in str(e.value)
    assert not (tmp_path / "s").exists()


def test_tiny_sweep_writes_runs_points_and_figure(tmp_path):
    out = tmp_path / "tiny"
    sweep.main(["--grid", "d_model=8,16", "--grid", "layers=1,2", "--seeds", "2", "--seed", "3",
                "--jobs", "2", "--out", str(out)] + TINY)
    runs, points = read(out / "runs.csv"), read(out / "points.csv")
    assert len(runs) == 8 and len(points) == 4
    assert {(r["d_model"], r["layers"], r["seed"]) for r in runs} == \
        {(d, l, s) for d in ("8", "16") for l in ("1", "2") for s in ("3", "4")}
    assert all(r["steps"] == "3" and r["heads"] == "2" for r in runs)
    assert [(p["d_model"], p["layers"], p["runs"]) for p in points] == \
        [("8", "1", "2"), ("8", "2", "2"), ("16", "1", "2"), ("16", "2", "2")]
    assert all(0 <= float(p["fraction_generalized"]) <= 1 for p in points)
    assert (out / "sweep.png").stat().st_size > 0
    assert json.loads((out / "sweep.json").read_text())["history"][-1]["trained"] == 8


def test_repeated_sweep_skips_finished_runs(tmp_path):
    out = tmp_path / "again"
    argv = ["--grid", "lr=1e-3,1e-4", "--jobs", "1", "--out", str(out)] + TINY
    sweep.main(argv + ["--seeds", "2"])
    first = read(out / "runs.csv")
    (out / "runs.csv").write_text("".join((out / "runs.csv").read_text().splitlines(True)[:-1]))  # one run lost
    sweep.main(argv + ["--seeds", "3"])
    runs = read(out / "runs.csv")
    assert json.loads((out / "sweep.json").read_text())["history"][-1]["trained"] == 3  # the lost one and seed 2 twice
    assert runs[:3] == first[:3] and len(runs) == 6
    sweep.main(argv + ["--seeds", "3"])
    assert json.loads((out / "sweep.json").read_text())["history"][-1]["trained"] == 0 and read(out / "runs.csv") == runs
    assert [p["runs"] for p in read(out / "points.csv")] == ["3", "3"]


def test_grokfast_adds_lamb_times_the_running_average():
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))]
    g1, g2 = [torch.randn_like(p) for p in params], [torch.randn_like(p) for p in params]

    def backward(grads):
        for p, g in zip(params, grads):
            p.grad = g.clone()

    backward(g1)
    assert tools.grokfast(params, None, 0.9, 0.0) is not None
    assert all(torch.equal(p.grad, g) for p, g in zip(params, g1))  # lamb 0: unchanged
    backward(g1)
    ema = tools.grokfast(params, None, 0.9, 2.0)  # the average starts at the first gradient
    assert all(torch.allclose(p.grad, 3 * g) for p, g in zip(params, g1))
    backward(g2)
    ema = tools.grokfast(params, ema, 0.9, 2.0)
    for p, e, a, b in zip(params, ema, g1, g2):
        assert torch.allclose(e, 0.9 * a + 0.1 * b)
        assert torch.allclose(p.grad, b + 2.0 * (0.9 * a + 0.1 * b))


def test_grokfast_run_resumes_as_if_never_stopped(tmp_path):
    opts = ["--d-model", "16", "--grokfast-lamb", "2", "--accumulate-grads", "--weight-decay", "0.5", "--quiet"]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train.main(opts + ["--steps", "6", "--out", str(whole)])
    train.main(opts + ["--steps", "3", "--out", str(parts)])
    assert tools.load_checkpoint(parts / "model.pt")["grokfast"] is not None
    train.main(["--resume", "--steps", "6", "--out", str(parts), "--quiet"])
    assert (whole / "metrics.csv").read_text() == (parts / "metrics.csv").read_text()


def test_inverted_fraction_moves_a_seeded_balanced_share_of_test_pairs():
    v = VARIANTS["2g-samples"]
    base = tools.make_data(v)
    assert torch.equal(tools.make_data(v, 0.0, 5).test.x, base.test.x)
    data = tools.make_data(v, 0.25, 1)
    moved = data.train.x[52:]
    assert len(moved) == 14 and len(data.test.x) == 38  # 7 of each group's 26, rounded
    assert torch.equal(data.train.x[:52], base.train.x)
    assert torch.equal(torch.cat([moved, data.test.x]).unique(dim=0), base.test.x.unique(dim=0))
    assert (moved[:, 0] < 26).sum() == 7  # as many lowercase as uppercase
    assert torch.equal(tools.make_data(v, 0.25, 1).test.x, data.test.x)
    assert not torch.equal(tools.make_data(v, 0.25, 2).test.x, data.test.x)


@pytest.mark.parametrize("argv", [["--inverted-fraction", "1"], ["--inverted-fraction", "-0.1"],
                                  ["--variant", "2g-text", "--inverted-fraction", "0.1"],
                                  ["--grokfast-alpha", "1"], ["--grokfast-lamb", "-1"]])
def test_bad_grokfast_or_fraction_is_usage_error(argv):
    with pytest.raises(UsageError):
        train.resolve_args(train.get_parser().parse_args(argv))
