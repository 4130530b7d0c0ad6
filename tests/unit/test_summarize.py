"""scripts/paper_results.py against the paper's text, and scripts/summarize.py on hand-written run directories.

The paper numbers are re-read from ``shared/paper/meltr.txt`` with regular expressions (an independent
transcription); the summariser's numbers are checked against values computed here from the records
written into each fake run.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from scripts.paper_results import PAPER, TABLE7_COEFFICIENTS, TABLE11_LOSSES, coefficients_yaml
from scripts.paper_results import main as paper_main
from scripts.summarize import TABLES, build_tables, main, read_run

PAPER_TXT = Path(__file__).resolve().parents[3] / "shared" / "paper" / "meltr.txt"
NUM = r"([\d.]+)"


@pytest.fixture(scope="module")
def paper_text() -> str:
    if not PAPER_TXT.is_file():
        pytest.fail(f"paper text missing: {PAPER_TXT} (shared/paper/meltr.txt next to the repository)")
    return PAPER_TXT.read_text(encoding="utf-8")


# ------------------------------------------------------------------ transcription


def test_table7_numbers_and_coefficients_match_the_paper(paper_text: str) -> None:
    rows = re.findall(r"\(([A-E])\) ((?:\d \d \d \d \d \d \d \d)) " + " ".join([NUM] * 5), paper_text)
    assert [r[0] for r in rows] == ["A", "B", "C", "D", "E"]
    metrics = ("BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")
    for row, coeffs, *values in rows:
        assert PAPER["7"][row] == dict(zip(metrics, map(float, values)))
        c = [float(x) for x in coeffs.split()]
        ours = TABLE7_COEFFICIENTS[row]
        # columns 1-5 are equal in every row; 6, 7, 8 are read as mfm, decoder, m_decoder (see NOTES["7"])
        assert len(set(c[:5])) == 1 and {ours[k] for k in ("joint", "alignment", "mlm", "m_joint", "m_align")} == {c[0]}
        assert (ours["mfm"], ours["decoder"], ours["m_decoder"]) == tuple(c[5:])
    (meltr,) = re.findall(r"MELTR ADAPTIVE " + " ".join([NUM] * 5), paper_text)
    assert PAPER["7"]["meltr"] == dict(zip(metrics, map(float, meltr)))


def test_table8_numbers_match_the_paper(paper_text: str) -> None:
    found = re.findall(NUM + r" \(\+[\d.]+\) ([\d,]+) \(\+([\d.]+)%\)", paper_text)
    assert len(found) == 6
    for row, (r1, secs, pct) in zip(["sum", "itd", "stocbio", "aid_cg", "aid_fp", "lite"], found):
        assert PAPER["8"][row] == {"t2v_R@1": float(r1), "epoch_time_s": float(secs.replace(",", "")), "time_vs_sum_pct": float(pct)}
        assert PAPER["8"][row]["time_vs_sum_pct"] == pytest.approx(100 * (float(secs.replace(",", "")) / 547 - 1), abs=0.05)
    assert PAPER["8"]["lite_jvp"] == PAPER["8"]["lite"]


def test_tables_9_and_10_match_the_paper(paper_text: str) -> None:
    header = re.search(r"\n0 \| 0.001 \| 0.01 \| 0.1 \| 1.0 \| 10 \| 100 \| \|", paper_text)
    values = re.search(r"R@1 \| " + r" \| ".join([NUM] * 7) + r" \|", paper_text)
    assert header and values
    assert [v["t2v_R@1"] for v in PAPER["9"].values()] == [float(x) for x in values.groups()]
    assert list(PAPER["9"]) == ["0", "0.001", "0.01", "0.1", "1", "10", "100"]
    for label, row in [("Linear", "linear"), (r"Transformer \(SE\+TE\)", "se_te"), (r"Transformer \(SE only\)", "se")]:
        (value,) = re.findall(label + r" \| " + NUM + r" \|", paper_text)
        assert PAPER["10"][row] == {"t2v_R@1": float(value)}
    assert re.search(r"Transformer \(TE only\) \| - \|", paper_text) and PAPER["10"]["te"] == {"t2v_R@1": None}


def test_table11_numbers_match_the_paper_and_avg_gain_is_the_mean_gain(paper_text: str) -> None:
    found = re.findall(r"(MTL|METLR|MELTR) " + " ".join([NUM] * 4) + r" \+" + NUM, paper_text)
    assert len(found) == 10
    order = [f"{r}-{m}" for r in ("base", "m_decoder", "m_joint", "m_align", "all") for m in ("sum", "meltr")]
    for row, (method, *vals) in zip(order, found):
        assert ("sum" if method == "MTL" else "meltr") == row.split("-")[1]
        assert PAPER["11"][row] == dict(zip(("BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "avg_gain"), map(float, vals)))
        base = PAPER["11"][f"base-{row.split('-')[1]}"]
        gain = sum(PAPER["11"][row][k] - base[k] for k in ("BLEU-3", "BLEU-4", "METEOR", "ROUGE-L")) / 4
        assert gain == pytest.approx(PAPER["11"][row]["avg_gain"], abs=0.006)
    # the rows with all eight losses are Table 7's (C) and MELTR rows
    for row, t7 in (("all-sum", "C"), ("all-meltr", "meltr")):
        assert all(PAPER["11"][row][k] == PAPER["7"][t7][k] for k in ("BLEU-3", "BLEU-4", "METEOR", "ROUGE-L"))
    assert TABLE11_LOSSES["base"] == ["joint", "alignment", "mlm", "mfm", "decoder"]


def test_coefficients_cli(capsys) -> None:
    assert paper_main(["coefficients", "D"]) == 0
    assert capsys.readouterr().out.strip() == coefficients_yaml("D")
    assert coefficients_yaml("D") == "{joint: 1, alignment: 1, mlm: 1, m_joint: 1, m_align: 1, mfm: 0, decoder: 1, m_decoder: 1}"
    assert paper_main(["coefficients", "Z"]) == 2
    assert "A, B, C, D, E" in capsys.readouterr().err


# ------------------------------------------------------------------ summariser on fake runs


def _run(root: Path, name: str, table: str, row: str, *, status: str = "finished", evals: list[dict] = (),
         epochs: list[dict] = (), summary: bool = True, best: str = "t2v_R@1", method: str = "meltr", **extra) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "row.json").write_text(json.dumps({"table": table, "row": row, "status": status, "method": method, "tiny": False, **extra}))
    (d / "config.yaml").write_text(f"trainer:\n  best_metric: {best}\n  best_mode: max\n")
    recs = [{"kind": "train", "step": 0, "epoch": 0, "losses": {"a": 1.0}}]
    recs += [{"kind": "epoch", "step": i, "epoch": i, **e} for i, e in enumerate(epochs)]
    recs += [{"kind": "eval", "step": i, "epoch": i + 1, "metrics": m} for i, m in enumerate(evals)]
    if summary:
        recs.append({"kind": "summary", "step": 9, "epoch": len(evals), "metrics": evals[-1] if evals else {}})
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return d


def _line(tables: dict, table: str, row: str):
    (line,) = [ln for ln in tables[table] if ln.row == row and ln.status != "not run"]
    return line


def test_best_eval_is_selected_and_scaled_to_the_paper_unit(tmp_path) -> None:
    evals = [{"t2v_R@1": 0.20, "t2v_R@5": 0.5}, {"t2v_R@1": 0.31, "t2v_R@5": 0.4}, {"t2v_R@1": 0.31, "t2v_R@5": 0.9},
             {"t2v_R@1": 0.25, "t2v_R@5": 0.6}]
    run = _run(tmp_path, "g", "9", "0.1", evals=evals)
    res = read_run(run)
    assert res.metrics["t2v_R@5"] == 0.4  # the first of the equal best R@1 values, as the trainer keeps best.pt
    assert read_run(run, "last").metrics["t2v_R@1"] == 0.25
    line = _line(build_tables([res]), "9", "0.1")
    assert line.ours["t2v_R@1"] == pytest.approx(31.0) and line.paper["t2v_R@1"] == 28.4
    assert line.diff["t2v_R@1"] == pytest.approx(31.0 - 28.4)


def test_table8_time_overhead_and_memory_from_epoch_records(tmp_path) -> None:
    ep = lambda t, complete=True: {"epoch_time_s": t, "complete": complete, "peak_rss_mib": 100.0 + t}  # noqa: E731
    s = read_run(_run(tmp_path, "s", "8", "sum", evals=[{"t2v_R@1": 0.2}], epochs=[ep(10.0), ep(12.0), ep(3.0, False)]))
    m = read_run(_run(tmp_path, "m", "8", "itd", evals=[{"t2v_R@1": 0.3}], epochs=[ep(20.0), ep(24.0)]))
    tables = build_tables([s, m])
    sum_line, itd_line = _line(tables, "8", "sum"), _line(tables, "8", "itd")
    assert sum_line.ours["epoch_time_s"] == 11.0 and itd_line.ours["epoch_time_s"] == 22.0  # incomplete epoch left out
    assert sum_line.ours["time_vs_sum_pct"] == pytest.approx(0.0) and itd_line.ours["time_vs_sum_pct"] == pytest.approx(100.0)
    assert itd_line.diff["time_vs_sum_pct"] == pytest.approx(100.0 - 136.9)
    assert itd_line.diff["epoch_time_s"] is None  # seconds on other hardware are not compared
    assert sum_line.ours["peak_memory_mib"] == 112.0 and "CPU peak RSS" in sum_line.notes
    assert {ln.row: ln.status for ln in tables["8"]}["aid_cg"] == "not run"


def test_table11_avg_gain_uses_the_base_row_of_the_same_method(tmp_path) -> None:
    cap = lambda x: {"BLEU-3": x, "BLEU-4": x / 2, "METEOR": x / 3, "ROUGE-L": x / 4, "CIDEr": 1.0}  # noqa: E731
    runs = [read_run(_run(tmp_path, n, "11", n, evals=[cap(v)], best="BLEU-4"))
            for n, v in (("base-sum", 0.20), ("m_joint-sum", 0.24), ("m_joint-meltr", 0.30))]
    tables = build_tables(runs)
    expected = 100 * (0.04 + 0.02 + 0.04 / 3 + 0.01) / 4
    assert _line(tables, "11", "m_joint-sum").ours["avg_gain"] == pytest.approx(expected)
    assert _line(tables, "11", "m_joint-meltr").ours["avg_gain"] is None  # no base-meltr run
    assert _line(tables, "11", "m_joint-sum").paper["avg_gain"] == 0.31


def test_outcomes_other_than_finished_are_reported_without_numbers(tmp_path) -> None:
    te = _run(tmp_path, "te", "10", "te", status="cannot_train", message="CombinerTrainingError: output ignores losses")
    bad = _run(tmp_path, "bad", "10", "linear", status="failed", exit_code=3, message="boom", evals=[{"t2v_R@1": 0.5}])
    half = _run(tmp_path, "half", "10", "se", status="started", evals=[{"t2v_R@1": 0.5}], summary=False)
    old = _run(tmp_path, "old", "10", "se", status="started", evals=[{"t2v_R@1": 0.5}])  # an earlier run's summary
    cut = _run(tmp_path, "cut", "10", "se", status="finished", evals=[{"t2v_R@1": 0.5}], summary=False)
    results = {r.run_dir.name: r for r in map(read_run, (te, bad, half, old, cut, tmp_path / "absent"))}
    assert all(results[k].status == "unfinished" and results[k].metrics == {} for k in ("old", "cut"))
    assert results["te"].status == "cannot train" and "output ignores losses" in results["te"].message
    assert results["bad"].status == "failed (exit 3)" and results["bad"].metrics == {}
    assert results["half"].status == "unfinished" and results["half"].metrics == {}
    assert results["absent"].status == "missing" and str(tmp_path / "absent") in results["absent"].message
    lines = {ln.row: ln for ln in build_tables([results[k] for k in ("te", "bad", "half")])["10"]}
    assert lines["te"].ours == {"t2v_R@1": None} and lines["te"].paper == {"t2v_R@1": None}
    assert lines["se_te"].status == "not run"


def test_cli_writes_markdown_and_csv(tmp_path, capsys) -> None:
    evals = [{"BLEU-3": 0.1234, "BLEU-4": 0.0567, "METEOR": 0.089, "ROUGE-L": 0.25, "CIDEr": 0.5}]
    run = _run(tmp_path / "runs", "E", "7", "E", evals=evals, best="BLEU-4", method="fixed")
    te = _run(tmp_path / "runs", "te", "10", "te", status="cannot_train", message="CombinerTrainingError: x")
    plain = tmp_path / "runs" / "plain"
    plain.mkdir()
    assert main([str(run), str(te), str(plain), "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    md = (tmp_path / "out" / "summary.md").read_text()
    assert md in printed and TABLES["7"].title in md and TABLES["10"].title in md
    assert "| (E) (D) with decoder, m_decoder x8 | 12.34 | 23.31 | -10.97 | 5.67 | 17.23 | -11.56 |" in md
    assert "| Transformer (TE only) |  | - |  | cannot train |" in md
    assert f"- {plain}: not placed: {plain / 'row.json'} not found" in md
    with open(tmp_path / "out" / "table7.csv", newline="") as f:
        rows = {r["row"]: r for r in csv.DictReader(f)}
    for key, value in evals[0].items():
        scale = 1.0 if key == "CIDEr" else 100.0
        assert float(rows["E"][f"{key}_ours"]) == pytest.approx(value * scale, rel=1e-12)
        assert float(rows["E"][f"{key}_paper"]) == PAPER["7"]["E"][key]
    assert rows["A"]["status"] == "not run" and rows["A"]["BLEU-4_ours"] == ""
    assert main([str(plain)]) == 1  # nothing could be placed


def test_malformed_files_are_reported_with_their_path(tmp_path) -> None:
    run = _run(tmp_path, "r", "9", "1", evals=[{"t2v_R@1": 0.1}])
    with open(run / "metrics.jsonl", "a") as f:
        f.write("{oops\n")
    res = read_run(run)
    assert res.status == "unreadable" and f"{run / 'metrics.jsonl'}:" in res.message
    (run / "row.json").write_text("{}")
    res = read_run(run)
    assert res.status == "not placed" and str(run / "row.json") in res.message and "table" in res.message
