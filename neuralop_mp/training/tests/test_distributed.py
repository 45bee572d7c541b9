"""Two ranks (gloo, CPU, on localhost) train the same model and stay bitwise equal.

The runs: an FNO with the mixed-precision spectral layer, the schedule
"mixed:0.5,full:0.5" (its phase changes after the first epoch), dynamic loss scaling,
and TensorGRaD with both parts on (random-k sparse, then Tucker on the residual),
``update_proj_gap=2`` so projectors refresh during the run. After every optimizer
step each rank hashes its weights, optimizer state and scaler state, and the hashes
of both ranks are compared.
"""
import datetime
import hashlib
import json
import os
import shutil
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from neuralop_mp.optim import TensorGRaD
from neuralop_mp.training.checkpointing import unwrap
from neuralop_mp.training.trainer import MixedPrecisionTrainer

# fork: the children inherit the imported torch and neuralop (a fresh interpreter spends ~5 s
# importing). Where CUDA is present, autograd may already run device threads in this process
# (an earlier CUDA test), and torch refuses autograd in a forked child: spawn there.
_START_METHOD = "spawn" if torch.cuda.is_available() else "fork"

from .tiny import DictDataset, loss, tiny_fno

N_TRAIN, BATCH, SIZE = 32, 4, 16  # 4 batches per rank and epoch with 2 ranks
SCHEDULE = "mixed:0.5,full:0.5"


class SimulatedKill(Exception):
    """Raised after a checkpoint to stop a run as a killed job would."""


def _tensor_bytes(t):
    t = t.detach().cpu().reshape(-1).contiguous()
    return t.view(torch.uint8).numpy().tobytes()


def state_digest(model, optimizer, scaler):
    """SHA-256 of the weights, every optimizer state tensor and the scaler state."""
    digest = hashlib.sha256()
    for name, p in unwrap(model).named_parameters():
        digest.update(name.encode())
        digest.update(_tensor_bytes(p))
    for i, p in enumerate(p for g in optimizer.param_groups for p in g["params"]):
        for key in sorted(optimizer.state[p]):
            digest.update(f"{i}.{key}".encode())
            digest.update(_tensor_bytes(optimizer.state[p][key]))
    digest.update(json.dumps(scaler.state_dict(), sort_keys=True).encode())
    return digest.hexdigest()


def weight_digest(model):
    digest = hashlib.sha256()
    for p in model.parameters():
        digest.update(_tensor_bytes(p))
    return digest.hexdigest()


class RecordingTrainer(MixedPrecisionTrainer):
    """Hashes the state after every step; can put inf into one rank's gradients or NaN
    into one rank's batch at a chosen step, and stop after a chosen checkpoint."""

    inf_grad_at = None    # (rank, step): overwrite a gradient entry after DDP's all-reduce
    nan_input_at = None   # (rank, step): a NaN input makes that rank's loss NaN
    kill_after_epoch = None

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.step_count, self.records = 0, []

    def _rank(self):
        return dist.get_rank() if dist.is_initialized() else 0

    def _prepare(self, sample):
        sample = super()._prepare(sample)
        if self.nan_input_at == (self._rank(), self.step_count):
            sample["x"] = sample["x"].clone()
            sample["x"][0, 0, 0, 0] = float("nan")
        return sample

    def _guarded_step(self):
        if self.inf_grad_at == (self._rank(), self.step_count):
            next(p for p in self.model.parameters() if p.grad is not None).grad.view(-1)[0] = float("inf")
        before = weight_digest(self.model)
        batch = dict(self._batch)  # this rank's batch: its loss (NaN when not finite) and sample count
        super()._guarded_step()
        self.records.append(dict(step=self.step_count, digest=state_digest(self.model, self._optimizer_in_epoch,
                                                                             self.scaler),
                                 changed=weight_digest(self.model) != before, phase=self.phase_index,
                                 skipped=self.scaler.last_step_skipped, epoch=self.epoch, loss=batch["loss"],
                                 finite=batch["finite"], samples=batch["samples"]))
        self.step_count += 1

    def resume_state_from_dir(self, save_dir):
        super().resume_state_from_dir(save_dir)
        self.step_count = self.scaler.total_steps  # the injected faults stay at their steps of the whole run
        self.resumed_digest = state_digest(self.model, self.optimizer, self.scaler)

    def checkpoint(self, save_dir):
        super().checkpoint(save_dir)
        if self.kill_after_epoch == self.epoch:
            raise SimulatedKill


