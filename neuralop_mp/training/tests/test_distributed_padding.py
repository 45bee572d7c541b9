"""The training shard of 2 gloo ranks (CPU, forked): a training set whose size is no multiple of the
ranks is padded by the DistributedSampler, repeating samples; rank 0 says how many, once."""
import warnings

import pytest
import torch

from neuralop_mp.training import distributed

from .test_distributed_mends import _run_ranks


def _shard(world_size, rank, n_samples):
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.arange(n_samples)), batch_size=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shard = distributed.shard_loader(loader, seed=3)
    seen = torch.cat([batch for (batch,) in shard]).tolist()
    return dict(said=[str(w.message) for w in caught], seen=seen)


@pytest.fixture(scope="module")
def ranks_33(tmp_path_factory):
    return _run_ranks(tmp_path_factory.mktemp("pad33"), _shard, n_samples=33)


def test_rank_0_alone_says_how_many_samples_the_padding_repeats(ranks_33):
    """Before: 34 samples trained each epoch for 33, silently."""
    r0, r1 = ranks_33
    (message,) = r0["said"]
    assert message.startswith("1 of the 33 training samples are seen twice in every epoch: the DistributedSampler "
                              "pads the 33 samples to 34 (17 per rank on 2 ranks)"), message
    assert "a multiple of 2" in message
    assert r1["said"] == []
    # what the warning counts: the ranks' shards together hold every sample, and one of them twice
    seen = r0["seen"] + r1["seen"]
    assert len(seen) == 34 and sorted(set(seen)) == list(range(33))


def test_a_multiple_of_the_ranks_repeats_nothing_and_says_nothing(tmp_path):
    r0, r1 = _run_ranks(tmp_path, _shard, n_samples=32)
    assert r0["said"] == r1["said"] == []
    assert sorted(r0["seen"] + r1["seen"]) == list(range(32))


@pytest.mark.parametrize("n, ranks, repeated", [(33, 2, 1), (32, 2, 0), (10, 4, 2), (3, 8, 5), (1, 1, 0)])
def test_padded_samples_fills_up_to_the_next_multiple_of_the_ranks(n, ranks, repeated):
    assert distributed.padded_samples(n, ranks) == repeated
    assert (n + repeated) % ranks == 0 and 0 <= repeated < ranks
