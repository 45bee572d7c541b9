"""Checks before a run starts: device, threads, output folder; what a precision runs as."""
import os
import types

import pytest
import torch

from neuralop_mp.run_records import human_bytes, phase_ranges
from neuralop_mp.run_setup import RunSetupError, check_writable, default_threads, parse_threads, resolve_device
from neuralop_mp.run_trainer import RunFolderTrainer, format_duration
from neuralop_mp.train_report import precision_as_run


def test_auto_device_picks_cuda_only_when_present():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_unavailable_cuda_fails_with_what_to_use_instead(device):
    with pytest.raises(RunSetupError, match=rf"device '{device}' is not available: .*--device cpu.*--device auto"):
        resolve_device(device)


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "meta"])
def test_malformed_or_unsupported_device_names_the_allowed_forms(device):
    with pytest.raises(RunSetupError, match=rf"device '{device}'.*allowed: auto, cpu, cuda, cuda:N"):
        resolve_device(device)


@pytest.mark.parametrize("cpus, load, threads", [
    (2, 0.0, 2),   # idle machine: every CPU
    (2, 1.1, 1),   # one other busy process: leave its CPU alone
    (2, 7.0, 1),   # overloaded: still one thread
    (16, 3.6, 12),
    (1, 0.0, 1),
])
def test_default_threads_leaves_the_busy_cpus_alone(monkeypatch, cpus, load, threads):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_threads(cpus=cpus, load=load) == threads


@pytest.mark.parametrize("load, busy_now, threads", [
    (0.1, 1.0, 1),   # a process started seconds ago: the load average has not seen it yet
    (1.2, 0.0, 1),   # one that just paused: the load average has
    (0.0, 0.2, 2),   # a moment's noise is no busy CPU
])
def test_default_threads_leaves_out_what_the_load_average_or_a_look_now_shows_busy(monkeypatch, load, busy_now,
                                                                                   threads):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert default_threads(cpus=2, load=load, busy_now=busy_now) == threads


def _stat(user, idle, cpus=2):
    """/proc/stat's text with the aggregate line's user and idle times (and ``cpus`` per-CPU lines)."""
    return "\n".join([f"cpu  {user} 0 0 {idle} 0 0 0 0 0 0"] + [f"cpu{i} 0 0 0 0 0 0 0 0 0 0" for i in range(cpus)])


def test_busy_cpus_now_reads_the_busy_share_of_proc_stat(monkeypatch):
    from neuralop_mp.run_setup import busy_cpus_now

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    samples = iter([_stat(1000, 5000), _stat(1100, 5100)])  # half the CPU time busy: one of two CPUs
    assert busy_cpus_now(interval=0, read_stat=lambda: next(samples)) == pytest.approx(1.0)
    # a container seeing its host's 64 CPUs in /proc/stat: no measure of this machine's
    samples = iter([_stat(1000, 5000, cpus=64), _stat(1100, 5100, cpus=64)])
    assert busy_cpus_now(interval=0, read_stat=lambda: next(samples)) is None
    assert busy_cpus_now(interval=0, read_stat=lambda: "garbage") is None


@pytest.mark.parametrize("local_ranks, cpus, load, threads", [
    ("2", 16, 0.0, 8),    # torchrun --nproc_per_node 2: half the idle CPUs each
    ("4", 16, 3.6, 3),    # 12 idle CPUs shared by 4 ranks
    ("8", 4, 0.0, 1),     # more ranks than CPUs: still one thread each
    ("2", 2, 1.1, 1),
    ("1", 16, 0.0, 16),
    ("", 16, 0.0, 16),    # not a number: as outside torchrun
])
def test_default_threads_under_torchrun_shares_the_idle_cpus_among_the_nodes_ranks(
        monkeypatch, local_ranks, cpus, load, threads):
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", local_ranks)
    assert default_threads(cpus=cpus, load=load) == threads


def _set_world_size(monkeypatch, world_size):
    """torchrun's WORLD_SIZE as ``world_size``, or unset (None): a process not started by torchrun."""
    if world_size is None:
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("WORLD_SIZE", world_size)


@pytest.mark.parametrize("world_size", [None, "1"])
def test_a_local_world_size_inherited_outside_torchrun_does_not_share_the_cpus(monkeypatch, world_size):
    """Only a process torchrun started as one of several ranks (WORLD_SIZE > 1) shares them."""
    _set_world_size(monkeypatch, world_size)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert default_threads(cpus=16, load=0.0) == 16


