"""An explicit "no stabilizer" is honoured: the request "off" (``--model.stabilizer none`` and
``--mp.stabilizer none`` typed on a command line) runs float16 "half" without tanh, where None
(unset, a config's "None") keeps meaning the mode's default, tanh."""
import json

import neuralop
import pytest
import torch

import neuralop_mp
from neuralop_mp import build_steps, cli, option_check
from neuralop_mp.configs import load_config
from neuralop_mp.diagnose.recommend import train_flags
from neuralop_mp.layers.precision_switch import get_precision, mixed_precision_layers
from neuralop_mp.models import MixedPrecisionFNO
from neuralop_mp.precision_policy import PrecisionPolicy
from neuralop_mp.run_folder import COMMAND_FILE, load_model_and_precision
from neuralop_mp.runner import cli as run_cli
from neuralop_mp.runner import activation, intercept

from .test_eval_and_best import TINY_ARGS, train_tiny
from .test_train_pipeline import _four_random_samples_as_data

HALF_FP16 = {"fno_block_precision": "half", "half_dtype": "float16"}


def _tiny_model_config(**model):
    return {"model": {"model_arch": "fno", "n_modes": [4, 4], "hidden_channels": 4, "n_layers": 2,
                      "data_channels": 1, "out_channels": 1, **model}}


def _stabilizers(model):
    """The stabilizer of every FNOBlocks and of every spectral layer of ``model``."""
    return ({model.fno_blocks.stabilizer}, {layer.stabilizer for layer in mixed_precision_layers(model)})


def test_the_policy_keeps_off_apart_from_unset_and_resolves_it_to_none():
    off = PrecisionPolicy(**HALF_FP16, stabilizer="off")
    assert off.stabilizer == "off" and PrecisionPolicy(**HALF_FP16, stabilizer="none").stabilizer is None
    assert off.with_mode_stabilizer("cpu").stabilizer is None
    assert PrecisionPolicy(**HALF_FP16).with_mode_stabilizer("cpu").stabilizer == "tanh"  # unset: the default
    with pytest.raises(ValueError, match=r"^Invalid model\.stabilizer='tahn'; allowed values: None \(unset: the "
                                         r"mode's default; typed on a command line, none is 'off'\), 'off', 'tanh'\.$"):
        PrecisionPolicy.from_config({"stabilizer": "tahn"})


def test_get_model_builds_half_float16_without_tanh_for_off_and_with_it_when_unset():
    off = neuralop_mp.get_model(_tiny_model_config(**HALF_FP16, stabilizer="off"))
    assert _stabilizers(off) == ({None}, {None}) and get_precision(off)[2] is None
    unset = neuralop_mp.get_model(_tiny_model_config(**HALF_FP16, stabilizer="None"))  # upstream's spelling
    assert _stabilizers(unset) == ({"tanh"}, {None})  # the block applies it, once per forward FFT
    # upstream's own layer (mixed_precision_layer=False) gets None, never "off"
    upstream = neuralop_mp.get_model(_tiny_model_config(stabilizer="off"), mixed_precision_layer=False)
    assert type(upstream).__name__ == "FNO" and upstream.fno_blocks.stabilizer is None


def test_a_block_holding_off_reads_as_applying_none():
    # "off" set on a block after building (upstream's FNOBlocks take any value; they apply tanh only for
    # "tanh"): get_precision says what runs, None, not "off"
    model = MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1,
                              **HALF_FP16)
    model.fno_blocks.stabilizer = "off"
    assert get_precision(model)[2] is None


def test_models_and_layers_built_directly_take_off_as_none():
    model = MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1,
                              **HALF_FP16, stabilizer="off")
    assert _stabilizers(model) == ({None}, {None})
    assert model.precision_policy.stabilizer is None
    neuralop_mp.set_precision(model, "half", stabilizer="tanh")
    neuralop_mp.set_precision(model, "half", stabilizer="off")
    assert _stabilizers(model) == ({None}, {None})
    layer = neuralop_mp.MixedPrecisionSpectralConv(2, 2, (4, 4), stabilizer="off")
    assert layer.stabilizer is None
    with pytest.raises(ValueError, match=r"Invalid stabilizer='tahn'; allowed values: None, 'off', 'tanh'\."):
        neuralop_mp.MixedPrecisionSpectralConv(2, 2, (4, 4), stabilizer="tahn")


