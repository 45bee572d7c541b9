"""Warnings shown while a ``neuralop-mp`` command runs (all but ``run``): one ``[neuralop-mp] WARNING:``
line each on standard error (:mod:`neuralop_mp.warning_lines`), not Python's ``file.py:NNN: Category:``
display with its source line; Python's filters still decide which are shown, and a recording
(``pytest.warns``, ``recwarn``) still gets them.

pytest records every test's warnings (``catch_warnings(record=True)``), which the commands leave to it;
:func:`shown_by_python` sets that recording aside, so that a test sees what a terminal would."""
import re
import sys
import warnings
from contextlib import contextmanager

import pytest
import torch

from neuralop_mp import cli, train_pipeline
from neuralop_mp.warning_lines import warning_line, warnings_as_lines

from .test_train_pipeline import TINY_RUN, _four_random_samples_as_data

TINY_ARGS = [token for key, value in TINY_RUN.items() for token in (f"--{key}", value)]
# Python's display names the file and line: "/path/file.py:NNN: UserWarning: ..."
PYTHON_DISPLAY = re.compile(r"\.py:\d+: \w*Warning")
MISSING_MANIFEST = "is missing, though"


def _python_writer(message):
    """Python's own display of a warning (``file:line: Category: text`` and the source line), on the
    standard error of the moment (pytest's capture)."""
    sys.stderr.write(warnings._formatwarnmsg(message))


@contextmanager
def shown_by_python():
    """Warnings shown as in a process of their own (Python's display on standard error), pytest's
    recording of the test's warnings set aside until the block ends."""
    with warnings.catch_warnings():
        warnings.showwarning = warnings._showwarning_orig
        warnings._showwarnmsg_impl = _python_writer
        yield


def _train(out, *args):
    return cli.main(["train", "darcy", "--output_dir", str(out), "--threads", "1", *TINY_ARGS, *args])


def _run_without_manifest(monkeypatch, tmp_path, capsys):
    """A finished 1-epoch run whose checkpoint lost its manifest.pt (resumed, it warns that it
    cannot be verified: a RuntimeWarning deep in the package, checkpointing.py)."""
    _four_random_samples_as_data(monkeypatch)
    out = tmp_path / "run"
    assert _train(out, "--opt.n_epochs", "1") == 0
    (out / "checkpoint" / "manifest.pt").unlink()
    capsys.readouterr()
    return out


def test_a_warning_of_the_package_during_train_is_one_line_without_its_file_and_line(monkeypatch, tmp_path,
                                                                                     capsys):
    out = _run_without_manifest(monkeypatch, tmp_path, capsys)
    with shown_by_python():
        assert cli.main(["train", "--resume", str(out), "--opt.n_epochs", "2"]) == 0
    said = capsys.readouterr()
    lines = [line for line in said.err.splitlines() if MISSING_MANIFEST in line]
    assert len(lines) == 1 and lines[0].startswith(f"[neuralop-mp] WARNING: {out / 'checkpoint' / 'manifest.pt'} "
                                                   "is missing, though")
    assert lines[0].endswith("(as a format-1 checkpoint).")  # ours: no category nor origin appended
    assert not PYTHON_DISPLAY.search(said.err)  # was: ".../checkpointing.py:542: RuntimeWarning: ..." + source
    assert MISSING_MANIFEST not in said.out