@pytest.mark.parametrize("world_size", [None, "1"])
def test_update_in_backward_is_allowed_outside_torchrun_or_on_one_rank(monkeypatch, world_size):
    from neuralop_mp.run_setup import check_update_in_backward_launch

    _set_world_size(monkeypatch, world_size)
    check_update_in_backward_launch(True, "opt.update_in_backward")
    monkeypatch.setenv("WORLD_SIZE", "2")
    check_update_in_backward_launch(False, "opt.update_in_backward")  # off: nothing to refuse
    with pytest.raises(RunSetupError, match=r"^--mp.update_in_backward=True cannot run under torchrun "
                                            r"\(WORLD_SIZE=2\): update_in_backward=True cannot be combined with "):
        check_update_in_backward_launch(True, "--mp.update_in_backward")


def test_parse_threads():
    assert parse_threads("auto") is None and parse_threads(None) is None and parse_threads("3") == 3
    for bad in ("0", "-2", "two", "1.5"):
        with pytest.raises(RunSetupError, match=f"Invalid --threads '{bad}'; allowed: auto or an integer >= 1"):
            parse_threads(bad)


def test_output_folder_is_created_and_checked_writable(tmp_path):
    assert check_writable(tmp_path / "a" / "b").is_dir()
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the probe file is gone
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(RunSetupError, match=f"Output folder '{blocker / 'run'}' cannot be created: '{blocker}' is a "
                       "file, not a folder"):
        check_writable(blocker / "run")


@pytest.mark.parametrize("mode, dtype, device, sizes, text", [
    ("half", torch.bfloat16, "cpu", [16, 32], "half: runs as mixed on CPU, fp32 FFT, bfloat16 contraction"),
    ("half", torch.float16, "cpu", [16], "half: runs as mixed on CPU, fp32 FFT, float16 contraction"),
    ("half", torch.bfloat16, "cuda", [16], "half: fp32 FFT (cuFFT has no bfloat16), bfloat16 contraction"),
    ("half", torch.float16, "cuda", [16, 24, 32], "half: fp16 FFT at power-of-2 sizes, fp32 FFT at sizes 24"),
    ("half", torch.float16, "cuda", [16, 32], "half: fp16 FFT, float16 contraction"),
    ("mixed", torch.bfloat16, "cpu", [16], "mixed: fp32 FFT, bfloat16 contraction"),
    ("full", torch.bfloat16, "cpu", [16], "full: fp32 FFT, complex64 contraction"),
])
def test_precision_as_run_says_what_the_layer_computes(mode, dtype, device, sizes, text):
    assert precision_as_run(mode, dtype, device, sizes).startswith(text)


def test_phase_ranges_group_consecutive_epochs_of_one_precision():
    history = [dict(epoch=e, precision=m, autocast=a, stabilizer=s) for e, (m, a, s) in enumerate(
        [("half", True, "tanh")] * 2 + [("mixed", True, None)] * 3 + [("full", False, None)])]
    assert phase_ranges(history) == [
        {"mode": "half", "autocast": True, "stabilizer": "tanh", "half_dtype": None, "start_epoch": 0, "end_epoch": 2},
        {"mode": "mixed", "autocast": True, "stabilizer": None, "half_dtype": None, "start_epoch": 2, "end_epoch": 5},
        {"mode": "full", "autocast": False, "stabilizer": None, "half_dtype": None, "start_epoch": 5, "end_epoch": 6},
    ]
    # two trainers' histories one after the other: the epochs restart, so do the ranges
    assert [(r["start_epoch"], r["end_epoch"]) for r in phase_ranges(history[:2] + history[:2])] == [(0, 2), (0, 2)]


def test_human_bytes():
    assert [human_bytes(n) for n in (None, 512, 1536, 3 * 2**20, 5 * 2**40)] == \
        ["n/a", "512 B", "1.50 KiB", "3.00 MiB", "5120.00 GiB"]


def test_duration_estimate_counts_remaining_epochs_and_evaluations():
    trainer = types.SimpleNamespace(n_epochs=10, eval_interval=2)
    message = RunFolderTrainer.duration_message(trainer, 0, 6.0, 2.0)
    # 9 epochs of 6 s training, evaluations at epochs 2, 4, 6, 8 of 2 s: 62 s
    assert message.endswith("expect about 62 s for the remaining 9 epoch(s)")
    assert "epoch 0 took 8.0 s (training 6.0 s, evaluation 2.0 s)" in message
    assert [format_duration(s) for s in (20, 150, 7200)] == ["20 s", "2.5 min", "2.0 h"]


