"""docs/benchmarks.md and a benchmark's own files on a full disk: the previous file is kept whole. It
was written in place, so a full disk cut the document short mid-row, every later section and its
notes lost. The disk is a file size limit (RLIMIT_FSIZE, unprivileged) in a subprocess: a write past
it fails with EFBIG, as one past a full disk fails with ENOSPC."""
import subprocess
import sys
import textwrap

import pytest

resource = pytest.importorskip("resource")  # POSIX only
pytestmark = pytest.mark.reliability

LIMIT = 4000  # bytes a file may grow to in the subprocess


def run_limited(code):
    """Run ``code`` (after ``from neuralop_mp.bench import report``) with files limited to LIMIT bytes."""
    script = textwrap.dedent(f"""
        import resource, signal, sys
        from pathlib import Path
        from neuralop_mp.bench import report
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, ({LIMIT}, {LIMIT}))
        try:
    """) + textwrap.indent(textwrap.dedent(code), "    ") + textwrap.dedent("""
        except OSError as error:
            print("OSError", error.errno)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.slow  # starts Python interpreters of its own: the end-to-end tier (pyproject.toml)
def test_a_docs_update_that_meets_a_full_disk_keeps_the_whole_document(tmp_path):
    doc = tmp_path / "benchmarks.md"
    sections = [f"<!-- BEGIN b{i} -->\n## b{i}\n\n<!-- NOTES -->\nnote {i}\n<!-- END NOTES -->\n\n"
                f"| a | b |\n|---|---|\n" + "| 1 | 2 |\n" * 40 + f"<!-- END b{i} -->\n" for i in range(5)]
    text = "# Benchmarks\n\n" + "\n".join(sections)
    doc.write_text(text)
    assert len(text) < LIMIT
    body = "## b0\n\n| a | b |\n|---|---|\n" + "| 100 | 200 |\n" * 200  # the document outgrows the limit
    out = run_limited(f"report.update_section('b0', {body!r}, Path({str(doc)!r}))")
    assert out.startswith("OSError"), out
    assert doc.read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["benchmarks.md"]  # no temporary left


@pytest.mark.slow  # starts Python interpreters of its own: the end-to-end tier (pyproject.toml)
def test_a_benchmarks_markdown_that_meets_a_full_disk_keeps_the_previous_one(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "b.md").write_text("previous\n")
    body = "| a | b |\n" * 1000
    out = run_limited(f"report.write_results('b', {body!r}, {{}}, out={str(folder)!r})")
    assert out.startswith("OSError"), out
    assert (folder / "b.md").read_text() == "previous\n"
    assert sorted(p.name for p in folder.iterdir()) == ["b.md"]


def test_a_benchmark_whose_results_cannot_be_written_says_it_in_one_line(tmp_path, monkeypatch, capsys):
    """bench's command line printed a traceback for a results file it could not write."""
    import errno

    from neuralop_mp.bench import cli, report

    def full(path, write, what=""):
        from neuralop_mp.training.checkpointing import write_error

        raise write_error(path, OSError(errno.ENOSPC, "No space left on device"), what)

    monkeypatch.setattr(report, "write_atomic", full)
    assert cli.main(["trainer", "--quick", "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()  # the rows' progress lines, then the error's one line
    assert err[-1].startswith("neuralop-mp bench trainer: error: could not write ")
    assert not any("Traceback" in line for line in err)
    assert "the disk is full" in err[-1]