def test_a_checkpoint_of_off_records_none_and_loads_without_tanh(tmp_path):
    model = MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1,
                              **HALF_FP16, stabilizer="off")
    model.save_checkpoint(tmp_path, "model")
    metadata = torch.load(tmp_path / "model_metadata.pkl", weights_only=False)
    assert metadata["stabilizer"] is None  # records as before: layers store None or "tanh"
    loaded = neuralop_mp.load_model(tmp_path, "model")
    assert _stabilizers(loaded) == ({None}, {None})
    # "off" given at load time, over a record of tanh, into the plugin's class and into upstream's
    tanh = MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1,
                             **HALF_FP16, stabilizer="tanh")
    tanh.save_checkpoint(tmp_path, "tanh")
    assert _stabilizers(neuralop_mp.load_model(tmp_path, "tanh", precision_policy={"stabilizer": "off"})) == (
        {None}, {None})
    # a record holding "off" (the request, as a policy may carry it) reads as None, upstream's class included
    record = torch.load(tmp_path / "tanh_metadata.pkl", weights_only=False)
    torch.save({**record, "stabilizer": "off"}, tmp_path / "tanh_metadata.pkl")
    assert _stabilizers(neuralop_mp.load_model(tmp_path, "tanh")) == ({None}, {None})
    with pytest.warns(UserWarning, match="runs in full precision"):  # its half mode is not upstream's
        upstream = neuralop_mp.load_model(tmp_path, "tanh", model_class="fno")
    assert type(upstream).__name__ == "FNO" and upstream.fno_blocks.stabilizer is None


def test_a_constant_schedule_runs_none_for_off_and_the_mode_default_when_unset():
    (off,) = build_steps.precision_schedule(None, PrecisionPolicy(**HALF_FP16, stabilizer="off"))
    assert off.stabilizer is None and off.stabilizer_for(torch.float16) is None and str(off) == "half/notanh"
    (unset,) = build_steps.precision_schedule(None, PrecisionPolicy(**HALF_FP16))
    assert unset.stabilizer == "auto" and unset.stabilizer_for(torch.float16) == "tanh"


def test_the_runner_reads_a_typed_none_as_off_and_builds_the_model_and_schedule_without_tanh():
    _, options, _ = run_cli.parse_args(["t.py", "--mp.precision", "half", "--mp.half_dtype", "float16",
                                        "--mp.stabilizer", "none"])
    assert options["stabilizer"] == "off"
    checked = run_cli._checked_options(options)
    (phase,) = intercept.trainer_schedule(checked)
    assert phase.stabilizer_for(torch.float16) is None
    config = intercept.plugin_config(_tiny_model_config(), checked)
    model = neuralop_mp.get_model(config, precision_policy=build_steps.precision_policy(config))
    assert _stabilizers(model) == ({None}, {None})
    with pytest.raises(run_cli.UsageError, match=r"Invalid --mp\.stabilizer='tahn'; allowed values: 'none', "
                                                 r"'off' \(both: no stabilizer\), 'tanh'\."):
        run_cli.parse_args(["t.py", "--mp.stabilizer", "tahn"])


# enable's stabilizer is an explicit keyword (its default None: not given): a string spelling of None
# asks for none, as `--mp.stabilizer none` does, and "off" is read in any case
@pytest.mark.parametrize("off", ["off", "none", "None", "null", "OFF", "Off"])
def test_enable_off_builds_and_trains_a_step_without_tanh_and_notes_the_risk_once(off):
    from neuralop.losses import LpLoss

    with neuralop_mp.enabled(precision="half", half_dtype="float16", stabilizer=off) as report:
        model = neuralop.get_model(_tiny_model_config())
        trainer = neuralop.Trainer(model=model, n_epochs=1, device="cpu")
        batch = [{"x": torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)),
                  "y": torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))}]
        trainer.train(batch, {}, torch.optim.AdamW(model.parameters()), None, training_loss=LpLoss(d=2),
                      eval_losses={})
    assert report.options["stabilizer"] == "off"
    assert _stabilizers(model) == ({None}, {None})
    assert [phase.stabilizer for phase in trainer.precision_schedule] == [None]
    assert [(h["precision"], h["stabilizer"]) for h in trainer.history] == [("half", None)]
    (note,) = [n for n in report.notes if "stabilizer" in n]
    assert note.startswith("stabilizer none, as stabilizer asks: no tanh before the FFTs of the float16 'half' run")
    with neuralop_mp.enabled(precision="half", half_dtype="float16") as report:  # unset: tanh, nothing to note
        model = neuralop.get_model(_tiny_model_config())
    assert _stabilizers(model) == ({"tanh"}, {None}) and not report.notes


