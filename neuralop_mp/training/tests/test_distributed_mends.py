"""Data parallelism on 2 gloo ranks (CPU, forked): complex32 spectral weights under autocast,
the verbose epoch line, world sizes in the history, and rank 0 alone printing the CLI's stops.

complex32 weights fail inside DDP's reducer under autocast from the second backward on (torch:
"Expected ComplexFloat, got ComplexHalf"); :func:`~neuralop_mp.training.distributed.wrap_model`
keeps them out of DDP and the trainer averages their gradients itself
(:func:`~neuralop_mp.training.distributed.average_gradients`).
"""
import warnings

import pytest
import torch
import torch.multiprocessing as mp
from neuralop.losses import LpLoss

from neuralop_mp import set_precision, set_spectral_weight_dtype
from neuralop_mp.models.mixed_precision_models import UnrecordedPrecisionWarning
from neuralop_mp.training import distributed
from neuralop_mp.training.checkpointing import unwrap
from neuralop_mp.training.loss_scaling import ComplexGradScaler
from neuralop_mp.training.trainer import MixedPrecisionTrainer

from .test_distributed import _START_METHOD, _free_port, _worker
from .tiny import DictDataset, tiny_fno

N_TRAIN, BATCH, SIZE = 16, 4, 8  # per rank: 2 batches of 4; one process: 2 batches of 8, the same samples


def _complex32_fno(seed, weight_dtype="complex32"):
    model = tiny_fno(seed=seed)
    with warnings.catch_warnings():  # upstream's FNO would not record the storage in its own checkpoint
        warnings.simplefilter("ignore", UnrecordedPrecisionWarning)
        set_spectral_weight_dtype(model, weight_dtype)
    set_precision(model, "mixed", half_dtype="bfloat16")
    return model


def _samples():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N_TRAIN, 1, SIZE, SIZE, generator=gen)
    return x, torch.tanh(x) + 0.5 * x.roll(1, dims=-1)


def _mean_l2(out, y):
    """LpLoss per sample: the mean over a batch, so that the mean of the ranks' gradients is the
    gradient of one process's loss over both ranks' samples."""
    return LpLoss(d=2, reduction="sum")(out, y) / out.shape[0]


