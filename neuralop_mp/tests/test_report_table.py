"""The summary tables of ``neuralop-mp train`` and ``eval`` fit a terminal: long values wrap."""
import json
from pathlib import Path

from neuralop_mp.tests.test_cli import fake_result
from neuralop_mp.train_report import TABLE_WIDTH, format_eval_summary, format_summary, format_table, write_outputs

# the product path a CPU quickstart reports (about 300 characters)
PRODUCT_PATH = ("mixed: mode-batched matmul in float32, FFT in float32 (dense weight: one matmul batched over modes; "
                "float32 kernels on bfloat16-rounded operands: on CPU these thin per-mode matmuls gain little from "
                "bfloat16 units, and the 16-bit forms need extra layout copies; the same numbers as a 16-bit matmul "
                "with float32 accumulation)")
LONG_FOLDER = "/tmp/" + "a-very-long-folder-name-" * 5 + "run"


def cells(table):
    """``[(quantity, value), ...]`` of each table line (its cells stripped)."""
    return [tuple(cell.strip() for cell in line.strip("|").split(" | "))
            for line in table.splitlines() if line.startswith("| ")]


def value_of(table, quantity):
    """The value of ``quantity``, its continuation lines joined back."""
    rows, found = cells(table), []
    start = [q for q, _ in rows].index(quantity)
    found.append(rows[start][1])
    for q, v in rows[start + 1:]:
        if q:
            break
        found.append(v)
    return " ".join(found)


def with_product_path(result, output_dir="runs/darcy-20261205-121742"):
    result["precision"]["product_paths"] = [PRODUCT_PATH]
    result["output_dir"] = output_dir
    return result


def fits(table):
    """Every line within TABLE_WIDTH columns, and one rectangle: every border lines up."""
    lines = table.splitlines()
    return all(len(line) <= TABLE_WIDTH for line in lines) and len({len(line) for line in lines[1:]}) == 1


def test_a_long_value_wraps_under_an_empty_quantity_cell():
    table = format_summary(with_product_path(fake_result()))
    assert fits(table)
    assert value_of(table, "spectral product path") == PRODUCT_PATH
    rows = cells(table)
    start = [q for q, _ in rows].index("spectral product path")
    assert rows[start][1].startswith("mixed: mode-batched matmul in float32") and rows[start + 1][0] == ""


def test_a_word_longer_than_the_room_stays_whole():
    # a folder is copied from the terminal: it widens the table rather than break
    table = format_summary(with_product_path(fake_result(), output_dir=LONG_FOLDER))
    assert ("output folder", LONG_FOLDER) in cells(table)
    assert value_of(table, "spectral product path") == PRODUCT_PATH


def test_a_short_table_is_as_before():
    assert format_table("t", [("a", "1"), ("bb", "22")]) == "\n".join(
        ["t", "+----+----+", "| a  | 1  |", "| bb | 22 |", "+----+----+"])


def test_eval_wraps_as_train_does():
    result = {**fake_result(), "checkpoint": "runs/darcy-20261205-121742/model", "threads": 1}
    result["precision"] = {"mode": "mixed", "autocast": True, "stabilizer": None, "half_dtype": "auto",
                           "ran_as": PRODUCT_PATH}
    table = format_eval_summary(result)
    assert fits(table)
    assert value_of(table, "precision as run") == PRODUCT_PATH
    # the rows both tables share read the same
    train = format_summary(with_product_path(fake_result()))
    shared = [row for row in cells(table) if row[0].startswith("test ")]
    assert shared and shared == [row for row in cells(train) if row[0].startswith("test ")]


def test_results_json_keeps_the_whole_value(tmp_path):
    files = write_outputs(with_product_path(fake_result()), tmp_path / "run")
    data = json.loads(Path(files["results"]).read_text())
    assert data["precision"]["product_paths"] == [PRODUCT_PATH]


def test_a_number_stays_with_its_unit_when_a_value_wraps():
    from neuralop_mp.train_report import format_table

    value = "11,425 (22,177 real numbers, upstream's count_model_params), 86.63 KiB of parameters and more words"
    quantity = "parameters (24 columns)."  # room for the value ends right after "86.63"
    assert len(quantity) == 24
    table = format_table("t", [(quantity, value)])
    assert not any(line.rstrip(" |").endswith("86.63") for line in table.splitlines())
    assert "86.63 KiB" in table


def test_a_schedule_that_ended_in_full_names_the_half_type_its_earlier_phases_computed_in():
    # a guard (it passes on code that always named the half type); a full-precision run names none:
    # test_eval_stabilizer.py's real run checks train's and eval's rows
    mixed_then_full = fake_result()
    first = mixed_then_full["precision"]["phases"][0]
    mixed_then_full["precision"].update(schedule="mixed:0.5,full:0.5", final_mode="full",
                                        half_dtype="auto (bfloat16)")
    mixed_then_full["precision"]["phases"] = [{**first, "end_epoch": 1},
                                              {**first, "mode": "full", "autocast": False, "start_epoch": 1}]
    assert value_of(format_summary(mixed_then_full), "precision (final)") == "full (half_dtype auto (bfloat16))"
