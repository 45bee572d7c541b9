"""The stand-in for upstream's ``setup()``: upstream's own without ``use_distributed``;
with it, a process group on any device, and a clear refusal of model parallelism."""
import pytest
import torch

from neuralop_mp.runner.distributed_setup import make_setup
from neuralop_mp.runner.report import ActivationReport
from neuralop_mp.runner.summary import format_summary


def _config(**distributed):
    return {"distributed": {"use_distributed": False, "model_parallel_size": 1, "seed": None, **distributed}}


def test_without_use_distributed_upstreams_setup_runs():
    calls = []
    setup = make_setup(lambda config: calls.append(config) or ("upstream-device", True), ActivationReport({}))
    config = _config()
    assert setup(config) == ("upstream-device", True)
    assert calls == [config]


def test_model_parallelism_is_refused_with_the_allowed_values():
    setup = make_setup(lambda config: pytest.fail("upstream's setup must not run"), ActivationReport({}))
    with pytest.raises(ValueError, match=r"model_parallel_size=2.*allowed: 1 or None"):
        setup(_config(use_distributed=True, model_parallel_size=2))


def test_outside_torchrun_use_distributed_runs_on_one_process_with_upstreams_seed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    report = ActivationReport({})
    device, is_logger = make_setup(lambda config: None, report)(_config(use_distributed=True, seed=7))
    assert is_logger and device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    first = torch.rand(3)
    torch.manual_seed(7)  # rank 0: upstream's rule is seed + rank
    assert torch.equal(first, torch.rand(3))
    assert "data parallel: rank 0 of 1 (backend none, device cpu)" in report.information or torch.cuda.is_available()


def test_the_data_parallel_note_is_information_in_the_summary_not_a_warning(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    report = ActivationReport({})
    make_setup(lambda config: None, report)(_config(use_distributed=True))
    (note,) = [n for n in report.information if n.startswith("data parallel: rank 0 of 1 ")]
    assert not report.notes
    report.note("a real problem")
    report.record_end(0)
    lines = format_summary(report).splitlines()
    assert note in lines and "WARNING: a real problem" in lines
    assert not any(line.startswith("WARNING") and "data parallel" in line for line in lines)


@pytest.mark.parametrize("rank", ["0", "1"])
def test_under_torchrun_without_use_distributed_rank_0_warns_once_that_each_rank_trains_alone(
        monkeypatch, capsys, rank):
    """Before: every rank trained the whole data on its own, the same work repeated, without a word."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", rank)
    report = ActivationReport({})
    setup = make_setup(lambda config: ("upstream-device", True), report)
    assert setup(_config()) == ("upstream-device", True)
    assert setup(_config()) == ("upstream-device", True)  # once, however often the script calls it
    printed = capsys.readouterr().out
    if rank == "1":
        assert printed == "" and report.notes == []
        return
    (line,) = printed.splitlines()
    assert line.startswith("neuralop-mp run: WARNING: torchrun started 2 ranks, but the script's "
                           "distributed.use_distributed is False: each rank trains on the whole data on its own")
    assert "--distributed.use_distributed True" in line
    (note,) = report.notes  # the summary repeats it among its warnings
    assert line.endswith(note)


def test_one_process_without_use_distributed_is_not_warned(monkeypatch, capsys):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    report = ActivationReport({})
    make_setup(lambda config: None, report)(_config())
    assert capsys.readouterr().out == "" and report.notes == []
