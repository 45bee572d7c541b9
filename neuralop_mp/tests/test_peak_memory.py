"""PeakTensorBytes: the peak of live tensor bytes, not a sum; freed gradients show."""
import torch

from neuralop_mp.optim.update_in_backward import enable_update_in_backward
from neuralop_mp.peak_memory import PeakTensorBytes


def test_peak_counts_only_tensors_alive_at_the_same_time():
    a = torch.randn(1000)  # baseline: 4000 bytes
    with PeakTensorBytes(alive=[a]) as meter:
        b = a * 2            # +4000
        c = torch.cat([b, b])  # +8000 -> 16000 live with a
        view = c[:10]        # at the peak: a view shares c's storage, not counted again
        del b, c             # -4000 (c's storage lives on in the view)
        d = a + 1            # +4000: 16000 again, not above the earlier peak
    assert meter.baseline_bytes == 4000
    assert meter.peak_bytes == 4000 + 4000 + 8000
    assert view.untyped_storage().nbytes() == 8000


def test_views_of_tensors_alive_before_the_block_are_not_counted_again():
    weight = torch.randn(64, 64, dtype=torch.complex64)  # 32768 bytes
    with PeakTensorBytes(alive=[weight]) as meter:
        real = torch.view_as_real(weight)  # a view: nothing allocated
        alias = weight[:32].t()
        out = real.sum()  # 4 bytes
    assert meter.peak_bytes == 32768 + out.untyped_storage().nbytes()
    assert alias.untyped_storage().nbytes() == 32768


def test_update_in_backward_lowers_the_measured_peak():
    """Gradients of wide layers dominate; freed during backward, they never coexist."""
    peaks = {}
    for in_backward in (False, True):
        torch.manual_seed(0)
        model = torch.nn.Sequential(*[torch.nn.Linear(256, 256) for _ in range(6)])
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
        if in_backward:
            enable_update_in_backward(optimizer)
        x = torch.randn(2, 256)
        with PeakTensorBytes(alive=[list(model.parameters())]) as meter:
            optimizer.zero_grad(set_to_none=True)
            model(x).square().mean().backward()
            optimizer.step()
        peaks[in_backward] = meter.peak_bytes
    grad_bytes = sum(p.numel() * 4 for p in model.parameters())
    # the ordinary step holds every gradient at the end of backward; update in backward about one
    assert peaks[False] - peaks[True] > 0.7 * grad_bytes, peaks


def test_describe_lists_the_tensors_alive_at_the_peak():
    """The list is taken at the peak, not at the end: a tensor freed after the peak is in
    it, one allocated later (below the peak) is not, and a baseline tensor never is."""
    a = torch.randn(1000)
    with PeakTensorBytes(alive=[a], describe=True) as meter:
        b = torch.zeros(300, dtype=torch.float64)   # 2400 bytes
        c = torch.cat([a, a])                        # 8000 bytes: the peak, with b
        del c
        d = torch.ones(10, dtype=torch.int32)        # 40 bytes, after the peak
    assert meter.peak_bytes == 4000 + 2400 + 8000
    assert [(n, shape, dtype) for n, _, shape, dtype in meter.peak_tensors] == [
        (8000, (2000,), "float32"), (2400, (300,), "float64")]
    assert "cat" in meter.peak_tensors[0][1] and "zeros" in meter.peak_tensors[1][1]
    del b, d  # alive until here, so the listing above was taken with them


def test_phases_of_one_block_live_bytes_and_restarted_peaks():
    """live_bytes is what the block allocated and still holds; restart_peak measures the
    next phase's peak from the current total, not from zero and not from the old peak."""
    with PeakTensorBytes() as meter:
        a = torch.ones(1000)                 # 4000 bytes, kept
        t = torch.ones(2000)                 # 8000 bytes, freed: phase one's peak 12000
        del t
        first, live = meter.peak_so_far, meter.live_bytes
        meter.restart_peak()
        b = torch.ones(500, dtype=torch.float64)  # 4000 more on top of a: phase two's peak 8000
        second = meter.peak_so_far
    assert (first, live, second) == (12000, 4000, 8000)
    assert meter.peak_bytes == 8000  # a and b, locals, stay alive to the end


def test_a_restarted_peak_describes_the_new_phase():
    """With describe, the tensors listed are those at the last phase's peak: when that
    phase never rises above where it started, those alive at the restart."""
    with PeakTensorBytes(describe=True) as meter:
        big = torch.ones(3000)   # 12000 bytes: the first phase's peak
        del big
        kept = torch.ones(10, dtype=torch.float64)  # 80 bytes
        meter.restart_peak()
        tiny = torch.ones(1, dtype=torch.int8)      # 1 byte more
        del tiny
    assert [(n, shape) for n, _, shape, _ in meter.peak_tensors] == [(80, (10,)), (1, (1,))]
    assert meter.peak_bytes == 81  # kept, a local, stays alive to the end
