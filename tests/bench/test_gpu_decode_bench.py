"""The GPU decode benchmark runs end to end on CPU with a tiny shape (so it is ready for a GPU)."""

from __future__ import annotations

import re
from pathlib import Path

from bench import gpu_decode_bench


def test_a_tiny_cpu_run_measures_both_sides_and_keeps_one_section(tmp_path: Path) -> None:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Serving benchmark\n\nearlier results\n")
    arguments = ["--tiny", "--max-tokens", "3", "--bandwidth-gbs", "100", "--results"]

    assert gpu_decode_bench.main([*arguments, str(results)]) == 0
    assert gpu_decode_bench.main([*arguments, str(results)]) == 0

    text = results.read_text()
    assert text.startswith("# Serving benchmark\n\nearlier results\n")
    assert text.count(gpu_decode_bench.SECTION_BEGIN) == 1
    rows = re.findall(r"^\| (1|16) \| ([\d.]+) \| ([\d.]+) ", text, re.MULTILINE)
    assert [row[0] for row in rows] == ["1", "16"]
    assert all(float(ours) > 0 and float(generate) > 0 for _, ours, generate in rows)
    bound = re.search(r"bandwidth / model bytes\): (\d+) tok/s", text)
    assert bound is not None and int(bound.group(1)) > 0
    assert "tiny Phi-3-shaped (smoke run)" in text
