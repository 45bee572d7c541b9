"""``neuralop-mp eval`` of a run at two test resolutions reports each resolution's errors under
its own keys: each the errors an eval of that resolution alone reports, and the two differ."""
import json

import pytest
import torch
from torch.utils.data import DataLoader

from neuralop_mp import cli
from neuralop_mp import train_pipeline as pipeline

from .test_eval_and_best import train_tiny_run


def _random_samples_per_resolution(monkeypatch, seed):
    """The pipeline's data for eval: per test resolution r, four fresh random r x r samples (the
    FNO takes any grid), one batch each."""
    generator = torch.Generator().manual_seed(seed)
    inputs = {r: [torch.randn(1, r, r, generator=generator) for _ in range(4)] for r in (8, 16)}
    # targets of opposite signs: the two resolutions' errors cannot agree by chance
    sets = {r: [{"x": x, "y": x if r == 8 else -x} for x in inputs[r]] for r in (8, 16)}

    def build_data(config, progress=True):
        tests = {r: DataLoader(sets[r], batch_size=4) for r in config.data.test_resolutions}
        return DataLoader(sets[8], batch_size=4), tests, None

    monkeypatch.setattr(pipeline, "build_data", build_data)


def _eval(out, capsys, *res):
    json_path = out.parent / f"eval_{'_'.join(res)}.json"
    assert cli.main(["eval", str(out), "--json", str(json_path), "--res", *res]) == 0, capsys.readouterr().err
    capsys.readouterr()
    return json.loads(json_path.read_text())["metrics"]


def test_eval_at_two_resolutions_reports_each_under_its_own_keys(monkeypatch, tmp_path, capsys):
    out = train_tiny_run(monkeypatch, capsys, tmp_path / "run", 1)
    _random_samples_per_resolution(monkeypatch, seed=7)
    both = _eval(out, capsys, "8", "16")
    alone = {**_eval(out, capsys, "8"), **_eval(out, capsys, "16")}
    assert set(both) == {"8_l2", "8_h1", "16_l2", "16_h1"}
    # each resolution's errors are those of its own data (the same model and samples: bit for bit)
    assert both == alone
    for name in ("l2", "h1"):
        assert both[f"8_{name}"] != pytest.approx(both[f"16_{name}"], rel=1e-3)
