"""``neuralop-mp diagnose CONFIG_OR_CHECKPOINT [options] [--key value ...]``.

CONFIG_OR_CHECKPOINT is a built-in config name, ``path.py[:ClassName]``, or a model
checkpoint: written by ``model.save_checkpoint(folder, name)`` given as ``folder/name``,
or a folder holding one (a ``neuralop-mp train`` run folder: its final model).
A config's model is built untrained (seeded); its data section says which built-in
dataset and resolution N to use. With a checkpoint, ``--data`` and ``--resolution`` say it;
in a run folder they default to the run's dataset and training resolution, elsewhere to
darcy and 16. ``--data.data_root DIR`` (the one config key a checkpoint takes) is the folder
the data are read from and generated in.
The inputs are a few test samples at 2N, passed through the data processor; an odd
fine-grid size (Burgers' 17 time levels) loses its last point, as for
``fno_block_precision="auto"``, and the output says so.
"""
import argparse
import shlex
import sys
from pathlib import Path

import torch

from ..bench.report import check_out_folder, writable_out
from ..data.cache import CONFIG_DATA_ROOT_OPTION
from ..training.checkpointing import METADATA_SUFFIX, STATE_DICT_SUFFIX, CheckpointWriteError
from ..vocabulary import OneLineErrorParser, ignoring_upstream_unused_keys, plain_text
from .bands import DEFAULT_N_BANDS

LOADERS = {"darcy": "load_darcy", "navier_stokes": "load_navier_stokes", "burgers": "load_burgers"}
DEFAULT_ARCHS = "FNOConfig,TFNOConfig"
DEFAULT_RESOLUTIONS = [64, 128]
# the options that one of diagnose's two modes reads and the other does not: given to the other they
# would be ignored, so they are refused (their defaults are None: "not given")
RECIPE_TABLE_ONLY = ("archs", "resolutions")
DIAGNOSIS_ONLY = ("data", "resolution", "n_bands", "fraction")


def _resolution_list(text):
    """argparse ``type`` of ``--resolutions``: comma-separated integers >= 1."""
    try:
        values = [int(item) for item in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}; allowed values: comma-separated integers >= 1, "
                                         "e.g. 64,128")
    return values


def _arch_list(text):
    """argparse ``type`` of ``--archs``: comma-separated model section classes that build a model
    (the ones ``--model CLASS`` selects, case ignored, less the base ``ModelConfig``, which builds
    none), each as its class is named; an empty value or entry is refused, not read as the default."""
    from ..configs import ModelConfig
    from ..configs.zencfg_compat import subclass_choices

    allowed = [name for name in subclass_choices(ModelConfig) if name != ModelConfig.__name__]
    by_name = {name.lower(): name for name in allowed}
    names = [item.strip() for item in text.split(",")]
    bad = [name for name in names if name.lower() not in by_name]
    if bad:
        what = ", ".join("an empty name" if not name else repr(name) for name in dict.fromkeys(bad))
        raise argparse.ArgumentTypeError(f"invalid value {text!r} ({what} not allowed); allowed values: "
                                         "comma-separated names of the model section classes that build a model: "
                                         f"{', '.join(allowed)} (e.g. {DEFAULT_ARCHS})")
    return [by_name[name.lower()] for name in names]