def test_first_estimate_is_logged_after_a_few_batches_before_the_first_epoch_ends():
    from neuralop_mp.training.tests.tiny import loss, optimizer_and_scheduler, tiny_data, tiny_fno

    model = tiny_fno()
    train, test = tiny_data(n=24, batch_size=4)  # 6 batches per epoch
    messages = []
    trainer = RunFolderTrainer(model=model, n_epochs=3, log=messages.append, verbose=False)
    trainer.train(train, test, *optimizer_and_scheduler(model), training_loss=loss())
    early = [m for m in messages if "per training batch" in m]
    after_epoch = [m for m in messages if "epoch 0 took" in m]
    assert len(early) == 1 and len(after_epoch) == 1
    assert messages.index(early[0]) < messages.index(after_epoch[0])
    assert "for 3 epoch(s) of 6 batches" in early[0]
    per_batch = float(early[0].split("] ")[1].split(" s per")[0])
    assert per_batch > 0


def test_first_estimate_leaves_out_the_first_batch_backward_and_step():
    """The warm-up batch's optimizer step (here made 0.9 s slow, as a first projector
    refresh can be) runs after train_one_batch returns; the timed window starts after it,
    so three fast batches are estimated at well under the 0.3 s a window holding it would give."""
    import time as time_module

    from neuralop_mp.training.tests.tiny import loss, optimizer_and_scheduler, tiny_data, tiny_fno

    model = tiny_fno()
    train, test = tiny_data(n=24, batch_size=4)
    optimizer, scheduler = optimizer_and_scheduler(model)
    step, calls = optimizer.step, []

    def first_step_slow(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            time_module.sleep(0.9)
        return step(*args, **kwargs)

    optimizer.step = first_step_slow
    messages = []
    trainer = RunFolderTrainer(model=model, n_epochs=1, log=messages.append, verbose=False)
    trainer.train(train, test, optimizer, scheduler, training_loss=loss())
    early = [m for m in messages if "per training batch" in m]
    assert len(early) == 1 and len(calls) == 6
    assert float(early[0].split("] ")[1].split(" s per")[0]) < 0.2


@pytest.mark.parametrize("n_batches", [1, 2])
def test_no_first_estimate_with_fewer_than_three_batches_per_epoch(n_batches):
    from neuralop_mp.training.tests.tiny import loss, optimizer_and_scheduler, tiny_data, tiny_fno

    model = tiny_fno()
    train, test = tiny_data(n=4 * n_batches, batch_size=4)
    messages = []
    trainer = RunFolderTrainer(model=model, n_epochs=2, log=messages.append, verbose=False)
    trainer.train(train, test, *optimizer_and_scheduler(model), training_loss=loss())
    assert not [m for m in messages if "per training batch" in m]
    assert len([m for m in messages if "epoch 0 took" in m]) == 1


def test_a_resume_that_changed_the_half_type_splits_the_16_bit_spans_only():
    """A run saved in float16 and resumed in bfloat16: its mixed epochs are two spans, each
    with its type, in the summary too; full precision computes in no half type."""
    from neuralop_mp.train_report import summary_rows

    history = [dict(epoch=e, precision=m, autocast=m != "full", stabilizer=None, half_dtype=h) for e, (m, h) in
               enumerate([("mixed", "float16")] * 2 + [("mixed", "bfloat16")] * 2 + [("full", "float16"),
                                                                                  ("full", "bfloat16")])]
    ranges = phase_ranges(history)
    assert [(r["mode"], r["half_dtype"], r["start_epoch"], r["end_epoch"]) for r in ranges] == [
        ("mixed", "float16", 0, 2), ("mixed", "bfloat16", 2, 4), ("full", None, 4, 6)]
    result = {"metrics": {}, "test_resolutions": [], "train_resolution": 16, "seconds_per_epoch": 1.0,
              "precision": {"final_mode": "full", "half_dtype": "bfloat16", "schedule": "mixed:0.67,full:0.33",
                            "phases": ranges},
              "skipped_steps": 0, "wall_time_s": 1.0,
              "memory": {"params_bytes": 4, "optimizer_state_bytes": 8, "n_params": 1}}
    rows = dict(summary_rows(result))
    assert rows["precision phases"] == ("mixed+autocast (float16) [epochs 0-1], mixed+autocast (bfloat16) "
                                        "[epochs 2-3], full [epochs 4-5]")
