"""The pieces of bench/report.py: run metadata, summaries, the Markdown report, the chart.

- :mod:`.targets`: what each scenario loads, and the ratios asgiri is to reach;
- :mod:`.meta`: the machine, versions and settings of a run (meta.json);
- :mod:`.summary`: results.jsonl reduced to one figure per scenario and side;
- :mod:`.markdown`: RESULTS.md;
- :mod:`.chart`: results.png (matplotlib, the only import outside the standard library).
"""

from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
ROOT = BENCH_DIR.parent