def test_typed_none_is_off_on_the_train_command_line_and_a_config_none_stays_the_default():
    assert option_check.parse_typed_overrides(["--model.stabilizer", "none"]) == {"model.stabilizer": "off"}
    # a resume replays the run's recorded overrides: an older run's "none" meant the default, and stays it
    assert option_check.parse_typed_overrides(["--model.stabilizer", "none"], typed=[]) == {
        "model.stabilizer": "none"}
    config = load_config("darcy", {"model.stabilizer": "none", "model.fno_block_precision": "half",
                                   "model.half_dtype": "float16"})
    assert build_steps.precision_policy(config).with_mode_stabilizer("cpu").stabilizer == "tanh"


def test_diagnose_reads_a_typed_none_as_train_does():
    from neuralop_mp.diagnose.cli import _load_config

    half = ["--model.fno_block_precision", "half", "--model.half_dtype", "float16"]
    typed = _load_config("darcy", [*half, "--model.stabilizer", "none"])
    assert typed.model.stabilizer == "off"
    assert _stabilizers(neuralop_mp.get_model(typed, mixed_precision_layer=True)) == ({None}, {None})
    # not typed: the config's None, the mode's default (tanh in float16 "half")
    unset = neuralop_mp.get_model(_load_config("darcy", half), mixed_precision_layer=True)
    assert _stabilizers(unset) == ({"tanh"}, {None})


def test_train_with_a_typed_none_runs_half_float16_without_tanh_records_it_and_a_resume_keeps_it(
        monkeypatch, tmp_path, capsys):
    _four_random_samples_as_data(monkeypatch)
    out = tmp_path / "run"
    assert cli.main(["train", "darcy", "--output_dir", str(out), "--opt.n_epochs", "1", "--threads", "1",
                     *TINY_ARGS, "--model.fno_block_precision", "half", "--model.half_dtype", "float16",
                     "--model.stabilizer", "none"]) == 0
    printed = capsys.readouterr().out
    assert "| stabilizer" in printed and "none, as model.stabilizer asks" in printed
    assert printed.count("as model.stabilizer asks") == 2  # the run's note, then the summary's row
    command = json.loads((out / COMMAND_FILE).read_text())
    assert "off" in command["overrides"] and "none" not in command["overrides"]
    results = json.loads((out / "results.json").read_text())
    assert [(p["mode"], p["stabilizer"]) for p in results["precision"]["phases"]] == [("half", None)]
    model, precision = load_model_and_precision(out)
    assert precision["stabilizer"] is None and _stabilizers(model) == ({None}, {None})

    assert cli.main(["train", "--resume", str(out), "--opt.n_epochs", "2", "--threads", "1"]) == 0
    capsys.readouterr()
    history = json.loads((out / "results.json").read_text())["history"]
    assert [(h["epoch"], h["precision"], h["stabilizer"]) for h in history] == [(0, "half", None), (1, "half", None)]
    assert cli.main(["eval", str(out)]) == 0
    assert "half+autocast (half_dtype float16)" in capsys.readouterr().out  # no +tanh


def test_no_warning_for_a_stabilizer_every_phase_runs_anyway_and_one_where_it_is_not_applied():
    for model in ({"fno_block_precision": "mixed", "half_dtype": "bfloat16", "stabilizer": None, "autocast": True},
                  {"fno_block_precision": "half", "half_dtype": "float16", "stabilizer": "tanh", "autocast": True}):
        flags = dict(zip(train_flags(model)[::2], train_flags(model)[1::2]))
        request = option_check.parse_typed_overrides(
            ["--model.stabilizer", flags["--model.stabilizer"]])["model.stabilizer"]
        assert build_steps.stabilizer_schedule_warning(request, flags["--opt.precision_schedule"],
                                                       model["half_dtype"]) is None, flags
    assert build_steps.stabilizer_schedule_warning("off", "half:0.5/notanh,full") is None
    assert "model.stabilizer='off' is not applied" in build_steps.stabilizer_schedule_warning("off", "half:0.5,full",
                                                                                             "float16")
    assert "model.stabilizer='tanh' is not applied" in build_steps.stabilizer_schedule_warning("tanh", "half:0.5,mixed")


