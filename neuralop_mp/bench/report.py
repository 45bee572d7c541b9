"""Where benchmark results go: a run folder, and docs/benchmarks.md only when asked.

Every benchmark writes ``<name>.md`` (its section: header, tables) and
``<name>.json`` (the measured rows) into ``--out DIR`` (default
``./runs/bench-<name>-<YYYYmmdd-HHMMSS>``). Only ``--update-docs`` also rewrites
its section of docs/benchmarks.md, the text between ``<!-- BEGIN name -->`` and
``<!-- END name -->``, so one benchmark never touches another's section and a
user measuring their own machine never edits the docs by accident; from an installed
package (no checkout around it, so no docs/) ``--update-docs`` is refused before the
benchmark runs. Hand-written
reading notes inside a section, between ``<!-- NOTES -->`` and ``<!-- END NOTES -->``,
survive the rewrite: they are put back right under the new section's title.
"""
import argparse
import datetime
import json
import os
import platform
import re
import sys
from pathlib import Path

import torch

from ..cpu_allocator import describe_cpu_allocator
from ..layers.complex_half import native_half_matmul
from ..run_folder import write_atomic
from ..run_setup import RunSetupError, check_writable, file_in_the_way
from ..train_report import to_jsonable

#: the folder that holds the ``neuralop_mp`` package: a checkout's root, or site-packages after a plain install
PACKAGE_PARENT = Path(__file__).resolve().parents[2]
DEFAULT_DOC = PACKAGE_PARENT / "docs" / "benchmarks.md"
PROJECT = "neuralop-mp"


def checkout_root(parent=None):
    """The repository checkout the package runs from, or None for an installed package.

    A checkout is ``parent`` (default :data:`PACKAGE_PARENT`) with a ``pyproject.toml``
    naming this project. After a plain ``pip install`` the package's parent is
    site-packages: no docs and no tests there, which ``--update-docs`` and the GPU
    campaign's test run would otherwise write or look for.
    """
    parent = PACKAGE_PARENT if parent is None else Path(parent)
    try:
        text = (parent / "pyproject.toml").read_text()
    except OSError:  # missing, a folder, unreadable: no checkout
        return None
    # the [project] table's name line (tomllib is Python >= 3.11 only)
    names = re.findall(r'^\s*name\s*=\s*["\']([^"\']+)["\']', text, flags=re.M)
    return parent if PROJECT in names else None


def check_docs_checkout(option, parent=None, instead=None):
    """Refuse ``option`` (``--update-docs``, ``--apply``), which rewrites the checkout's
    docs/benchmarks.md, where the package runs from no checkout: it would create a
    ``docs`` folder beside the installed package.

    ``instead``: what the message offers besides a checkout (default: leaving ``option`` out,
    the results still written to ``--out DIR``).

    Raises
    ------
    RunSetupError
        Naming the option, where the package is installed and what to do instead.
    """
    if checkout_root(parent) is None:
        parent = PACKAGE_PARENT if parent is None else Path(parent)
        instead = f"leave out {option} (the results still go to --out DIR)" if instead is None else instead
        raise RunSetupError(
            f"{option} rewrites docs/benchmarks.md of a {PROJECT} checkout, and this {PROJECT} is an installed "
            f"package ({parent / 'neuralop_mp'}) with no checkout around it: run it from a checkout "
            f"(pip install -e CHECKOUT), or {instead}.")


