"""``bench spectral``: a crash of our layer fails the command; upstream's 16-bit modes crashing does not.

A crash in our layer was once written as a row's note ("crashes on CPU: IndexError ..."), the
command exited 0 and ``--update-docs`` put the row into the docs."""
import json

import pytest

from neuralop_mp.bench import spectral
from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv

TINY = dict(n_modes=(4, 4), hidden_channels=4, n_layers=1)
# upstream half crashes on a CPU (no half FFT): the table's note, not a failure
CHOSEN = ("upstream full", "upstream half", "ours full")


@pytest.fixture
def tiny_run(monkeypatch):
    """The whole run (as --update-docs takes it) at one tiny size with three variants; the docs'
    update recorded, never done (the real docs stay as they are whatever the code under test does)."""
    monkeypatch.setattr(spectral, "VARIANTS", [v for v in spectral.VARIANTS if v.name in CHOSEN])
    monkeypatch.setattr(spectral, "SIZES", [(16, 1)])
    monkeypatch.setattr(spectral, "MODEL", TINY)
    asked = []
    real = spectral.write_results

    def recording(name, body, data, out=None, update_docs=False, **kwargs):
        asked.append(update_docs)
        return real(name, body, data, out=out, update_docs=False, **kwargs)

    monkeypatch.setattr(spectral, "write_results", recording)
    return asked


def _main(tmp_path):
    return spectral.main(["--rounds", "1", "--threads", "1", "--update-docs", "--out", str(tmp_path)])


def test_a_crash_of_our_layer_fails_the_run_writes_the_rows_and_leaves_the_docs(tiny_run, tmp_path, monkeypatch,
                                                                              capsys):
    def broken(self, *args, **kwargs):
        raise IndexError("a bug in our layer")

    monkeypatch.setattr(MixedPrecisionSpectralConv, "forward", broken)
    assert _main(tmp_path) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["neuralop-mp bench spectral: error: FNO 16^2 batch 1 ours full: crashes on CPU: IndexError: a bug "
                   "in our layer (and 1 more row(s), each noted in the table); docs/benchmarks.md not updated"], err
    assert tiny_run == [False]  # the docs were not asked to take the table
    rows = {(r["model"], r["variant"]): r for r in json.loads((tmp_path / "spectral.json").read_text())["rows"]}
    assert "crashes on CPU: IndexError" in rows["TFNO", "ours full"]["note"]  # written all the same


def test_upstreams_own_half_mode_crashing_is_a_row_note_not_a_failure(tiny_run, tmp_path, capsys):
    assert _main(tmp_path) == 0
    assert "error" not in capsys.readouterr().err
    assert tiny_run == [True]
    rows = json.loads((tmp_path / "spectral.json").read_text())["rows"]
    half = [r for r in rows if r["variant"] == "upstream half"]
    assert len(half) == 2 and all(r["note"].startswith("crashes on CPU") for r in half)


def test_the_rule_fails_our_rows_and_the_references_only():
    row = dict(model="FNO", res=64, batch=2, note="crashes on CPU: RuntimeError: boom", failed="run")
    crashed = [dict(row, variant=name) for name in ("upstream mixed", "upstream half", "upstream + autocast bfloat16")]
    assert spectral.unexpected_failures(crashed) == []
    for name in ("upstream full", spectral.FLOOR, spectral.OURS_FLOOR, "ours mixed bfloat16 + recompute block"):
        assert spectral.unexpected_failures(crashed + [dict(row, variant=name)]) == [
            f"FNO 64^2 batch 2 {name}: crashes on CPU: RuntimeError: boom"]
    # a row timed on its warm-up step only carries a note too, and is no crash
    slow = dict(model="FNO", res=64, batch=2, variant="ours mixed bfloat16 + autocast", note="one step only")
    assert spectral.unexpected_failures([slow]) == []
