"""Writing benchmark tables into docs/benchmarks.md, one named section per benchmark.

Each benchmark owns the text between ``<!-- BEGIN name -->`` and ``<!-- END name -->``
so re-running one benchmark replaces its own section and leaves the others alone.
"""
import datetime
import platform
from pathlib import Path

import torch

DEFAULT_DOC = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"


def device_description():
    """A one-line description of the device the benchmark ran on."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    import os

    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__})"


def update_section(name, body, path=DEFAULT_DOC):
    """Replace (or append) the section ``name`` of the benchmark document."""
    path = Path(path)
    begin, end = f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def header(title, command):
    """Common header: title, device, date and the command that produced the table."""
    today = datetime.date.today().isoformat()
    return f"## {title}\n\nDevice: {device_description()}. Date: {today}.\nCommand: `{command}`\n"


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
