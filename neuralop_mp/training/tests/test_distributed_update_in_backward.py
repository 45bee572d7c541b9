"""Update in backward is refused for any data-parallel model on 2 gloo ranks (CPU, forked): a
model the caller wrapped in DistributedDataParallel, with ``use_distributed=False``, as well as
``use_distributed=True``. Its hooks would step each rank with its own gradient, before DDP's
all-reduce, and the ranks' weights would part."""
import pytest
import torch
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

from neuralop_mp.training.trainer import MixedPrecisionTrainer

from .test_distributed import _START_METHOD, _free_port, _loaders, _worker, weight_digest
from .tiny import loss, tiny_fno


def _trainer(model, use_distributed, update_in_backward=True):
    return MixedPrecisionTrainer(model=model, n_epochs=1, precision_schedule=None, loss_scaling="none",
                                 use_distributed=use_distributed, update_in_backward=update_in_backward,
                                 verbose=False)


def _error(build):
    try:
        build()
    except ValueError as error:
        return str(error)
    return None


def _refusals_job(world_size, rank):
    torch.manual_seed(1234 + rank)
    model = tiny_fno(seed=0)
    wrapped = DistributedDataParallel(model)
    result = dict(wrapped=_error(lambda: _trainer(wrapped, use_distributed=False)),
                  use_distributed=_error(lambda: _trainer(tiny_fno(seed=0), use_distributed=True)))
    # a trainer built for a single process, handed the user's DDP model before train(): refused
    # there, before any step
    trainer = _trainer(tiny_fno(seed=0), use_distributed=False)
    trainer.model = wrapped
    before = weight_digest(model)
    optimizer = torch.optim.AdamW(wrapped.parameters(), lr=1e-2)
    train, test = _loaders(world_size, rank)
    result["at_train"] = _error(lambda: trainer.train(train, test, optimizer, None, training_loss=loss(),
                                                      eval_losses={"l2": loss()}))
    result["unchanged"] = weight_digest(model) == before
    return result


@pytest.fixture(scope="module")
def refusals(tmp_path_factory):
    out = tmp_path_factory.mktemp("uib_ddp")
    mp.start_processes(_worker, args=(2, _free_port(), str(out), {}, _refusals_job), nprocs=2, join=True,
                       start_method=_START_METHOD)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]


@pytest.mark.parametrize("case", ["wrapped", "use_distributed", "at_train"])
def test_update_in_backward_is_refused_on_every_rank_for_a_data_parallel_model(refusals, case):
    for result in refusals:
        message = result[case]
        assert message is not None, case
        # the message names what the caller gave: its own DDP model, or use_distributed on the ranks
        cause = "use_distributed=True on 2 ranks" if case == "use_distributed" else \
            "a model wrapped in DistributedDataParallel"
        assert message.startswith(f"update_in_backward=True cannot be combined with {cause} "), message
        if case == "at_train":
            assert result["unchanged"]