def test_a_warning_of_another_package_is_one_line_naming_its_category_and_origin(monkeypatch, tmp_path, capsys):
    _four_random_samples_as_data(monkeypatch)
    build_losses = train_pipeline.build_losses

    def losses_after_a_torch_warning(config, dims):
        # torch's own warnings.warn (in torch/nn/_reduction.py, naming its caller in torch/nn/functional.py)
        torch.nn.functional.mse_loss(torch.ones(2), torch.zeros(2), size_average=True)
        return build_losses(config, dims)

    monkeypatch.setattr(train_pipeline, "build_losses", losses_after_a_torch_warning)
    with shown_by_python():
        assert _train(tmp_path / "run", "--opt.n_epochs", "1") == 0
    said = capsys.readouterr()
    lines = [line for line in said.err.splitlines() if "size_average" in line]
    assert len(lines) == 1
    assert re.fullmatch(r"\[neuralop-mp\] WARNING: size_average and reduce args will be deprecated, please use "
                        r"reduction='mean' instead\. \(UserWarning from torch/nn/\w+\.py:\d+\)", lines[0])
    assert not PYTHON_DISPLAY.search(said.err)


def test_an_error_filter_still_turns_a_warning_of_the_command_into_an_error(monkeypatch, tmp_path, capsys):
    out = _run_without_manifest(monkeypatch, tmp_path, capsys)
    with shown_by_python():
        warnings.simplefilter("error")  # python -W error
        with pytest.raises(RuntimeWarning, match=MISSING_MANIFEST):
            cli.main(["train", "--resume", str(out), "--opt.n_epochs", "2"])
        assert warnings.showwarning is warnings._showwarning_orig  # put back on the way out of the error too
    assert "[neuralop-mp] WARNING:" not in capsys.readouterr().err


def test_python_s_display_is_back_after_a_command_and_after_a_failed_one(monkeypatch, tmp_path, capsys):
    _four_random_samples_as_data(monkeypatch)
    with shown_by_python():
        assert _train(tmp_path / "run", "--opt.n_epochs", "1") == 0
        assert warnings.showwarning is warnings._showwarning_orig
        assert cli.main(["train", "no_such_config"]) != 0  # an error ends it
        assert warnings.showwarning is warnings._showwarning_orig
        warnings.warn("after the commands", UserWarning)
    said = capsys.readouterr().err
    assert re.search(r"test_warning_lines\.py:\d+: UserWarning: after the commands", said)
    assert "WARNING: after the commands" not in said


def test_run_leaves_the_scripts_warnings_to_python(tmp_path, capsys):
    script = tmp_path / "script.py"
    script.write_text("import warnings\nwarnings.warn('from the script', UserWarning)\n")
    with shown_by_python():
        assert cli.main(["run", str(script)]) == 0
    said = capsys.readouterr().err
    assert re.search(r"script\.py:2: UserWarning: from the script", said)
    assert "[neuralop-mp] WARNING: from the script" not in said


def test_a_recording_outside_the_command_still_gets_its_warnings(monkeypatch, tmp_path, capsys):
    """pytest.warns / recwarn around an in-process command: the warning is recorded, not printed."""
    out = _run_without_manifest(monkeypatch, tmp_path, capsys)
    with pytest.warns(RuntimeWarning, match=MISSING_MANIFEST):
        assert cli.main(["train", "--resume", str(out), "--opt.n_epochs", "2"]) == 0
    assert MISSING_MANIFEST not in capsys.readouterr().err


def test_a_recording_inside_the_command_gets_its_warnings_and_the_lines_come_back_after(capsys):
    with shown_by_python(), warnings_as_lines():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.warn("recorded", UserWarning)
        warnings.warn("shown", UserWarning)
    assert [str(w.message) for w in caught] == ["recorded"]
    said = capsys.readouterr().err
    assert "recorded" not in said and "[neuralop-mp] WARNING: shown" in said


def test_a_display_someone_set_is_kept(capsys):
    shown = []
    with warnings.catch_warnings():
        warnings.showwarning = lambda message, *args, **kwargs: shown.append(str(message))
        with warnings_as_lines():
            warnings.warn("to the caller's display", UserWarning)
    assert shown == ["to the caller's display"] and "WARNING" not in capsys.readouterr().err


def test_a_warning_of_several_lines_indents_the_lines_after_the_first():
    assert warning_line("first\nsecond\nthird") == "[neuralop-mp] WARNING: first\n    second\n    third"
