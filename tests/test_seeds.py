"""The seed study: the aggregate of hand-made rows, the study folder's name, and a tiny study end to end."""
import csv
import json

import pytest
import torch

import tools
import train


def row(test_acc, step_train, step_test, marker, letter, **extra):
    return {"train_acc": 1.0, "test_acc": test_acc, "step_train_100": step_train, "step_test_100": step_test,
            "delay": None if None in (step_train, step_test) else step_test - step_train,
            "marker_cosine_distance": marker, "letter_cosine_distance": letter,
            "marker_cosine_distance_out": letter, "letter_cosine_distance_out": marker, **extra}


def test_aggregate_of_hand_made_rows():
    rows = [row(1.0, 100, 150, 0.2, 0.9), row(1.0, 120, 200, 0.5, 0.9), row(0.5, 140, None, 1.1, 1.0),
            row(1.0, 160, 190, 0.8, 0.9)]
    a = tools.aggregate(rows)
    assert a["n"] == 4
    assert a["fraction_generalized"] == 0.75
    assert a["step_train_100"] == {"median": 130.0, "q25": 115.0, "q75": 145.0, "n": 4}
    assert a["step_test_100"] == {"median": 190.0, "q25": 170.0, "q75": 195.0, "n": 3}  # the run never at 100% left out
    assert a["delay"] == {"median": 50.0, "q25": 40.0, "q75": 65.0, "n": 3}
    assert a["marker_cosine_distance"]["median"] == 0.65
    assert a["letter_cosine_distance"]["median"] == 0.9
    assert a["fraction_markers_closer"] == 0.75  # 0.2, 0.5, 0.8 < 0.9; 1.1 > 1.0
    assert a["fraction_markers_closer_out"] == 0.25  # the tables swapped in row()
    assert "zero_shot_acc" not in a


def test_aggregate_of_in_context_accuracies():
    rows = [row(1.0, 1, 2, 0.5, 0.9, zero_shot_acc=z) for z in (1.0, 0.0, 1.0, 0.5)]
    assert tools.aggregate(rows)["zero_shot_acc"] == {"median": 0.75, "q25": 0.375, "q75": 1.0, "n": 4,
                                                      "fraction_perfect": 0.5}


def test_result_row_delay_and_in_context():
    summary = {**row(1.0, 120, 170, 0.3, 0.9), "delay": "not read", "one_shot_other_acc": 0.0, "seed": 3}
    r = tools.result_row(summary)
    assert r["delay"] == 50 and r["one_shot_other_acc"] == 0.0 and "seed" not in r
    assert tools.result_row({**summary, "step_test_100": None})["delay"] is None


def args_of(*argv):
    return train.resolve_args(train.get_parser().parse_args(list(argv)))


def test_study_folder_names_the_non_default_settings(tmp_path):
    assert train.study_folder(args_of("--out", str(tmp_path))) == tmp_path / "seeds"
    assert train.study_folder(args_of("--variant", "3g-samples")).as_posix() == "output/3g-samples/seeds"
    assert train.study_folder(args_of("--accumulate-grads")).name == "seeds-accumulate"
    assert train.study_folder(args_of("--variant", "2g-text", "--shuffle-text")).name == "seeds-shuffle-text"
    assert train.study_folder(args_of("--seed", "20", "--lr", "0.001")).name == "seeds-from20-lr0.001"
    assert train.study_folder(args_of("--variant", "2g-text", "--steps", "1000")).name == "seeds"  # its default


def read_csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_two_seeds_write_the_three_files(tmp_path):
    study = train.main(["--seeds", "2", "--seed", "5", "--steps", "3", "--out", str(tmp_path), "--jobs", "2",
                        "--quiet"])
    folder = tmp_path / "seeds-from5-steps3"
    rows = read_csv_rows(folder / "seeds.csv")
    assert [r["seed"] for r in rows] == ["5", "6"]
    assert set(tools.RESULT_KEYS) <= rows[0].keys()
    assert json.loads((folder / "seeds.json").read_text()) == study
    assert study["n"] == 2 and study["seeds"] == [5, 6] and study["args"]["steps"] == 3
    assert (folder / "seeds.png").stat().st_size > 10_000
    # Each seed's row is that seed's run, as a single run trains it.
    summary, _ = train.train_quietly(args_of("--seed", "6", "--steps", "3"))
    assert float(rows[1]["marker_cosine_distance"]) == pytest.approx(summary["marker_cosine_distance"], abs=1e-6)


def test_text_study_carries_the_in_context_accuracies(tmp_path):
    train.main(["--variant", "2g-text", "--shuffle-text", "--seeds", "2", "--steps", "2", "--out", str(tmp_path),
                "--jobs", "1", "--quiet"])
    folder = tmp_path / "seeds-steps2-shuffle-text"
    rows = read_csv_rows(folder / "seeds.csv")
    assert len(rows) == 2 and set(tools.IN_CONTEXT_LABELS) <= rows[0].keys()
    study = json.loads((folder / "seeds.json").read_text())
    assert 0 <= study["one_shot_other_acc"]["fraction_perfect"] <= 1 and study["args"]["shuffle_text"]


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "0"], "--seeds must be positive"),
    (["--seeds", "2", "--jobs", "0"], "--jobs must not be 0"),
    (["--seeds", "2", "--resume", "--out", "x"], "cannot --resume"),
])
def test_bad_seed_options_exit_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(argv)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_letter_pair_baseline_is_the_median_over_same_group_pairs():
    data = tools.make_data(tools.VARIANTS["3g-samples"])
    model = train.start(args_of("--variant", "3g-samples", "--steps", "1")).model
    d = tools.distances(model, data)
    w = torch.nn.functional.normalize(model.wte.weight.detach(), dim=1)
    groups = tools.token_groups(data)
    markers = groups.pop("markers")
    cos = 1 - w @ w.T
    pairs = [cos[i, j] for ids in groups.values() for a, i in enumerate(ids) for j in ids[a + 1:]]
    assert len(pairs) == 3 * 26 * 25 // 2
    assert d["letter_distance"].item() == pytest.approx(torch.stack(pairs).median().item(), abs=1e-6)
    mean_markers = torch.stack([cos[i, j] for a, i in enumerate(markers) for j in markers[a + 1:]]).mean()
    assert d["marker_distance"].item() == pytest.approx(mean_markers.item(), abs=1e-6)