def _parser():
    p = OneLineErrorParser(prog="neuralop-mp diagnose", description=plain_text(__doc__),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", metavar="CONFIG_OR_CHECKPOINT")
    p.add_argument("--data", choices=list(LOADERS), default=None,  # the order of `neuralop-mp data`
                   help="built-in dataset (default: the config's or run folder's; darcy for another checkpoint)")
    from ..data.loaders import resolution_rules_text

    p.add_argument("--resolution", type=int, default=None,
                   help="working resolution N (default: the config's or run folder's train_resolution; "
                        f"16 for another checkpoint); {resolution_rules_text()}")
    p.add_argument("--n-samples", type=int, default=4, help="samples measured (default 4)")
    p.add_argument("--n-bands", type=int, default=None,
                   help=f"Fourier mode bands (default {DEFAULT_N_BANDS}, fewer where the grid holds fewer; "
                        "at most N // 2 + 1 on the N-point grid)")
    p.add_argument("--fraction", default=None,  # checked as typed: _fraction
                   help="allowed precision error as a fraction of the discretization error (default 0.5)")
    p.add_argument("--out", default=None, type=writable_out, metavar="DIR",
                   help="output folder, checked before any work (default diagnose/<name>)")
    p.add_argument("--recipe-table", action="store_true",
                   help="instead: a markdown table of precision vs discretization error per recipe")
    p.add_argument("--archs", default=None, type=_arch_list,
                   help=f"model sections of --recipe-table (default {DEFAULT_ARCHS})")
    p.add_argument("--resolutions", default=None, type=_resolution_list, metavar="N,N,...",
                   help=f"resolutions N of --recipe-table (default {','.join(map(str, DEFAULT_RESOLUTIONS))})")
    return p


def _fraction(text):
    """``--fraction`` TEXT as a number, by recommend's rule (:func:`~neuralop_mp.diagnose.recommend.check_settings`:
    finite, > 0); refused naming ``--fraction=TEXT`` as typed, as the integer options are named."""
    from .recommend import DEFAULT_OVERFLOW_MARGIN, check_settings

    try:
        return check_settings(float(text), DEFAULT_OVERFLOW_MARGIN)[0]
    except ValueError:  # float("abc") too
        raise ValueError(f"Invalid --fraction={text}; allowed values: finite numbers > 0.") from None


def _flag(name):
    return "--" + name.replace("_", "-")


def _unread_options(args):
    """The usage error for options the mode ``args`` asks for does not read (``--archs`` without
    ``--recipe-table``, ``--n-bands`` with it), else None."""
    unread = DIAGNOSIS_ONLY if args.recipe_table else RECIPE_TABLE_ONLY
    given = [_flag(name) for name in unread if getattr(args, name) is not None]
    if not given:
        return None
    is_, it = ("is", "it") if len(given) == 1 else ("are", "them")
    if args.recipe_table:
        return f"{' and '.join(given)} {is_} read only by a layer diagnosis, not by --recipe-table: leave {it} out"
    return f"{' and '.join(given)} {is_} read only with --recipe-table: add --recipe-table, or leave {it} out"


def _check_n_bands(n_bands, model, resolution):
    """``--n-bands`` as given (None: not given, the default that measure caps on a small grid),
    refused before any data are generated where the N-point grid (``resolution``) the errors are
    measured on holds fewer bands of ``|k|_inf`` (one frequency each: N // 2 + 1), in
    :func:`~neuralop_mp.diagnose.bands.band_count`'s words. measure checks it again on the grid
    it is given (the inputs are at 2N, restricted to N)."""
    from ..layers.layer_precision import mixed_precision_layers
    from .bands import band_count

    layers = mixed_precision_layers(model)
    if n_bands is None or not layers:  # a model without such layers: measure refuses it by name
        return n_bands
    return band_count([resolution] * layers[0].order, n_bands, key="--n-bands")


def _check_resolution(loader_name, resolution, flag, data_root=None):
    """``resolution`` (N, given as ``flag``), refused in one line naming ``flag`` and the rule of
    ``loader_name``'s dataset (:data:`~neuralop_mp.data.loaders.RESOLUTION_RULES`), before any data
    are generated: where it is below the smallest grid the dataset is generated at, and where the
    load would generate a file at N (training) or 2N (test) that the dataset's generator refuses
    (:data:`~neuralop_mp.data.loaders.CHECK_RESOLUTION`; Navier-Stokes: powers of 2), as
    :func:`~neuralop_mp.data.loaders.ensure_files` checks a file it generates. The load would name
    its own ``train_resolution`` (with the bound of every dataset, 2) or the generator's
    ``Navier-Stokes resolution``, not the option typed. A file already in ``data_root`` at a size the
    generator refuses may be the user's own: the load decides."""
    from ..data.cache import resolve_root
    from ..data.loaders import CHECK_RESOLUTION, LOADER_FILES, RESOLUTION_RULES, generated_from_scratch

    prefix, _, dataset = LOADER_FILES[loader_name]
    smallest, rule = RESOLUTION_RULES[prefix]
    refused = resolution < smallest
    if not refused:
        for size, split in ((resolution, "train"), (2 * resolution, "test")):
            try:
                CHECK_RESOLUTION[prefix](size)
            except ValueError:  # refused only where the load would make the file (the files read only then)
                refused = refused or bool(generated_from_scratch(resolve_root(data_root), prefix, [(size, split)]))
    if not refused:
        return resolution
    raise ValueError(f"Invalid {flag}={resolution}; allowed values for the {dataset} data: {rule} (the working "
                     "resolution N; the test inputs are generated at 2N).")


def _checkpoint_path(target):
    """The :class:`~neuralop_mp.run_folder.FoundCheckpoint` ``target`` names (``folder/NAME``, or a
    folder holding one, such as a ``neuralop-mp train`` run folder), else None (a config). Found
    (a run's final model: checked current) here, once; ``load_model_and_precision`` takes it as found."""
    from ..configs.loading import config_file
    from ..run_folder import FoundCheckpoint, find_checkpoint

    path = Path(target)
    _refuse_unknown_checkpoint_name(target)
    if Path(f"{target}{METADATA_SUFFIX}").exists():
        state_dict = Path(f"{target}{STATE_DICT_SUFFIX}")
        # without its state dict: load_model_and_precision names the missing file
        return find_checkpoint(state_dict) if state_dict.is_file() else FoundCheckpoint(path.parent, path.name)
    if not path.is_dir() or config_file(target) is None:  # a built-in name wins over a folder of that name
        return None
    try:
        return find_checkpoint(path)
    except FileNotFoundError as error:
        raise ValueError(f"Invalid CONFIG_OR_CHECKPOINT {target}: {error} diagnose takes a config (a built-in "
                         "name or path.py[:ClassName]) or a checkpoint: a folder holding one (a `neuralop-mp train` "
                         f"run folder) or folder/NAME for NAME{METADATA_SUFFIX}.") from None


def _refuse_unknown_checkpoint_name(target):
    """Refuse ``folder/NAME`` where ``folder`` is a folder holding checkpoints and none is ``NAME``
    (no ``NAME_metadata.pkl``), and ``target`` is no config (a built-in name or ``path.py``): said as
    the checkpoint form, with the checkpoints ``folder`` holds, not as an unknown config."""
    from ..configs.loading import config_file

    path = Path(target)
    if (path.exists() or Path(f"{target}{METADATA_SUFFIX}").exists() or path.parent == Path(".")
            or not path.parent.is_dir() or config_file(target) is not None):
        return
    held = sorted(p.name[: -len(METADATA_SUFFIX)] for p in path.parent.glob(f"*{METADATA_SUFFIX}"))
    if not held:  # a folder of no checkpoint: the name may mean a config, as said for one
        return
    raise ValueError(f"Invalid CONFIG_OR_CHECKPOINT {target}: {path.parent} holds no checkpoint {path.name} (no "
                     f"{path.name}{METADATA_SUFFIX}); checkpoints there: {', '.join(held)}. A checkpoint is given as "
                     f"folder/NAME for the NAME{METADATA_SUFFIX} written by model.save_checkpoint(folder, NAME), or "
                     "as a folder holding one (a `neuralop-mp train` run folder); a config as a built-in name or "
                     "path.py[:ClassName].")


def _data_of(data, args):
    """(loader name, loader kwargs, N): those ``args`` give, else those of the config's data
    section ``data`` (its dataset and training resolution), else Darcy at 16."""
    if args.resolution is not None:  # 0 too: a value, refused by _check_resolution
        n = args.resolution
    else:
        n = data.train_resolution if data is not None else 16
    if data is None or args.data is not None:
        # none of the config's data settings but its folder: a --data.data_root given is kept with --data
        return LOADERS[args.data or "darcy"], {"data_root": getattr(data, "data_root", None)}, n
    from ..train_pipeline import section_kwargs

    return data.loader_name(), section_kwargs(data), n


def _run_data(folder, args):
    """:func:`_data_of` a checkpoint: in a run folder of ``neuralop-mp train``, the run's config
    (its command.json, written from the run's start: a stopped run has it too). On the run's
    dataset the loader kwargs carry ``reference``, the records of the data the run trained on
    (:func:`~neuralop_mp.run_folder.run_data_records`): the files generated at 2N (and N, other
    than the run's) solve the run's equation, not the generator's defaults."""
    from ..run_folder import read_command, run_data_records

    recorded = read_command(folder)
    if recorded is None:
        return _data_of(None, args)
    from ..configs import load_config

    data = load_config(recorded["config"], recorded["overrides"]).data
    loader, kwargs, n = _data_of(data, args)
    if loader == data.loader_name():
        kwargs = {**kwargs, "reference": run_data_records(folder, data)}
    return loader, kwargs, n


def _data_section_class(loader_name):
    """The name of the built-in data section class whose ``loader_name()`` is ``loader_name``
    (``load_navier_stokes``: ``NavierStokesDatasetConfig``), as ``train --data CLASS`` takes it."""
    from ..configs import BurgersDatasetConfig, DarcyDatasetConfig, NavierStokesDatasetConfig

    for section in (DarcyDatasetConfig, NavierStokesDatasetConfig, BurgersDatasetConfig):
        if section().loader_name() == loader_name:
            return section.__name__
    raise ValueError(f"no built-in data section loads with {loader_name!r}")


def measured_data_overrides(data, args, loader_name, resolution):
    """``{key: value}``: the ``train`` overrides that make a run train on the data diagnose measured
    (``loader_name`` at ``resolution`` N), where the config's data section ``data`` would train on
    others: ``data`` (the section class: :func:`_data_section_class`) where the dataset is another
    (``--data``), ``data.train_resolution`` where N is another (``--resolution``; always with another
    class, whose own default may differ). ``data`` None (a checkpoint that records no config): those
    of ``--data`` and ``--resolution`` given (``args``), nothing guessed."""
    out = {}
    other_class = (args.data is not None) if data is None else loader_name != data.loader_name()
    if other_class:
        out["data"] = _data_section_class(loader_name)
    if (args.resolution is not None) if data is None else (other_class or resolution != data.train_resolution):
        out["data.train_resolution"] = str(resolution)
    return out


def _train_config_part(target, overrides, checkpoint, flags, measured=None):
    """The tokens before the recommended ``flags`` (``train_flags``) in the printed ``neuralop-mp
    train`` command: the config and its overrides as diagnose was given them; for a run folder of
    ``neuralop-mp train`` (``checkpoint``'s folder holds its command.json), the run's recorded config
    and overrides, less its ``--output_dir`` (a new run must not train into the diagnosed one's
    folder), and, where the config class itself sets ``output_dir`` (which may be that folder), a new
    ``--output_dir``: the default folder of a config without one. ``measured`` (``(args, loader name,
    N)``: the data measured) adds, right after the config, ``--data CLASS`` and
    ``--data.train_resolution N`` where diagnose measured other data than the config trains on
    (:func:`measured_data_overrides`). An override of a key ``flags`` or those set is left out: the
    command would give it twice. None for a checkpoint outside a run folder: it records no config."""
    from ..configs import load_config, parse_overrides
    from ..run_folder import override_tokens, read_command

    recommended = set(parse_overrides(flags))
    if checkpoint is None:
        spec, given = target, parse_overrides(overrides)
        data = _load_config(target, overrides).data if measured else None
        run = None
    else:
        recorded = read_command(checkpoint.folder)
        if recorded is None:
            return None
        spec = recorded["config"]
        run = {key: value for key, value in parse_overrides(recorded["overrides"]).items() if key != "output_dir"}
        given = run
        data = load_config(spec, recorded["overrides"]).data if measured else None
    data_part = measured_data_overrides(data, *measured) if measured else {}
    kept = {key: value for key, value in given.items() if key not in recommended and key not in data_part}
    tokens = [spec, *override_tokens(data_part.items()), *override_tokens(kept.items())]
    return tokens if run is None else [*tokens, *_new_output_dir(spec, run)]


def _new_output_dir(spec, overrides):
    """``["--output_dir", DIR]`` for a new run of config ``spec`` whose class sets ``output_dir`` itself
    (DIR: :func:`~neuralop_mp.train_pipeline.default_output_dir`, where a config without one trains),
    else ``[]``: without the run's recorded ``--output_dir`` the class's folder would be used, and
    there a run (the diagnosed one, maybe) is refused."""
    from ..configs import load_config
    from ..train_pipeline import default_output_dir
    from ..vocabulary import none_if_null

    config = load_config(spec, overrides)
    if none_if_null(config.output_dir) is None:
        return []
    return ["--output_dir", str(default_output_dir(config))]


def _option_names():
    """Every option of diagnose's own (what a ``--key`` that is no config key may be)."""
    return sorted(name for action in _parser()._actions for name in action.option_strings if name.startswith("--"))


def _load_config(target, overrides):
    """The config ``target`` names with ``overrides``; an unknown ``--option`` (neither a config
    key nor one of diagnose's) is said as such, with close matches, as ``train`` says it.
    ``--model.stabilizer none`` is "off", as ``train`` reads it (:func:`neuralop_mp.option_check.parse_typed_overrides`)."""
    from ..option_check import load_checked, parse_typed_overrides
    from ..configs import load_config

    # a typed --model.stabilizer none is "off" (no tanh, whatever the mode), as `train` reads it
    return load_checked(lambda source: load_config(source, parse_typed_overrides(overrides)),
                        overrides, target, _option_names())


def _load(args, overrides, checkpoint):
    """(model, loader name, loader kwargs, N, name); ``checkpoint``: :func:`_checkpoint_path`'s."""
    if checkpoint is not None:
        from ..run_folder import load_model_and_precision

        data_root, unknown = _checkpoint_data_root(overrides)
        if unknown:
            raise ValueError(f"Unknown option {unknown[0]}: config overrides {overrides} do not apply to a "
                             "checkpoint; options: "
                             + ", ".join(_option_names()) + f", and {CONFIG_DATA_ROOT_OPTION} DIR (the folder "
                             "its test inputs are generated in).")
        # the plugin's layer even for a full-precision checkpoint (a plain `train` run's): it switches precision
        model, _ = load_model_and_precision(checkpoint, mixed_precision_layer=True)
        loader, kwargs, n = _run_data(checkpoint.folder, args)
        if data_root is not None:
            kwargs = {**kwargs, "data_root": data_root}
        return model, loader, kwargs, n, Path(args.target).resolve().name
    from ..models.registry import get_model

    config = _load_config(args.target, overrides)
    torch.manual_seed(config.seed)
    # the plugin's layer even for a full-precision config: it is what switches precision
    model = get_model(config, mixed_precision_layer=True)
    return (model, *_data_of(config.data, args), Path(str(args.target)).stem)


def _checkpoint_data_root(overrides):
    """``(DIR, the other overrides' options)``: the ``--data.data_root DIR`` (None where not given) of
    the ``overrides`` given with a checkpoint, the one config key that applies to one: the folder its
    test inputs are generated in, as ``eval RUN_FOLDER`` takes it. It is the option a data root that
    cannot be written names (:func:`~neuralop_mp.data.cache.data_root_option`), a run's recorded
    one included, so it can be typed for a checkpoint too.

    Raises
    ------
    ValueError
        For an option without a value, or a token that is no option
        (:func:`~neuralop_mp.configs.parse_overrides`).
    """
    from ..configs import parse_overrides

    parsed = parse_overrides(overrides)
    data_root = parsed.pop(CONFIG_DATA_ROOT_OPTION[2:], None)
    return data_root, [f"--{key}" for key in parsed]


def fine_inputs(loader_name, kwargs, resolution, n_samples, flag="--resolution"):
    """``n_samples`` processed test inputs at ``2 * resolution`` from a built-in dataset (an odd
    spatial size, Burgers' time levels, is evened by :func:`~neuralop_mp.diagnose.measure.measure`).
    ``kwargs``'s ``reference`` (a run's data records, :func:`_run_data`) gives the physics of the
    files generated."""
    from .. import data as data_module
    from ..data.loaders import OwnDataError, OwnDataMissingError

    keep = {k: v for k, v in kwargs.items()
            if k in ("data_root", "encode_input", "encode_output", "seed", "reference")}
    try:
        train, tests, processor = getattr(data_module, loader_name)(
            n_train=max(n_samples, 8), batch_size=n_samples, train_resolution=resolution,
            test_resolutions=[2 * resolution], n_tests=[n_samples], test_batch_sizes=[n_samples],
            progress=False, **keep)
    except (OwnDataError, OwnDataMissingError) as error:  # the load's advice is a load's: diagnose's here
        raise ValueError(f"{', '.join(error.own)} {'holds' if len(error.own) == 1 else 'hold'} your own data, and "
                         f"diagnose measures the model on test inputs at twice the working resolution "
                         f"({2 * resolution} for {flag} {resolution}) with {max(n_samples, 8)} training samples at "
                         f"{resolution} for the normalizer: {', '.join(error.absent)} "
                         f"{'is' if len(error.absent) == 1 else 'are'} not your own. Put your own files there, or "
                         f"give {flag} N where your data holds N and 2N.") from None
    batch = next(iter(tests[2 * resolution]))
    if processor is not None:
        processor.eval()
        batch = processor.preprocess(batch)
    return batch["x"].float()


def _recipe_table(args, overrides):
    from .recipes import format_recipe_table, recipe_rows

    config = _load_config(args.target, overrides)  # an unknown option is said now, not as a config error of each arch
    for n in args.resolutions or DEFAULT_RESOLUTIONS:  # each by its dataset's rule, before the first is measured
        _check_resolution(config.data.loader_name(), n, "--resolutions", getattr(config.data, "data_root", None))
    notes = []
    with ignoring_upstream_unused_keys():
        rows = recipe_rows(args.target, overrides, args.archs or DEFAULT_ARCHS.split(","),
                           args.resolutions or DEFAULT_RESOLUTIONS, args.n_samples, fine_inputs, notes=notes)
    table = format_recipe_table(rows)
    if args.out:  # before the table is printed: an output closed early (`| head`) stops the command there
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "recipe_table.md").write_text(table + "\n")
    print(table)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def main(argv=None):
    """Run the diagnosis; print the table; write results.json and error_bands.png."""
    from .measure import measure
    from .recommend import DEFAULT_FRACTION, recommend
    from .report import format_table, plot_bands, write_json

    parser = _parser()
    args, overrides = parser.parse_known_args(argv)
    unread = _unread_options(args)
    if unread:
        parser.error(unread)
    try:
        for name in ("n_samples", "n_bands"):  # --resolution: by its dataset's rule (_check_resolution)
            value = getattr(args, name)
            if value is not None and value < 1:
                raise ValueError(f"Invalid --{name.replace('_', '-')}={value}; allowed values: integers >= 1.")
        # None is "not given": 0 is a value, refused here (before the measurement) as recommend would
        fraction = DEFAULT_FRACTION if args.fraction is None else _fraction(args.fraction)
        if args.recipe_table:
            return _recipe_table(args, overrides)
        checkpoint = _checkpoint_path(args.target)
        model, loader, kwargs, n, name = _load(args, overrides, checkpoint)
        if args.resolution is not None or checkpoint is None:  # a run's own resolution: the data it trained on
            _check_resolution(loader, n, "--resolution" if args.resolution is not None else "data.train_resolution",
                              kwargs.get("data_root"))
        out = Path(args.out or Path("diagnose") / name)
        check_out_folder(out)  # the default folder too, before the measurement (an explicit --out: when parsed)
        n_bands = _check_n_bands(args.n_bands, model, n)  # before the data are generated
        with ignoring_upstream_unused_keys():
            x_fine = fine_inputs(loader, kwargs, n, args.n_samples)
            diagnosis = measure(model, x_fine, n_bands=n_bands)
        recommendation = recommend(diagnosis, fraction=fraction)
        measured = (args, loader, n)
        config_part = _train_config_part(args.target, overrides, checkpoint, recommendation["train_flags"], measured)
        # a checkpoint that records no config: the data options given, before the recommended flags
        data_part = measured_data_overrides(None, *measured) if config_part is None else {}
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"neuralop-mp diagnose: error: {error}", file=sys.stderr)
        return 2
    except CheckpointWriteError as error:  # its test inputs generated on a full disk: the temporary removed
        print(f"neuralop-mp diagnose: error: {error}", file=sys.stderr)
        return 1
    # the files before the table: an output closed early (`| head`) stops the command at its first print
    out.mkdir(parents=True, exist_ok=True)
    write_json(diagnosis, recommendation, out / "results.json")
    plot_bands(diagnosis, out / "error_bands.png")
    print(format_table(diagnosis, recommendation))
    from ..run_folder import override_tokens

    flags = shlex.join([*override_tokens(data_part.items()), *recommendation["train_flags"]])
    if config_part is None:  # no config to name: the options alone, said as such (no command that fails as printed)
        print(f"Train with these options after the config that built this model (the checkpoint records none): "
              f"{flags}")
    else:
        print(f"Train with: neuralop-mp train {shlex.join(config_part)} {flags}")
    print(f"\nwrote {out / 'results.json'} and {out / 'error_bands.png'}")
    return 0
