"""One spelling rule for every choice of the CLI (a variant of case or ``-``/``_`` is refused with a "did
you mean"), the stabilizer-beside-a-schedule warning on standard error, and the warning for a scheduler
key the user set that the chosen scheduler does not read."""
import pytest

import neuralop_mp.train_pipeline as pipeline
from neuralop_mp.cli import main
from neuralop_mp.configs import load_config
from neuralop_mp.run_setup import RunSetupError
from neuralop_mp.vocabulary import check_choice, normalize_recompute

TINY = ["--model.n_modes", "[4,4]", "--model.hidden_channels", "4", "--model.n_layers", "1", "--threads", "1"]


@pytest.mark.parametrize("key, value, meant", [
    ("model.fno_block_precision", "Mixed", "mixed"),
    ("model.autocast_scope", "fno-blocks", "fno_blocks"),
    ("model.channel_mlp_skip", "soft_gating", "soft-gating"),
    ("opt.scheduler", "cosineannealinglr", "CosineAnnealingLR"),
])
def test_a_choice_in_another_case_or_dash_is_refused_naming_the_spelling_meant(key, value, meant):
    """Every choice refused another case without naming the value meant (model.recompute, read in any
    case, is a documented exception: test_recompute_any_case)."""
    with pytest.raises(ValueError) as refused:
        load_config("darcy", [f"--{key}", value])
    assert str(refused.value).endswith(f"Did you mean {meant!r}?"), refused.value
    assert f"{key}={value!r}" in str(refused.value)


def test_no_hint_for_a_value_that_no_spelling_variant_matches():
    with pytest.raises(ValueError) as refused:
        check_choice("k", "hlaf", ("full", "mixed", "half"))
    assert str(refused.value) == "Invalid k='hlaf'; allowed values: 'full', 'mixed', 'half'."
    assert normalize_recompute("None") == "none"  # the spellings of None stay accepted


@pytest.mark.parametrize("argv, line", [
    (["data", "navier-stokes"], "neuralop-mp data: error: argument dataset: invalid choice: 'navier-stokes' (choose "
                                "from 'darcy', 'navier_stokes', 'burgers'). Did you mean 'navier_stokes'?"),
    (["diagnose", "darcy", "--data", "Darcy"], "neuralop-mp diagnose: error: argument --data: invalid choice: 'Darcy' "
                                               "(choose from 'darcy', 'navier_stokes', 'burgers'). Did you mean 'darcy'?"),
    (["bench", "Spectral"], "neuralop-mp bench: error: unknown benchmark 'Spectral'; choose from: spectral, optimizer, "
                            "schedule, scope, auto, allocator, gpu, trainer. Did you mean 'spectral'?"),
])
def test_argparse_choices_and_bench_names_say_the_spelling_meant(argv, line, capsys):
    """argparse's refusal named no spelling meant; bench's unknown name went to standard output."""
    try:
        status = main(argv)
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert err.strip().splitlines()[-1] == line


def test_the_stabilizer_warning_goes_to_stderr(monkeypatch, capsys):
    """It was printed on standard output, among the results."""
    def stop(*args, **kwargs):
        raise FileNotFoundError("stop here")

    monkeypatch.setattr(pipeline, "build_data", stop)
    config = load_config("darcy", ["--model.stabilizer", "tanh", "--opt.precision_schedule", "paper",
                                   "--model.fno_block_precision", "mixed"])
    with pytest.raises(RunSetupError):
        pipeline.run_training(config, progress=False, write=False)
    out, err = capsys.readouterr()
    assert "WARNING" not in out
    assert err.count("[neuralop-mp] WARNING: model.stabilizer='tanh' is not applied") == 1
    said = []
    with pytest.raises(RunSetupError):  # a caller's own log still gets it
        pipeline.run_training(config, progress=False, write=False, log=said.append)
    assert any(line.startswith("[neuralop-mp] WARNING: model.stabilizer") for line in said)


def _train_until_run(argv, monkeypatch, capsys):
    def stop(*args, **kwargs):
        raise RunSetupError("stopped by the test")

    monkeypatch.setattr(pipeline, "run_training", stop)
    assert main(["train", *argv, *TINY]) == 2
    return capsys.readouterr().err


