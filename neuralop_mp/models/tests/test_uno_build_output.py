"""What building a MixedPrecisionUNO prints: nothing unless ``verbose=True``.

Upstream's UNO prints its skips' names (``fno_skip='linear'`` ...) at every build whatever
``verbose``; between a run's tables of ``neuralop-mp train`` and ``eval`` those lines were noise.
"""
import pytest

from neuralop_mp import MixedPrecisionUNO

UNO_ARGS = dict(in_channels=1, out_channels=1, hidden_channels=4, n_layers=2, uno_out_channels=[4, 4],
                uno_n_modes=[[4, 4], [4, 4]], uno_scalings=[[1, 1], [1, 1]], channel_mlp_skip="linear")


@pytest.mark.parametrize("factorization", [None, "tucker"])
def test_a_quiet_build_prints_nothing_and_verbose_keeps_upstreams_lines(capsys, factorization):
    quiet = MixedPrecisionUNO(**UNO_ARGS, factorization=factorization, verbose=False)
    assert capsys.readouterr().out == ""
    loud = MixedPrecisionUNO(**UNO_ARGS, factorization=factorization, verbose=True)
    assert "fno_skip='linear'" in capsys.readouterr().out
    # the same model either way: only what is printed differs
    assert quiet.state_dict().keys() == loud.state_dict().keys()