def _loaders(world_size, rank):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(N_TRAIN, 1, SIZE, SIZE, generator=gen)
    y = torch.tanh(x) + 0.5 * x.roll(1, dims=-1)
    data = DictDataset(x, y)
    sampler = torch.utils.data.DistributedSampler(data, num_replicas=world_size, rank=rank, seed=0) \
        if world_size > 1 else None
    train = torch.utils.data.DataLoader(data, batch_size=BATCH, sampler=sampler, shuffle=sampler is None)
    test = {"16": torch.utils.data.DataLoader(DictDataset(x[:8], y[:8]), batch_size=4)}
    return train, test


def _train(world_size, rank, n_epochs=2, save_dir=None, resume_from_dir=None, **trainer_attrs):
    torch.manual_seed(1234 + rank)  # ranks' global RNGs differ, as with upstream's setup(): nothing may use them
    model = tiny_fno(seed=0)
    optimizer = TensorGRaD(model.parameters(), lr=1e-2, rank=0.5, sparse_ratio=0.1, sparse_type="randk",
                           update_proj_gap=2, min_params=100)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    trainer = RecordingTrainer(model=model, n_epochs=n_epochs, precision_schedule=SCHEDULE,
                               half_dtype="bfloat16", loss_scaling="dynamic", use_distributed=world_size > 1)
    for key, value in trainer_attrs.items():
        setattr(trainer, key, value)
    train, test = _loaders(world_size, rank)
    try:
        trainer.train(train, test, optimizer, scheduler, training_loss=loss(), eval_losses={"l2": loss()},
                      save_every=1 if save_dir else None, save_dir=save_dir or "./ckpt",
                      resume_from_dir=resume_from_dir)
    except SimulatedKill:
        pass
    compressed = [sorted(s) for s in optimizer.state.values() if bool(s["compressed"])]
    return dict(records=trainer.records, resumed=getattr(trainer, "resumed_digest", None), compressed=compressed, history=trainer.history,
                final=state_digest(model, optimizer, trainer.scaler), skipped=trainer.scaler.skipped_steps)


def _worker(rank, world_size, port, out_dir, kwargs, job=None):
    """``job(world_size, rank, **kwargs)`` (default :func:`_train`) on one gloo rank; its result
    saved as ``rank{rank}.pt`` in ``out_dir``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    # a rank left waiting in a collective fails the test after a minute instead of hanging CI
    dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=60))
    try:
        result = (job or _train)(world_size, rank, **kwargs)
    finally:
        dist.destroy_process_group()
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(tmp_path, world_size=2, **kwargs):
    """Train on ``world_size`` spawned gloo ranks; the result dict of each rank."""
    out = tmp_path / f"out_{len(list(tmp_path.iterdir()))}"
    out.mkdir()
    mp.start_processes(_worker, args=(world_size, _free_port(), str(out), kwargs), nprocs=world_size, join=True,
                       start_method=_START_METHOD)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world_size)]


FAULTS = dict(inf_grad_at=(1, 3), nan_input_at=(0, 5), n_epochs=3)


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory):
    """The uninterrupted 3-epoch 2-rank run with one-rank faults, checkpointing every epoch."""
    tmp_path = tmp_path_factory.mktemp("whole")
    return run_ranks(tmp_path, save_dir=str(tmp_path / "ckpt"), **FAULTS)


def test_two_ranks_stay_bitwise_identical_through_refreshes_phase_change_and_one_rank_faults(whole_run):
    """Step 3: inf in rank 1's gradient after DDP's all-reduce; step 5: NaN in rank 0's
    batch (its loss is NaN; it must still join the all-reduce). Both steps are skipped
    on both ranks, every other step changes the weights, and after every step the two
    ranks' weights, optimizer state and scaler state hash the same."""
    r0, r1 = whole_run
    assert len(r0["records"]) == len(r1["records"]) == 12
    for a, b in zip(r0["records"], r1["records"]):
        assert a["digest"] == b["digest"], f"ranks differ after step {a['step']}"
        assert a["skipped"] == b["skipped"] == (a["step"] in (3, 5))
        assert a["changed"] == (a["step"] not in (3, 5))
    assert r0["skipped"] == r1["skipped"] == 2
    assert [r["phase"] for r in r0["records"]] == [0] * 4 + [1] * 8
    assert [h["precision"] for h in r0["history"]] == ["mixed", "full", "full"]
    # both TensorGRaD parts hold state (3 spectral-sized weights compressed)
    assert r0["compressed"] and all("sparse_exp_avg" in keys and "low_rank_exp_avg" in keys
                                    for keys in r0["compressed"])