def _loaders(world_size, rank):
    """Rank ``r``'s batch ``k`` holds samples ``8k + 4r ... 8k + 4r + 3``; one process's batch ``k``
    holds samples ``8k ... 8k + 7``: the union of the ranks' batches ``k``."""
    x, y = _samples()
    data = DictDataset(x, y)
    if world_size > 1:
        index = [8 * k + BATCH * rank + j for k in range(N_TRAIN // 8) for j in range(BATCH)]
        train = torch.utils.data.DataLoader(torch.utils.data.Subset(data, index), batch_size=BATCH)
    else:
        train = torch.utils.data.DataLoader(data, batch_size=2 * BATCH)
    test = {"8": torch.utils.data.DataLoader(DictDataset(x[:8], y[:8]), batch_size=4)}
    return train, test


def _train(world_size, rank, save_dir=None, resume_from_dir=None, n_epochs=2, weight_dtype="complex32"):
    """complex32 weights (by default), layers "mixed" under bfloat16 autocast, loss scaling (on:
    complex32 gradients are float16); SGD (torch's Adam keeps complex32 moments in float16)."""
    from neuralop.training import Trainer

    logged = []
    upstream_log = Trainer.log_training

    def recording_log(self, **values):  # upstream's verbose line and wandb values: what they were given
        logged.append(values)
        return upstream_log(self, **values)

    Trainer.log_training = recording_log
    try:
        model = _complex32_fno(seed=0, weight_dtype=weight_dtype)
        initial = {name: p.detach().clone() for name, p in model.named_parameters()}
        optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
        trainer = MixedPrecisionTrainer(model=model, n_epochs=n_epochs, precision_schedule="mixed",
                                        half_dtype="bfloat16", use_distributed=world_size > 1, verbose=rank == 0)
        # "auto" scales complex32 gradients (float16); no overflow to skip a step in either run
        trainer.scaler = ComplexGradScaler(init_scale=2.0 ** 8, enabled=trainer.scaler.enabled)
        train, test = _loaders(world_size, rank)
        trainer.train(train, test, optimizer, None, training_loss=_mean_l2, eval_losses={"l2": _mean_l2},
                      save_every=1 if save_dir else None, save_dir=save_dir or "./ckpt",
                      resume_from_dir=resume_from_dir)
    finally:
        Trainer.log_training = upstream_log
    return dict(initial=initial, history=trainer.history, logged=logged,
                final={name: p.detach().clone() for name, p in unwrap(trainer.model).named_parameters()},
                dtypes={name: p.dtype for name, p in unwrap(trainer.model).named_parameters()})


def _run_ranks(tmp_path, job, **kwargs):
    out = tmp_path / f"out_{len(list(tmp_path.iterdir()))}"
    out.mkdir()
    mp.start_processes(_worker, args=(2, _free_port(), str(out), kwargs, job), nprocs=2, join=True,
                       start_method=_START_METHOD)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


def _real(t):
    t = t.detach()
    return torch.view_as_real(t.to(torch.complex128)) if t.is_complex() else t.double()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("c32")
    return _run_ranks(tmp_path, _train)


@pytest.fixture(scope="module")
def two_ranks_complex64(tmp_path_factory):
    """Upstream's weight storage, checkpointed every epoch."""
    tmp_path = tmp_path_factory.mktemp("c64")
    return tmp_path, _run_ranks(tmp_path, _train, save_dir=str(tmp_path / "ckpt"), weight_dtype="complex64")


def test_complex32_weights_under_autocast_train_on_two_ranks_as_one_process_over_both_shards(two_ranks):
    """2 epochs of 2 steps: the ranks end with bitwise equal weights, and every weight's change
    is one process's (same initial weights, its batches the union of the ranks', the loss a mean
    over samples) to 2 % of its size. Up to rounding: each rank's complex32 gradient is rounded to
    float16 before the mean (0.05 %), and the weights are stored in float16 (an update of about
    1e-3 moves a weight of 0.03 by whole float16 steps of 1.5e-5), and bfloat16 autocast sums
    over other groupings of the samples: the worst parameter (a float32 one) differs by about 0.3 %
    here. A sum instead of the mean (+150 %), or each rank's own gradient (50 %), fails."""
    r0, r1 = two_ranks
    one = _train(1, 0)
    assert r0["dtypes"]["fno_blocks.convs.0.weight.tensor"] == torch.complex32
    for name in r0["final"]:
        assert torch.equal(_real(r0["final"][name]), _real(r1["final"][name])), name
        ddp_change = _real(r0["final"][name]) - _real(r0["initial"][name])
        one_change = _real(one["final"][name]) - _real(one["initial"][name])
        assert one_change.norm() > 0
        assert (ddp_change - one_change).norm() <= 0.02 * one_change.norm(), name
    assert [h["skipped_steps"] for h in r0["history"] + one["history"]] == [0] * 4


def test_the_verbose_epoch_line_is_the_recorded_loss_over_both_ranks(two_ranks_complex64):
    """Upstream's log_training (the ``--verbose`` line, wandb's values) gets the history's
    train_loss / train_err, over both ranks' batches: not rank 0's own sums."""
    _, (r0, r1) = two_ranks_complex64
    assert r1["logged"] == []  # verbose on rank 0 only, as the pipeline sets it
    assert [(v["avg_loss"], v["train_err"]) for v in r0["logged"]] == \
        [(h["train_loss"], h["train_err"]) for h in r0["history"]]
    assert [v["epoch"] for v in r0["logged"]] == [0, 1]
    assert [h["train_loss"] for h in r0["history"]] == [h["train_loss"] for h in r1["history"]]


def test_the_history_records_each_epochs_world_size_across_a_resume_on_one_process(two_ranks_complex64):
    """Epochs 0-1 ran on 2 ranks; resumed on one process for epoch 2: the history says so."""
    tmp_path, (r0, _) = two_ranks_complex64
    assert [h["world_size"] for h in r0["history"]] == [2, 2]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        resumed = _train(1, 0, resume_from_dir=str(tmp_path / "ckpt"), n_epochs=3, weight_dtype="complex64")
    finally:
        torch.set_num_threads(threads)
    assert [(h["epoch"], h["world_size"]) for h in resumed["history"]] == [(0, 2), (1, 2), (2, 1)]


def _average_job(world_size, rank):
    """Each rank builds its model from its own seed: wrap_model gives every rank rank 0's weights
    (complex32 ones included). Three backward passes under bfloat16 autocast on each rank's own
    batch (DDP's bucket rebuild after the first used to fail the second); after each, the DDP-averaged
    and the self-averaged gradients, and each rank's own (from an unwrapped copy of rank 0's model)."""
    reference = _complex32_fno(seed=0)
    model = distributed.wrap_model(_complex32_fno(seed=rank), "cpu")
    result = dict(weights={n: p.detach().clone() for n, p in unwrap(model).named_parameters()},
                  self_averaged=[n for n, p in unwrap(model).named_parameters()
                                 if any(p is q for q in distributed.self_averaged_parameters(model))],
                  # the module keeps no DDP ignore list: a later DDP of it (a user's) syncs every weight
                  ignore_list_left=hasattr(unwrap(model), "_ddp_params_and_buffers_to_ignore"),
                  steps=[])
    x, _ = _samples()
    for step in range(3):
        batch = x[8 * (step % 2) + BATCH * rank:][:BATCH] * (1 + step)
        reference.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            reference(batch).float().square().mean().backward()
        own = {n: p.grad.clone() for n, p in reference.named_parameters()}
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(batch).float().square().mean().backward()
        params = distributed.self_averaged_parameters(model)
        if step == 2 and rank == 1:
            params[0].grad = None  # no gradient on one rank: counts as zeros there
        calls, all_reduce, bucket_bytes = [], torch.distributed.all_reduce, distributed._BUCKET_BYTES
        torch.distributed.all_reduce = lambda *args, **kwargs: calls.append(1) or all_reduce(*args, **kwargs)
        if step == 1:
            distributed._BUCKET_BYTES = 1  # a bucket per weight: each reduced in place on its own storage
        try:
            distributed.average_gradients(params)
        finally:
            torch.distributed.all_reduce, distributed._BUCKET_BYTES = all_reduce, bucket_bytes
        result["steps"].append(dict(own=own, averaged={n: p.grad.clone() for n, p in
                                                       unwrap(model).named_parameters()},
                                    all_reduces=len(calls), n_params=len(params)))
    untouched = torch.nn.Parameter(torch.zeros(3, dtype=torch.complex32))
    distributed.average_gradients([untouched])  # no gradient on any rank: stays None
    result["untouched"] = untouched.grad
    return result


def test_complex32_gradients_are_the_mean_over_ranks_to_one_float16_rounding_of_a_float64_reference(tmp_path):
    """The self-averaged complex32 gradients: within one float16 rounding (2**-11 relative, plus
    2**-23 absolute for subnormals) of the float64 mean of the ranks' own complex32 gradients; the
    DDP-averaged float32 ones to float32 rounding; both bitwise equal on the two ranks."""
    r0, r1 = _run_ranks(tmp_path, _average_job)
    assert r0["self_averaged"] == r1["self_averaged"] == [f"fno_blocks.convs.{i}.weight.tensor" for i in (0, 1)]
    assert not r0["ignore_list_left"] and not r1["ignore_list_left"]
    for name in r0["weights"]:
        assert torch.equal(_real(r0["weights"][name]), _real(r1["weights"][name])), name
    reference = _complex32_fno(seed=0)
    assert all(torch.equal(_real(p), _real(r0["weights"][n])) for n, p in reference.named_parameters())
    for step, (s0, s1) in enumerate(zip(r0["steps"], r1["steps"])):
        # the presence count, then one all-reduce for the packed gradients (one per weight in step 1's
        # one-byte buckets)
        assert s0["all_reduces"] == s1["all_reduces"] == (1 + s0["n_params"] if step == 1 else 2), step
        for name, averaged in s0["averaged"].items():
            assert torch.equal(_real(averaged), _real(s1["averaged"][name])), (step, name)
            own = [_real(s0["own"][name]), _real(s1["own"][name])]
            if step == 2 and name == "fno_blocks.convs.0.weight.tensor":
                own[1] = torch.zeros_like(own[1])
            mean = (own[0] + own[1]) / 2
            error = (_real(averaged) - mean).abs()
            if averaged.dtype == torch.complex32:
                assert (error <= 2.0 ** -11 * mean.abs() + 2.0 ** -23).all(), (step, name, error.max())
            else:
                assert (error <= 1e-6 * mean.abs() + 1e-9).all(), (step, name, error.max())
            assert mean.abs().max() > 0
    assert r0["untouched"] is None and r1["untouched"] is None


def test_outside_a_process_group_average_gradients_changes_nothing():
    model = _complex32_fno(seed=0)
    assert distributed.self_averaged_parameters(model) == []
    p = torch.nn.Parameter(torch.ones(2, dtype=torch.complex32))
    p.grad = torch.full((2,), 3 + 1j, dtype=torch.complex64).to(torch.complex32)
    distributed.average_gradients([p])
    assert torch.equal(torch.view_as_real(p.grad), torch.view_as_real(torch.full((2,), 3 + 1j).to(torch.complex32)))


# ---------------------------------------------------------------------------- the CLI's train command
@pytest.mark.parametrize("rank", ["0", "1"])
@pytest.mark.parametrize("raised, code", [("stopped", 1), ("interrupt", 130), ("setup", 2)])
def test_train_stops_errors_and_interrupts_are_said_by_rank_0_only_with_the_exit_code_on_every_rank(
        tmp_path, monkeypatch, capsys, rank, raised, code):
    """Under torchrun every rank meets the same stop: rank 0 alone prints it (torchrun's RANK: the
    process group may be gone by then); every rank returns the exit code. An error another rank
    meets it prints only after the wait (in which torchrun stops it where rank 0 failed too),
    prefixed with its rank: it may be its own (a file missing on its node)."""
    from neuralop_mp import cli, train_pipeline
    from neuralop_mp.run_setup import RunSetupError
    from neuralop_mp.training.guarded_step import TrainingStopped

    def run_training(*args, **kwargs):
        raise {"stopped": TrainingStopped("Training stopped: 2 consecutive optimizer steps were skipped"),
               "interrupt": KeyboardInterrupt(),
               "setup": RunSetupError("opt.update_in_backward=True cannot run under torchrun")}[raised]

    monkeypatch.setenv("RANK", rank)
    monkeypatch.setattr(train_pipeline, "run_training", run_training)
    monkeypatch.setattr(cli, "_QUIET_RANK_EXIT_DELAY_S", 0.0)
    monkeypatch.setattr(cli, "_RANK_ERROR_WAIT_S", 0.0)
    assert cli.train_command(["darcy", "--output_dir", str(tmp_path / "run")]) == code
    err = capsys.readouterr().err
    if raised == "setup" and rank == "1":
        assert err.startswith("[rank 1] neuralop-mp train: error: opt.update_in_backward=True"), err
        return
    assert (err.strip() != "") == (rank == "0"), err
    if raised != "interrupt" and rank == "0":
        assert "neuralop-mp train" in err


@pytest.mark.parametrize("rank", ["0", "1"])
def test_train_usage_errors_are_said_by_rank_0_and_by_another_rank_after_the_wait(monkeypatch, capsys, rank):
    from neuralop_mp import cli

    monkeypatch.setenv("RANK", rank)
    monkeypatch.setattr(cli, "_QUIET_RANK_EXIT_DELAY_S", 0.0)
    monkeypatch.setattr(cli, "_RANK_ERROR_WAIT_S", 0.0)
    assert cli.train_command(["darcy", "--output-dir", "x"]) == 2
    err = capsys.readouterr().err
    # rank 1's after the wait, in which torchrun stops it when rank 0 said the same
    prefix = "" if rank == "0" else "[rank 1] "
    assert err.startswith(f"{prefix}neuralop-mp train: error: Unknown option --output-dir"), err
