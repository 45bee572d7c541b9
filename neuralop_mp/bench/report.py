"""Where benchmark results go: a run folder, and docs/benchmarks.md only when asked.

Every benchmark writes ``<name>.md`` (its section: header, tables) and
``<name>.json`` (the measured rows) into ``--out DIR`` (default
``./runs/bench-<name>-<YYYYmmdd-HHMMSS>``). Only ``--update-docs`` also rewrites
its section of docs/benchmarks.md, the text between ``<!-- BEGIN name -->`` and
``<!-- END name -->``, so one benchmark never touches another's section and a
user measuring their own machine never edits the docs by accident. Hand-written
reading notes inside a section, between ``<!-- NOTES -->`` and ``<!-- END NOTES -->``,
survive the rewrite: they are put back right under the new section's title.
"""
import datetime
import json
import math
import os
import platform
import sys
from pathlib import Path

import torch

from ..cpu_allocator import describe_cpu_allocator

DEFAULT_DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


def device_description():
    """A one-line description of the device the benchmark ran on."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    # the vector unit torch dispatches to decides CPU timings (AVX2 vs AVX512, bfloat16 matrix units)
    capability = torch.backends.cpu.get_cpu_capability()
    return (f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {capability}, "
            f"torch {torch.__version__})")


NOTES_BEGIN, NOTES_END = "<!-- NOTES -->", "<!-- END NOTES -->"


def _notes(section):
    """The ``<!-- NOTES -->`` block of a section (markers included), or None."""
    if NOTES_BEGIN not in section or NOTES_END not in section.split(NOTES_BEGIN, 1)[1]:
        return None
    inner = section.split(NOTES_BEGIN, 1)[1].split(NOTES_END, 1)[0]
    return f"{NOTES_BEGIN}{inner}{NOTES_END}"


def _with_notes(body, notes):
    """``body`` with ``notes`` under its first line (the section title), unless it has its own."""
    if notes is None or NOTES_BEGIN in body:
        return body
    title, _, rest = body.partition("\n")
    return f"{title}\n\n{notes}\n\n{rest.lstrip()}"


def update_section(name, body, path=DEFAULT_DOC):
    """Replace (or append) the section ``name`` of the benchmark document, keeping the
    old section's hand-written notes (``<!-- NOTES -->`` ... ``<!-- END NOTES -->``)."""
    path = Path(path)
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if begin in text and end in text.split(begin, 1)[1]:
        head, rest = text.split(begin, 1)
        old, tail = rest.split(end, 1)
        text = head + f"{begin}\n{_with_notes(body.rstrip(), _notes(old))}\n{end}" + tail
    else:
        text = text.rstrip() + f"\n\n{begin}\n{body.rstrip()}\n{end}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
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


def add_output_arguments(parser):
    """``--out DIR`` and ``--update-docs``, shared by every benchmark."""
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="folder for the markdown and JSON results (default: ./runs/bench-NAME-TIMESTAMP)")
    parser.add_argument("--update-docs", action="store_true",
                        help="also rewrite this benchmark's section of docs/benchmarks.md")
    return parser


def default_output_dir(name, now=None):
    """``./runs/bench-<name>-<YYYYmmdd-HHMMSS>``."""
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"bench-{name}-{stamp}"


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def write_results(name, body, data, out=None, update_docs=False, doc_path=DEFAULT_DOC):
    """Write ``<name>.md`` and ``<name>.json`` into ``out``; with ``update_docs`` also the docs section.

    Returns the output folder. ``data`` is made JSON-safe (non-finite floats become
    null, other objects their ``str``).
    """
    folder = Path(out) if out else default_output_dir(name)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.md").write_text(body.rstrip() + "\n")
    payload = {"benchmark": name, "device": device_description(), "date": datetime.date.today().isoformat(),
               "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
               **_jsonable(data)}
    (folder / f"{name}.json").write_text(json.dumps(payload, indent=1) + "\n")
    if update_docs:
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
