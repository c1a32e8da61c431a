"""The committed runs in output/ load and reproduce the accuracies their summaries report."""
import json

import pytest

import tools
from conftest import ROOT


@pytest.mark.parametrize("variant", tools.VARIANTS)
def test_committed_checkpoint_reproduces_its_summary(variant):
    run = ROOT / "output" / variant
    ckpt = tools.load_checkpoint(run / "model.pt")
    summary = json.loads((run / "summary.json").read_text())
    assert ckpt["variant"] == summary["variant"] == variant and ckpt["step"] == summary["steps"]
    model = tools.model_from_checkpoint(ckpt)
    result = {k: v.item() for k, v in tools.evaluate(model, tools.make_data(tools.VARIANTS[variant])).items()}
    assert result["train_acc"] == summary["train_acc"]
    assert result["test_acc"] == summary["test_acc"]
    for key in tools.IN_CONTEXT_LABELS:
        assert result.get(key) == summary.get(key)