def test_recorded_training_loss_is_over_every_ranks_batches_and_the_same_on_both_ranks(whole_run):
    """Each rank trains on its own shard (different losses; rank 0's NaN batch at step 5 is left
    out): every epoch's ``train_loss`` (the mean over the samples of the batches with a finite
    loss) and ``train_err`` (the mean over those batches) are those of both ranks' batches
    together, the same on both ranks, as the evaluation's metrics are."""
    r0, r1 = whole_run
    losses = [[(h["train_loss"], h["train_err"]) for h in r["history"]] for r in (r0, r1)]
    assert losses[0] == losses[1] and len(losses[0]) == 3
    for record in r0["history"]:
        batches = [b for r in (r0, r1) for b in r["records"] if b["epoch"] == record["epoch"] and b["finite"]]
        own = [[b["loss"] for b in r["records"] if b["epoch"] == record["epoch"] and b["finite"]] for r in (r0, r1)]
        assert sum(own[0]) / len(own[0]) != sum(own[1]) / len(own[1])  # the shards' losses differ
        loss_sum = sum(b["loss"] for b in batches)
        assert record["train_loss"] == pytest.approx(loss_sum / sum(b["samples"] for b in batches), rel=1e-12)
        assert record["train_err"] == pytest.approx(loss_sum / len(batches), rel=1e-12)
    assert len([b for b in r0["records"] if b["epoch"] == 1 and b["finite"]]) == 3  # step 5's NaN left out


def test_two_rank_run_killed_after_a_checkpoint_resumes_on_two_ranks_bitwise_and_on_one_rank(tmp_path, whole_run):
    """A 3-epoch 2-rank run stopped right after its epoch-1 checkpoint (rank 0 wrote it,
    with TensorGRaD's compressed state, the scaler and the schedule position) resumes
    on 2 ranks and ends bitwise equal to the uninterrupted 2-rank run; it also resumes
    on 1 rank from exactly the saved state and finishes the run."""
    whole = whole_run
    killed = run_ranks(tmp_path, save_dir=str(tmp_path / "ckpt"), kill_after_epoch=1, **FAULTS)
    assert [len(r["records"]) for r in killed] == [8, 8]
    assert [r["digest"] for r in killed[0]["records"]] == [r["digest"] for r in whole[0]["records"][:8]]
    shutil.copytree(tmp_path / "ckpt", tmp_path / "ckpt_one_rank")

    resumed = run_ranks(tmp_path, save_dir=str(tmp_path / "ckpt"), resume_from_dir=str(tmp_path / "ckpt"), **FAULTS)
    for rank in (0, 1):
        assert resumed[rank]["resumed"] == killed[rank]["records"][-1]["digest"]
        assert [r["digest"] for r in resumed[rank]["records"]] == [r["digest"] for r in whole[rank]["records"][8:]]
        assert resumed[rank]["final"] == whole[rank]["final"]
    assert [h["phase"] for h in resumed[0]["history"]] == [h["phase"] for h in whole[0]["history"]] == [0, 1, 1]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = _train(1, 0, n_epochs=3, resume_from_dir=str(tmp_path / "ckpt_one_rank"))
    finally:
        torch.set_num_threads(threads)
    assert one["resumed"] == killed[0]["records"][-1]["digest"]
    assert len(one["records"]) == N_TRAIN // BATCH  # the last epoch, all the data on one rank
    assert [h["epoch"] for h in one["history"]] == [0, 1, 2] and one["history"][-1]["precision"] == "full"
    assert all(not r["skipped"] and r["changed"] for r in one["records"])


def _collectives_worker(rank, world_size, port, out_dir, _):
    from neuralop_mp.training import distributed

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=60))
    result = {}
    try:
        result["any"] = [distributed.any_rank(rank == 1), distributed.any_rank(False)]
        result["mean"] = distributed.mean_over_ranks({"l2": torch.tensor(float(rank)), "name": "x"})
        distributed.check_same_on_all_ranks(n_epochs=4)
        try:
            distributed.check_same_on_all_ranks(n_epochs=4, batches_per_epoch=3 + rank)
        except ValueError as err:
            result["error"] = str(err)
    finally:
        dist.destroy_process_group()
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))