def _train_tiny(out, *flags, epochs=1):
    """A one-batch darcy run in "half" (8x8 random samples: :func:`_four_random_samples_as_data`) in ``out``."""
    train_tiny(out, "--model.fno_block_precision", "half", *flags, epochs=epochs)


def test_eval_in_another_precision_keeps_the_stabilizer_the_run_asked_for(monkeypatch, tmp_path, capsys):
    from neuralop_mp.evaluate import run_evaluation

    _four_random_samples_as_data(monkeypatch)

    def evaluated(run, precision=None):  # the stabilizer the evaluation ran
        return run_evaluation(run, precision=precision, log=lambda *args: None)["precision"]["stabilizer"]

    off, tanh, unset, scheduled = (tmp_path / name for name in ("off", "tanh", "unset", "scheduled"))
    _train_tiny(off, "--model.half_dtype", "float16", "--model.stabilizer", "none")  # typed: "off"
    _train_tiny(tanh, "--model.half_dtype", "bfloat16", "--model.stabilizer", "tanh")
    _train_tiny(unset, "--model.half_dtype", "float16")
    _train_tiny(scheduled, "--model.half_dtype", "float16", "--model.stabilizer", "none",
                "--opt.precision_schedule", "half:0.5,full", epochs=2)
    capsys.readouterr()
    # "off": none in every mode, float16 "half" included (it ran tanh there: the mode's default)
    assert [evaluated(off, p) for p in (None, "half", "mixed")] == [None, None, None]
    assert cli.main(["eval", str(off), "--precision", "half"]) == 0
    assert "half+autocast (half_dtype float16)" in capsys.readouterr().out  # no +tanh
    # "tanh" (bfloat16, whose "half" runs none by default): tanh in every mode, as the model was trained
    assert [evaluated(tanh, p) for p in (None, "half", "mixed", "full")] == ["tanh"] * 4
    # unset: the mode's default, as before
    assert [evaluated(unset, p) for p in ("half", "mixed")] == ["tanh", None]
    # beside a schedule the request ran in no phase: the mode's default
    assert evaluated(scheduled, "half") == "tanh"


def test_off_beside_a_schedule_is_advised_notanh_and_tanh_tanh(monkeypatch, tmp_path, capsys):
    off = build_steps.stabilizer_schedule_warning("off", "half:0.5,full", "float16")
    assert ("('half:0.5': tanh; 'full:0.5': none). To run a phase without tanh, write '/notanh' after it in "
            "opt.precision_schedule, e.g. 'half/notanh'; to use model.stabilizer for the whole run") in off
    assert "/tanh'" not in off
    tanh = build_steps.stabilizer_schedule_warning("tanh", "half:0.5,mixed", "bfloat16")
    assert "To run a phase with tanh, write '/tanh' after it in opt.precision_schedule, e.g. 'mixed/tanh';" in tanh
    # as `train` prints it for a typed none
    _four_random_samples_as_data(monkeypatch)
    _train_tiny(tmp_path / "run", "--model.half_dtype", "float16", "--model.stabilizer", "none",
                "--opt.precision_schedule", "half:0.5,full", epochs=2)
    printed = capsys.readouterr()
    printed = printed.out + printed.err
    assert "model.stabilizer='off' is not applied" in printed and "e.g. 'half/notanh'" in printed, printed


def test_off_is_read_in_any_case_and_tanh_as_spelled():
    for off in ("OFF", "Off", " off "):
        assert run_cli.parse_args(["t.py", "--mp.stabilizer", off])[1] == {"stabilizer": "off"}
        assert PrecisionPolicy(**HALF_FP16, stabilizer=off).stabilizer == "off"
        config = load_config("darcy", {"model.stabilizer": off, **{f"model.{k}": v for k, v in HALF_FP16.items()}})
        assert build_steps.precision_policy(config).stabilizer == "off"
        assert neuralop_mp.MixedPrecisionSpectralConv(2, 2, (4, 4), stabilizer=off).stabilizer is None
    # tanh is taken as spelled, as every choice not documented as case-free
    with pytest.raises(run_cli.UsageError, match=r"^Invalid --mp\.stabilizer='TANH'; .* Did you mean 'tanh'\?$"):
        run_cli.parse_args(["t.py", "--mp.stabilizer", "TANH"])
    with pytest.raises(ValueError, match=r"Did you mean 'tanh'\?$"):
        PrecisionPolicy(stabilizer="Tanh")


