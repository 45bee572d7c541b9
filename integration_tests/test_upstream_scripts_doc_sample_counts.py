"""The data commands docs/upstream_scripts.md gives for upstream's Navier-Stokes and Burgers scripts
write at least the samples the script then reads: the Burgers line wrote the generator's 200 test
samples where upstream's config tests on 400, and the run warned that the file holds fewer."""
import importlib
import inspect
import re
import shlex
from pathlib import Path

import pytest

from neuralop_mp.data.cli import build_parser
from neuralop_mp.data.loaders import GENERATORS

ROOT = Path(__file__).resolve().parents[1]


def _doc_commands():
    """``{dataset: (data command tokens, script argument tokens)}`` as the doc's paragraph writes them."""
    text = re.sub(r"\s+", " ", (ROOT / "docs" / "upstream_scripts.md").read_text())
    found = {}
    for dataset, script in (("navier_stokes", "train_navier_stokes.py"), ("burgers", "train_burgers.py")):
        match = re.search(rf"`{script}` \(`neuralop-mp data ({dataset} [^`]*)`(?:, then `-- ([^`]*)`)?", text)
        assert match, f"docs/upstream_scripts.md gives no data command for {script}"
        found[dataset] = (shlex.split(match[1]), shlex.split(match[2] or ""))
    return found


def _written(command):
    """(training, test) samples per file the data command writes (the generator's defaults where not given)."""
    args = build_parser().parse_args(command)
    defaults = inspect.signature(GENERATORS[args.dataset]).parameters
    return (args.n_train if args.n_train is not None else defaults["n_train"].default,
            args.n_test if args.n_test is not None else defaults["n_test"].default)


def _asked(data, script_args):
    """(training, test) samples the script reads: its arguments', else its upstream config's data
    section ``data`` (the real class, as the script builds it)."""
    n_train, n_test = data.n_train, data.n_tests[0]
    given = dict(zip(script_args[::2], script_args[1::2]))
    if "--data.n_train" in given:
        n_train = int(given["--data.n_train"])
    if "--data.n_tests" in given:
        n_test = int(given["--data.n_tests"].strip("[]"))
    return n_train, n_test


@pytest.mark.parametrize("dataset, config", [("navier_stokes", "navier_stokes_config"),
                                             ("burgers", "burgers_config")])
def test_the_doc_writes_what_the_script_reads(dataset, config, upstream_config):
    command, script_args = _doc_commands()[dataset]
    written = _written(command)
    # the Default config the script loads, from upstream's real config package
    data = importlib.import_module(f"config.{config}").Default().data
    asked = _asked(data, script_args)
    assert written[0] >= asked[0] and written[1] >= asked[1], (command, script_args, written, asked)