def test_collectives_agree_across_ranks_and_disagreement_is_named(tmp_path):
    """One rank's flag is every rank's; metrics are averaged; ranks with different
    numbers of batches get a ValueError naming the value of each rank (instead of a
    run where one rank waits forever in a collective)."""
    out = tmp_path / "out"
    out.mkdir()
    mp.start_processes(_collectives_worker, args=(2, _free_port(), str(out), None), nprocs=2, join=True,
                       start_method=_START_METHOD)
    for rank in (0, 1):
        result = torch.load(out / f"rank{rank}.pt", weights_only=False)
        assert result["any"] == [True, False]
        assert result["mean"] == {"l2": 0.5, "name": "x"}
        assert "batches_per_epoch per rank = [3, 4]" in result["error"] and "n_epochs" not in result["error"]


def test_outside_a_process_group_the_helpers_are_local_and_bad_backends_are_refused():
    from neuralop_mp.training import distributed

    assert distributed.any_rank(True) is True and distributed.any_rank(0) is False
    assert distributed.mean_over_ranks({"l2": 0.25}) == {"l2": 0.25}
    assert distributed.world_size() == 1 and distributed.rank() == 0
    with pytest.raises(ValueError, match=r"backend='mpi'.*\['gloo', 'nccl'\]"):
        distributed.init_from_env("mpi")


def test_a_group_joined_from_torchruns_environment_is_left_at_exit(monkeypatch):
    """A rank that exits with its gloo group alive can abort in the interpreter's teardown
    ("terminate called without an active exception"; seen once in CI's torchrun test); the group
    init_from_env joins is destroyed by an exit hook, and one the caller destroyed is left alone."""
    from neuralop_mp.training import distributed

    hooks = []
    monkeypatch.setattr(distributed.atexit, "register", hooks.append)
    monkeypatch.setattr(distributed.atexit, "unregister", lambda hook: hooks.remove(hook) if hook in hooks else None)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    try:
        assert distributed.init_from_env("gloo") == torch.device("cpu") and dist.is_initialized()
        assert len(hooks) == 1
        hooks[0]()  # what the interpreter runs at exit
        assert not dist.is_initialized()
        hooks[0]()  # a group the script destroyed itself: nothing left to do, no error
        monkeypatch.setenv("MASTER_PORT", str(_free_port()))  # a fresh store: the last one's port may linger
        distributed.init_from_env("gloo")  # joined again: still one hook
        assert len(hooks) == 1 and dist.is_initialized()
        hooks[0]()
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _auto_worker(rank, world_size, port, out_dir, _):
    from neuralop_mp import MixedPrecisionFNO, get_precision
    from neuralop_mp.diagnose.auto import agree_across_ranks, calibrate_precision

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=60))
    try:
        torch.manual_seed(0)
        model = MixedPrecisionFNO(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2,
                                  fno_block_precision="mixed", half_dtype="float16")
        grid = torch.linspace(0, 1, 16)
        x = (torch.sin(2 * torch.pi * grid)[:, None] * torch.cos(2 * torch.pi * grid)[None, :]).expand(2, 1, 16, 16)
        # rank 1's shard overflows float16 without tanh; rank 0's is harmless
        own_decision = calibrate_precision(model, x * (1e6 if rank == 1 else 1.0))
        own = own_decision["fno_block_precision"]
        not_applied = agree_across_ranks(model, own_decision, apply=False)["fno_block_precision"]
        kept = get_precision(model)[0]
        agreed = agree_across_ranks(model, own_decision)
        result = {"own": own, "agreed": agreed["fno_block_precision"], "per_rank": agreed["per_rank"],
                  "model": get_precision(model)[0], "recorded": model.precision_decision["fno_block_precision"],
                  "not_applied": not_applied, "kept": kept}
    finally:
        dist.destroy_process_group()
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))


def test_auto_precision_decided_on_different_shards_is_the_most_precise_on_every_rank(tmp_path):
    """Under DDP each rank calibrates "auto" on its own shard: a rank whose data would
    overflow float16 decides "full", and every rank then runs "full" (one model, one precision)."""
    out = tmp_path / "out"
    out.mkdir()
    mp.start_processes(_auto_worker, args=(2, _free_port(), str(out), None), nprocs=2, join=True,
                       start_method=_START_METHOD)
    results = [torch.load(out / f"rank{rank}.pt", weights_only=False) for rank in (0, 1)]
    assert [r["own"] for r in results] == ["mixed", "full"]
    for r in results:
        assert r["agreed"] == r["model"] == r["recorded"] == "full"
        assert r["per_rank"] == ["mixed", "full"]
        # apply=False agrees the same way but leaves the layers in the rank's own choice
        assert r["not_applied"] == "full" and r["kept"] == r["own"]