def device_description():
    """A one-line description of the device the benchmark ran on."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}, torch {torch.__version__})"
    # CPU timings depend on the vector unit torch dispatches to (AVX2, AVX512) and on
    # whether the CPU multiplies bfloat16 natively (AVX512-BF16, AMX): the capability alone
    # does not tell the second
    capability = torch.backends.cpu.get_cpu_capability()
    bf16 = "bfloat16 matrix units" if native_half_matmul(torch.bfloat16, "cpu") else "no bfloat16 matrix units"
    return (f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {capability}, {bf16}, "
            f"torch {torch.__version__})")


NOTES_BEGIN, NOTES_END = "<!-- NOTES -->", "<!-- END NOTES -->"


def _one_block(text, begin, end, what):
    """``(start, stop)`` of the one ``begin`` ... ``end`` block of ``text`` (None if it has
    neither marker); ValueError on a lone, repeated or misordered marker, which a rewrite
    would otherwise resolve by dropping or duplicating hand-written text."""
    n_begin, n_end = text.count(begin), text.count(end)
    if n_begin == n_end == 0:
        return None
    if n_begin != 1 or n_end != 1 or text.index(end) < text.index(begin):
        raise ValueError(f"{what} has {n_begin} '{begin}' and {n_end} '{end}' marker(s); expected one of each, "
                         f"'{begin}' first, or none. Fix the markers by hand: nothing was written.")
    return text.index(begin), text.index(end) + len(end)


def _with_notes(body, old_section, name):
    """``body`` with the old section's notes block under its first line (the title)."""
    where = _one_block(old_section, NOTES_BEGIN, NOTES_END, f"Section {name!r} of the benchmark document")
    if where is None:
        return body
    if NOTES_BEGIN in body or NOTES_END in body:
        raise ValueError(f"The new text of section {name!r} has notes markers of its own and the old section has "
                         "notes: which to keep is not clear. Nothing was written.")
    title, _, rest = body.partition("\n")
    return f"{title}\n\n{old_section[where[0]:where[1]]}\n\n{rest.lstrip()}"


def update_section(name, body, path=DEFAULT_DOC):
    """Replace (or append) the section ``name`` of the benchmark document, keeping the
    old section's hand-written notes (``<!-- NOTES -->`` ... ``<!-- END NOTES -->``).

    Raises ValueError, writing nothing, where the section's or the notes' markers are
    lone, repeated or out of order."""
    path = Path(path)
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    where = _one_block(text, begin, end, f"{path}")
    if where is not None:
        old = text[where[0] + len(begin):where[1] - len(end)]
        text = text[:where[0]] + f"{begin}\n{_with_notes(body.rstrip(), old, name)}\n{end}" + text[where[1]:]
    else:
        text = text.rstrip() + f"\n\n{begin}\n{body.rstrip()}\n{end}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    # atomically: a full disk mid-write cut the document short, every later section and its notes lost
    write_atomic(path, lambda f: f.write(text.encode("utf-8")))
    return path


def header(title, command):
    """Common header: title, device, date and the command that produced the table."""
    today = datetime.date.today().isoformat()
    return f"## {title}\n\nDevice: {device_description()}. Date: {today}.\nCommand: `{command}`\n"


def fno_description(model):
    """``"FNO 3 layers, 16 channels, 8x8 modes"`` for a model config dict."""
    modes = "x".join(str(m) for m in model["n_modes"])
    return f"FNO {model['n_layers']} layers, {model['hidden_channels']} channels, {modes} modes"


def run_conditions():
    """Thread count, CPU memory and load average at the end of a timed run (times compare only within one run)."""
    return (f"{torch.get_num_threads()} torch thread(s); CPU memory: {describe_cpu_allocator()}; "
            f"load average when the run ended: "
            f"{os.getloadavg()[0]:.1f} (times are comparable only within one run).")


def timed_section(title, command, description, table):
    """A timed benchmark's markdown section: :func:`header`, ``description`` followed by
    :func:`run_conditions`, then ``table``."""
    return f"{header(title, command)}\n{description} {run_conditions()}\n\n{table}\n"


def markdown_table(rows, columns):
    """Render a list of dicts as a markdown table with the given column order."""
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c)) for c in columns) + " |")
    return "\n".join(lines)


def check_out_folder(text, option="--out"):
    """Refuse, before any work, an output folder ``text`` that could not be written after it.

    Nothing is created here (the arguments may still fail, or ask for --help): the folder
    itself where it exists, else the nearest folder above it that does, must take new files
    (:func:`~neuralop_mp.run_setup.check_writable`). Shared by every benchmark's ``--out`` and
    by ``neuralop-mp diagnose --out``.

    Raises
    ------
    RunSetupError
        Naming the folder, the reason and ``option``.
    """
    if file_in_the_way(text) is not None:  # check_writable's message names the file, once
        check_writable(text, option, create=False)
    folder = Path(text)
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    try:
        check_writable(folder, option, create=False)
    except RunSetupError as error:
        if folder == Path(text):
            raise
        raise RunSetupError(f"Output folder {str(text)!r} cannot be created: {error}") from None
    return text