def test_a_bad_stabilizer_is_refused_naming_what_a_typed_none_means(capsys):
    assert cli.main(["train", "darcy", "--model.stabilizer", "tahn"]) == 2
    assert ("Invalid model.stabilizer='tahn'; allowed values: None (unset: the mode's default; typed on a command "
            "line, none is 'off'), 'off', 'tanh'.") in capsys.readouterr().err
    # enable's keyword is given, as a typed option: a null spelling is "off" there
    with pytest.raises(ValueError, match=r"^Invalid stabilizer='tahn'; allowed values: 'none', 'off' \(both: no "
                                         r"stabilizer\), 'tanh'\.$"):
        neuralop_mp.enable(stabilizer="tahn")
    assert not activation.is_enabled()  # refused before anything is patched


@pytest.mark.parametrize("empty", ["", "  "])
def test_a_typed_empty_stabilizer_is_refused_where_a_config_empty_stays_the_default(empty, capsys):
    # `--mp.stabilizer "$S"` with S unset: refused, not read as a typed none ("off", no tanh)
    message = r"an empty value \(an unset shell variable\?\) is refused; allowed values: 'none' or 'off'"
    with pytest.raises(run_cli.UsageError, match=r"^Invalid --mp.stabilizer=.*" + message):
        run_cli.parse_args(["t.py", "--mp.stabilizer", empty])
    with pytest.raises(ValueError, match=r"^Invalid stabilizer=.*" + message):
        neuralop_mp.enable(stabilizer=empty)
    assert not activation.is_enabled()
    from neuralop_mp.diagnose.cli import _load_config

    with pytest.raises(ValueError, match=r"^Invalid model.stabilizer=.*" + message):
        _load_config("darcy", ["--model.stabilizer", empty])
    assert cli.main(["train", "darcy", "--model.stabilizer", empty]) == 2
    assert "Invalid model.stabilizer=" in capsys.readouterr().err
    # in a config (file or recorded overrides), "" is a spelling of None: the mode's default
    config = load_config("darcy", {"model.stabilizer": empty, **{f"model.{k}": v for k, v in HALF_FP16.items()}})
    assert build_steps.precision_policy(config).with_mode_stabilizer("cpu").stabilizer == "tanh"


@pytest.mark.parametrize("stabilizer", ["none", None])
def test_auto_deciding_float16_half_notes_off_and_runs_the_mode_default_when_unset(
        stabilizer, monkeypatch, tmp_path, capsys):
    # a calibration that chooses "half" (what a measurement on CUDA may decide)
    from neuralop_mp.diagnose import auto

    monkeypatch.setattr(auto, "calibrate_from_loader", lambda model, *args, **kwargs: {"fno_block_precision": "half"})
    _four_random_samples_as_data(monkeypatch)
    out = tmp_path / "run"
    typed = ["--model.stabilizer", stabilizer] if stabilizer else []
    assert cli.main(["train", "darcy", "--output_dir", str(out), "--opt.n_epochs", "1", "--threads", "1",
                     *TINY_ARGS, "--model.fno_block_precision", "auto", "--model.half_dtype", "float16", *typed]) == 0
    printed = capsys.readouterr().out
    phases = json.loads((out / "results.json").read_text())["precision"]["phases"]
    if stabilizer:  # "off": the note, once before training and once in the summary
        assert printed.count("none, as model.stabilizer asks") == 2, printed
        assert [(p["mode"], p["stabilizer"]) for p in phases] == [("half", None)]
    else:  # unset: float16 "half"'s default, tanh, and no note
        assert "as model.stabilizer asks" not in printed
        assert [(p["mode"], p["stabilizer"]) for p in phases] == [("half", "tanh")]


def test_enable_off_beside_the_scripts_own_float16_half_notes_it_as_the_model_is_built():
    # no precision given: the activation cannot tell the mode; the script's config says "half"
    with neuralop_mp.enabled(half_dtype="float16", stabilizer="none") as report:
        assert not report.notes
        model = neuralop.get_model(_tiny_model_config(fno_block_precision="half"))
        neuralop.get_model(_tiny_model_config(fno_block_precision="half"))  # a second model: one note
    assert _stabilizers(model) == ({None}, {None})
    (note,) = [n for n in report.notes if "stabilizer" in n]
    assert note.startswith("stabilizer none, as stabilizer asks: no tanh before the FFTs of the float16 'half' run")
    with neuralop_mp.enabled(half_dtype="float16", stabilizer="none") as report:  # the script's own "mixed"
        neuralop.get_model(_tiny_model_config(fno_block_precision="mixed"))
    assert not report.notes