def test_a_scheduler_key_the_chosen_scheduler_ignores_is_warned(monkeypatch, capsys, tmp_path):
    """--opt.gamma with CosineAnnealingLR was accepted and unused without a word."""
    err = _train_until_run(["darcy", "--opt.scheduler", "CosineAnnealingLR", "--opt.gamma", "0.3",
                            "--output_dir", str(tmp_path / "a")], monkeypatch, capsys)
    assert ("[neuralop-mp] WARNING: opt.gamma is set but unused: opt.scheduler='CosineAnnealingLR' does not "
            "read it (it reads opt.scheduler_T_max).") in err.splitlines()
    # a built-in config's own values (darcy's step_size and gamma) are no key the user set
    err = _train_until_run(["darcy", "--opt.scheduler", "CosineAnnealingLR", "--output_dir", str(tmp_path / "b")],
                           monkeypatch, capsys)
    assert "warning" not in err
    # a config file's own: against the built-in config it derives from
    path = tmp_path / "mine.py"
    path.write_text("from neuralop_mp.configs import DarcyConfig, OptimizationConfig\n"
                    "class Mine(DarcyConfig):\n"
                    "    opt: OptimizationConfig = OptimizationConfig(n_epochs=1, scheduler='none', step_size=4, "
                    "gamma=0.5, scheduler_patience=2)\n")
    err = _train_until_run([f"{path}:Mine", "--output_dir", str(tmp_path / "c")], monkeypatch, capsys)
    assert ("[neuralop-mp] WARNING: opt.scheduler_patience is set but unused: opt.scheduler='none' does not "
            "read it (it reads no scheduler key).") in err.splitlines()


def test_patching_keys_with_patching_off_are_warned(monkeypatch, capsys, tmp_path):
    """--patching.padding / --patching.stitching with patching.levels 0 (patching off) were accepted and
    unused without a word; a warning, not a refusal (--patching.levels 0 runs a patching config without)."""
    err = _train_until_run(["darcy", "--patching.padding", "0.25", "--patching.stitching", "true",
                            "--output_dir", str(tmp_path / "a")], monkeypatch, capsys)
    assert ("[neuralop-mp] WARNING: patching.padding and patching.stitching are set but unused: "
            "patching.levels=0 turns patching off (a level of 1 or more patches).") in err.splitlines()
    # read where patching is on; none set: nothing to say
    for args in (["--patching.levels", "1", "--patching.padding", "0.25"], []):
        err = _train_until_run(["darcy", *args, "--output_dir", str(tmp_path / f"b{len(args)}")], monkeypatch, capsys)
        assert "patching" not in err
    # a config file's own, turned off from the command line
    path = tmp_path / "mine.py"
    path.write_text("from neuralop_mp.configs import DarcyConfig\n"
                    "from neuralop_mp.configs.opt import PatchingConfig\n"
                    "class Mine(DarcyConfig):\n"
                    "    patching: PatchingConfig = PatchingConfig(levels=1, padding=0.25)\n")
    err = _train_until_run([f"{path}:Mine", "--patching.levels", "0", "--output_dir", str(tmp_path / "c")],
                           monkeypatch, capsys)
    assert ("[neuralop-mp] WARNING: patching.padding is set but unused: patching.levels=0 turns patching off "
            "(a level of 1 or more patches).") in err.splitlines()


def test_scheduler_keys_match_what_build_scheduler_reads():
    """Each key SCHEDULER_KEYS says a scheduler reads changes the scheduler it builds; the others do not."""
    import torch

    every = {key for keys in pipeline.SCHEDULER_KEYS.values() for key in keys}
    other = {"step_size": 7, "gamma": 0.3, "scheduler_T_max": 9, "scheduler_patience": 11}
    for name, read in pipeline.SCHEDULER_KEYS.items():
        def built(**changes):
            config = load_config("darcy", ["--opt.scheduler", name, *[t for k, v in changes.items()
                                                                      for t in (f"--opt.{k}", str(v))]])
            optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
            state = pipeline.build_scheduler(optimizer, config).state_dict()
            return {k: v for k, v in state.items() if not callable(v) and k != "lr_lambdas"}
        base = built()
        for key in every:
            assert (built(**{key: other[key]}) != base) == (key in read), (name, key)


def test_scheduler_ranges_checked_for_the_keys_each_scheduler_reads():
    """The config check refuses an out-of-range value of exactly the keys SCHEDULER_KEYS says the
    chosen scheduler reads (the one table build_scheduler builds from); other schedulers' keys pass."""
    every = {key for keys in pipeline.SCHEDULER_KEYS.values() for key in keys}
    for name, read in pipeline.SCHEDULER_KEYS.items():
        for key in every:
            overrides = ["--opt.scheduler", name, f"--opt.{key}", "-5"]
            if key in read:
                with pytest.raises(ValueError, match=rf"opt\.{key}=-5\b"):
                    load_config("darcy", overrides)
            else:
                load_config("darcy", overrides)