def writable_out(text):
    """argparse ``type`` of ``--out DIR``: :func:`check_out_folder` while the arguments are
    parsed, so a folder that cannot be written fails before the run, not after it, with its
    results."""
    try:
        return check_out_folder(text)
    except RunSetupError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_output_arguments(parser):
    """``--out DIR`` and ``--update-docs``, shared by every benchmark."""
    parser.add_argument("--out", default=None, metavar="DIR", type=writable_out,
                        help="folder for the markdown and JSON results (default: ./runs/bench-NAME-TIMESTAMP)")
    parser.add_argument("--update-docs", action=_UpdateDocs,
                        help="also rewrite this benchmark's section of docs/benchmarks.md (from a checkout)")
    return parser


def refuse_partial_docs_update(parser, name, args, partial):
    """A usage error (before anything is measured) for ``--update-docs`` beside an option of
    ``partial`` (``{flag: given}``) that was given: the docs' ``name`` section is the benchmark's
    whole table, which a partial or tiny run (``--quick``) would replace with its few rows."""
    given = [flag for flag, on in partial.items() if on]
    if args.update_docs and given:
        parser.error(f"--update-docs rewrites docs/benchmarks.md's whole {name} section; it takes the full run, "
                     f"not {', '.join(given)} (leave them out, or leave --update-docs out and copy the rows)")


class _UpdateDocs(argparse.Action):
    """``--update-docs`` (a flag): refused while the arguments are parsed, before anything is
    measured, where there is no checkout whose docs it could rewrite (:func:`check_docs_checkout`)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            check_docs_checkout(option_string)
        except RunSetupError as error:
            parser.error(str(error))
        setattr(namespace, self.dest, True)


def default_output_dir(name, now=None):
    """``./runs/bench-<name>-<YYYYmmdd-HHMMSS>``."""
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"bench-{name}-{stamp}"


def write_results(name, body, data, out=None, update_docs=False, doc_path=DEFAULT_DOC):
    """Write ``<name>.md`` and ``<name>.json`` into ``out``; with ``update_docs`` also the docs section.

    Returns the output folder. ``data`` is made JSON-safe as results.json is
    (:func:`~neuralop_mp.train_report.to_jsonable`: non-finite floats become "inf", "-inf"
    or "nan", other objects their ``str``).
    """
    folder = Path(out) if out else default_output_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    # atomically, as the docs: a full disk leaves an earlier run's file whole, or none, never a cut-off one
    markdown = body.rstrip() + "\n"
    write_atomic(folder / f"{name}.md", lambda f: f.write(markdown.encode("utf-8")))
    payload = {"benchmark": name, "device": device_description(), "date": datetime.date.today().isoformat(),
               "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
               **to_jsonable(data)}
    text = json.dumps(payload, indent=1) + "\n"
    write_atomic(folder / f"{name}.json", lambda f: f.write(text.encode("utf-8")))
    if update_docs:
        if Path(doc_path) == DEFAULT_DOC:  # a Python caller: the command line refused it before measuring
            check_docs_checkout("--update-docs")
        update_section(name, body, doc_path)
    print(f"wrote {folder / (name + '.md')} and {name}.json" + (f"; updated {doc_path}" if update_docs else ""))
    return folder


def shown_command(prog, argv=None):
    """``prog`` and its arguments (``argv``, by default the process's) as a reader would
    re-run them: without ``--out DIR``/``--update-docs``."""
    shown, skip = [], False
    for arg in sys.argv[1:] if argv is None else argv:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif arg != "--update-docs" and not arg.startswith("--out="):
            shown.append(arg)
    return " ".join([prog, *shown])
