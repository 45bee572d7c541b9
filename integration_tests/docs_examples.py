"""Extract and run the fenced code blocks of README.md and docs/*.md.

Every ```python block of a file runs, in order, in one namespace per file (a block
may use names an earlier block of the same file defined). A ```bash block runs with
``bash -euo pipefail``. An HTML comment on the line(s) right before a fence, invisible
in the rendered page, changes how the block runs::

    <!-- docs-example: skip: why this block is not run -->
    <!-- docs-example: tiny: `n_train=500` -> `n_train=40`; `n_epochs=20` -> `n_epochs=2` -->

``skip`` needs a reason. ``tiny`` replaces text before running, so a realistic example
runs at test size; every replaced text must occur in the block, so an example that
changes cannot silently escape its shrinking. Blocks in another language (plain
```````, output listings) are not run.
"""
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

RUN_LANGUAGES = ("python", "bash")
_DIRECTIVE = re.compile(r"^<!--\s*docs-example:\s*(\w+)\s*:\s*(.*?)\s*-->$")
_REPLACEMENT = re.compile(r"`([^`]+)`\s*->\s*`([^`]*)`")
_DIRECTIVES = ("skip", "tiny")


class DocsExampleError(AssertionError):
    """A block failed, or its directives are malformed; the message names file and line."""


@dataclass
class CodeBlock:
    """One fenced block: where it is, its language and code, and how to run it."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str
    skip_reason: str = None
    replacements: list = field(default_factory=list)

    @property
    def where(self):
        return f"{self.path.name}:{self.line}"

    def runnable_code(self):
        """The code with the ``tiny`` replacements applied (each must occur)."""
        code = self.code
        for old, new in self.replacements:
            if old not in code:
                raise DocsExampleError(f"{self.where}: tiny replacement `{old}` does not occur in the block.")
            code = code.replace(old, new)
        return code


def extract_blocks(path):
    """Every fenced block of the markdown file ``path``, with the directives before it."""
    path = Path(path)
    lines = path.read_text().splitlines()
    blocks, pending, i = [], [], 0
    while i < len(lines):
        stripped = lines[i].strip()
        match = _DIRECTIVE.match(stripped)
        if not match and stripped.startswith("<!--") and "docs-example" in stripped:
            raise DocsExampleError(f"{path.name}:{i + 1}: malformed docs-example directive {stripped!r}; "
                                   "write <!-- docs-example: skip: REASON --> or <!-- docs-example: tiny: `old` -> `new` -->.")
        if match:
            pending.append((i + 1, match.group(1), match.group(2)))
            i += 1
            continue
        if stripped.startswith("```"):
            language = stripped[3:].strip().lower()
            start = i
            i += 1
            body = []
            while i < len(lines) and not lines[i].strip().startswith("```"):
                body.append(lines[i])
                i += 1
            if i == len(lines):
                raise DocsExampleError(f"{path.name}:{start + 1}: code fence never closed.")
            block = CodeBlock(path, start + 1, language, "\n".join(body) + "\n")
            for line, name, argument in pending:
                _apply_directive(block, line, name, argument)
            blocks.append(block)
            pending = []
        elif stripped and pending:
            raise DocsExampleError(
                f"{path.name}:{pending[0][0]}: docs-example directive is not right before a code fence."
            )
        i += 1
    return blocks


def _apply_directive(block, line, name, argument):
    where = f"{block.path.name}:{line}"
    if name not in _DIRECTIVES:
        raise DocsExampleError(f"{where}: unknown docs-example directive {name!r}; allowed: {', '.join(_DIRECTIVES)}.")
    if name == "skip":
        if not argument:
            raise DocsExampleError(f"{where}: 'skip' needs a reason.")
        block.skip_reason = argument
    else:
        pairs = _REPLACEMENT.findall(argument)
        if not pairs:
            raise DocsExampleError(f"{where}: 'tiny' expects `old` -> `new` pairs separated by ';'.")
        block.replacements.extend(pairs)


def run_python_blocks(blocks, namespace=None):
    """Execute the python blocks in order in one namespace; returns the namespace."""
    namespace = {"__name__": "__docs_example__"} if namespace is None else namespace
    for block in blocks:
        code = compile(block.runnable_code(), block.where, "exec")
        try:
            exec(code, namespace)
        except Exception as error:
            raise DocsExampleError(f"{block.where}: the example raised {type(error).__name__}: {error}") from error
    return namespace


def run_bash_block(block, cwd, timeout=120):
    """Run a bash block in ``cwd`` with this interpreter's scripts (``neuralop-mp``) first on PATH.

    ``.venv/bin/...`` in the docs means this interpreter's environment, so ``cwd`` gets a
    ``.venv`` link to it.
    """
    cwd = Path(cwd)
    venv = Path(sys.executable).parent.parent
    if not (cwd / ".venv").exists():
        (cwd / ".venv").symlink_to(venv, target_is_directory=True)
    env = dict(os.environ, PATH=f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", block.runnable_code()], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise DocsExampleError(f"{block.where}: exit status {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc
