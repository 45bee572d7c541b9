"""average_gradients on 2 gloo ranks (CPU, forked): a gradient alone in its bucket (any larger
than a bucket) is reduced on its own storage, not through a packed copy of itself; gradients
sharing a bucket are packed into one all-reduce. Both give the mean over the ranks."""
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from neuralop_mp.peak_memory import PeakTensorBytes
from neuralop_mp.training import distributed

from .test_distributed import _START_METHOD, _free_port, _worker

BUCKET_BYTES = 2 ** 16  # the buckets' size in these ranks: DDP's 25 MiB would only slow the test
# one complex32 element more than a bucket holds (4 bytes each): alone in its bucket whatever comes next
LARGE = BUCKET_BYTES // 4 + 1
SMALL = 1000
SIZES = (SMALL, SMALL, LARGE)  # the two small ones share a bucket


def _gradient(rank, index):
    gen = torch.Generator().manual_seed(10 * rank + index)
    return torch.view_as_complex(torch.randn(SIZES[index], 2, generator=gen)).to(torch.complex32)


def _average_job(world_size, rank):
    """Average two small complex32 gradients and a large one; record each all-reduce's bytes
    and whether it ran on the large gradient's own storage, and the peak of live tensor bytes."""
    params = [torch.nn.Parameter(torch.zeros(n, dtype=torch.complex32)) for n in SIZES]
    for index, p in enumerate(params):
        p.grad = _gradient(rank, index)
    large_storage = params[2].grad.untyped_storage().data_ptr()
    calls, all_reduce, bucket_bytes = [], dist.all_reduce, distributed._BUCKET_BYTES

    def recording(tensor, *args, **kwargs):
        calls.append((tensor.numel() * tensor.element_size(), tensor.untyped_storage().data_ptr() == large_storage))
        return all_reduce(tensor, *args, **kwargs)

    dist.all_reduce, distributed._BUCKET_BYTES = recording, BUCKET_BYTES
    try:
        with PeakTensorBytes(alive=[params, [p.grad for p in params]]) as meter:
            distributed.average_gradients(params)
    finally:
        dist.all_reduce, distributed._BUCKET_BYTES = all_reduce, bucket_bytes
    return dict(calls=calls, added=meter.peak_bytes - meter.baseline_bytes,
                grads=[torch.view_as_real(p.grad).clone() for p in params])


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
def test_a_gradient_larger_than_a_bucket_is_averaged_in_place_and_small_ones_share_one_all_reduce(tmp_path):
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path), {}, _average_job), nprocs=2, join=True,
                       start_method=_START_METHOD)
    r0, r1 = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    large_bytes = LARGE * 4
    # the presence flags; the two small gradients packed together; the large one on its own storage
    calls = [(3 * 4, False), (2 * SMALL * 4, False), (large_bytes, True)]
    # the step's extra memory: the small bucket's packed copy (and the flags), not a copy of the large gradient
    assert 2 * SMALL * 4 <= r0["added"] <= 2 * SMALL * 4 + 64 < large_bytes, (r0["added"], large_bytes)
    assert r0["calls"] == r1["calls"] == calls
    for index in range(len(SIZES)):
        assert torch.equal(r0["grads"][index], r1["grads"][index]), index
        mean = (torch.view_as_real(_gradient(0, index)).double() + torch.view_as_real(_gradient(1, index)).double()) / 2
        error = (r0["grads"][index].double() - mean).abs()
        # on 2 ranks: one float16 rounding of the exact mean (the halving is exact above subnormals)
        assert (error <= 2.0 ** -11 * mean.abs() + 2.0 ** -23).all(), (index, error.max())
