"""gpu_rows.jsonl is strict JSON as every JSON file of the package (a NaN/inf timing was written as
a bare NaN/Infinity, which strict readers refuse), and the rows read back, the table, the plot and
--apply all take a row holding a non-finite value."""
import json
import math

from neuralop_mp.bench import gpu


def _refuse_constant(name):
    raise ValueError(f"not strict JSON: {name}")


def test_a_non_finite_timing_is_written_as_strict_json_and_read_back_as_measured(tmp_path, monkeypatch):
    peaks = iter([float("nan"), 10.0, float("inf")])

    def measure(arch, hidden, res, variant, *args):
        row = dict(model=arch, hidden=hidden, res=res, variant=variant.name, **{"step ms": float("inf")})
        peak = next(peaks, 20.0)
        row["peak MiB"] = peak
        return row

    monkeypatch.setattr(gpu, "measure", measure)
    out = tmp_path / "campaign"
    assert gpu.main(["--dry-run", "--arch", "FNO", "--out", str(out)]) == 0
    lines = (out / "gpu_rows.jsonl").read_text().splitlines()
    written = [json.loads(line, parse_constant=_refuse_constant) for line in lines]
    assert written[0]["step ms"] == "inf" and written[0]["peak MiB"] == "nan"
    rows = gpu.read_rows(out / "gpu_rows.jsonl")
    assert math.isinf(rows[0]["step ms"]) and math.isnan(rows[0]["peak MiB"]) and rows[1]["peak MiB"] == 10.0
    assert rows[0]["variant"] == written[0]["variant"]  # strings other than nan/inf stay strings
    # what renders rows takes the rows read back (floats) and the strings alike
    gpu.plot_memory(rows, tmp_path / "again.png")
    gpu.plot_memory(written, tmp_path / "as_written.png")
    assert (tmp_path / "again.png").stat().st_size > 0 and (tmp_path / "as_written.png").stat().st_size > 0
    assert "| inf |" in (out / "gpu.md").read_text()
    table = gpu.markdown_table(written, ["variant", "step ms", "peak MiB"])
    assert "| inf | nan |" in table
    # --apply of this campaign's table, recorded as a full one
    doc = tmp_path / "benchmarks.md"
    doc.write_text("<!-- BEGIN gpu -->\n<!-- NOTES -->\nnotes\n<!-- END NOTES -->\nold\n<!-- END gpu -->\n")
    monkeypatch.setattr(gpu, "DEFAULT_DOC", doc)
    record = json.loads((out / "gpu.json").read_text(), parse_constant=_refuse_constant)
    (out / "gpu.json").write_text(json.dumps({**record, "tiny": False, "archs": None}))
    assert gpu.main(["--apply", str(out)]) == 0
    assert "| inf |" in doc.read_text() and "notes" in doc.read_text()
