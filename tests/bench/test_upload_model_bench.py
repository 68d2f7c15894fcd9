"""The upload-model benchmark runs end to end at a few MB on both targets (so the 2 GB run the
results come from is ready to repeat), and keeps its one section of RESULTS.md."""

from __future__ import annotations

import os
import re
from pathlib import Path

from bench import upload_model_bench
from bench.upload_model_bench import BEGIN, END, write_section


def azure_rows(text: str) -> dict[str, list[str]]:
    section = text.split("### Azure Files share", 1)[1]
    rows = re.findall(r"^\| ((?:ours|baseline)[^|]*)\|(.*)\|$", section, re.MULTILINE)
    return {name.strip(): [cell.strip() for cell in cells.split("|")] for name, cells in rows}


def test_a_small_run_measures_ours_and_the_baselines_on_both_targets(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    environment = dict(os.environ)
    assert upload_model_bench.main(["--size-mb", "8", "--results", str(results)]) == 0
    assert dict(os.environ) == environment  # nothing of the double's left behind

    text = results.read_text()
    assert len(re.findall(r"^\| (?:ours|baseline)", text, re.MULTILINE)) == 3 + 5
    azure = azure_rows(text)
    # columns: wall, bytes sent, throughput, peak RSS, storage requests, model reads
    assert azure["ours: upload-model (first)"][1] == "9 MiB"
    assert azure["ours: re-run (nothing to upload)"][1] == "0 MiB"
    assert all(cells[5] == "0" for name, cells in azure.items() if name.startswith("ours"))
    assert "Goal: upload-model peaks under 300 MB RSS" in text


def test_the_section_replaces_its_older_self_and_keeps_the_others(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text(
        "# Benchmarks\n\nearlier\n\n## upload-model: 2049 MiB model (one 2048 MiB weight file)\n"
        "\n| old row |\n\n<!-- gpu-decode-bench:begin -->\n# GPU decode\n"
    )
    write_section(results, f"{BEGIN}\nfirst\n{END}\n")
    write_section(results, f"{BEGIN}\nsecond\n{END}\n")
    assert results.read_text() == (
        f"# Benchmarks\n\nearlier\n\n{BEGIN}\nsecond\n{END}\n\n"
        "<!-- gpu-decode-bench:begin -->\n# GPU decode\n"
    )
