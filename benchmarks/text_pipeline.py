"""Throughput of the report pipeline (rules backends): the labeler alone and the whole ``prepare``.

    python benchmarks/text_pipeline.py [--reports 20000] [--workers 2] [--csv ../shared/data/iu_reports_dev.csv]

Reports are drawn with replacement from the IU dev reports (FINDINGS + IMPRESSION). Because such a sample
repeats texts, the whole pipeline is timed twice: without de-duplication (every row goes through every
stage: the honest per-report cost) and with it (the default, which runs the text stages once per distinct
text, as MIMIC's repeated normal reports allow). Targets on a 2-core laptop: >= 2,000 reports/s for the
labeler, >= 500 reports/s for the whole pipeline with 2 workers.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

DEFAULT_CSV = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "iu_reports_dev.csv"


def load_sample(csv: Path, n: int, seed: int = 0) -> pd.DataFrame:
    iu = pd.read_csv(csv)
    report = ("FINDINGS: " + iu["findings"].fillna("") + "\nIMPRESSION: " + iu["impression"].fillna("")).str.strip()
    rows = np.random.default_rng(seed).integers(len(iu), size=n)
    return pd.DataFrame({"study_id": [f"s{i}" for i in range(n)], "report": report.to_numpy()[rows]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reports", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    args = parser.parse_args()

    from clinclip.text.labeler import get_labeler
    from clinclip.text.prepare import PrepareOptions, prepare_corpus_with_summary
    from clinclip.text.sections import extract_sections

    frame = load_sample(args.csv, args.reports)
    texts = [" ".join(v for v in extract_sections(r).values() if v) for r in frame["report"]]
    rows = []

    labeler = get_labeler("rules")
    start = time.perf_counter()
    labeler.label(texts)
    rows.append(("rules labeler alone (1 process)", time.perf_counter() - start))

    for dedupe in (False, True):
        start = time.perf_counter()
        out, summary = prepare_corpus_with_summary(frame, PrepareOptions(workers=args.workers, dedupe=dedupe,
                                                                         progress=False))
        name = f"whole prepare, {args.workers} workers, {'de-duplicated texts' if dedupe else 'every row'}"
        rows.append((name, time.perf_counter() - start))
    kept = int(out["skip_reason"].isna().sum())

    print(f"\n{args.reports} reports sampled with replacement from {args.csv.name} "
          f"({frame['report'].nunique()} distinct); {kept} kept by prepare\n")
    print(f"| {'stage':<58} | {'seconds':>8} | {'reports/s':>10} |")
    print(f"|{'-' * 60}|{'-' * 10}|{'-' * 12}|")
    for name, seconds in rows:
        print(f"| {name:<58} | {seconds:8.2f} | {args.reports / seconds:10.0f} |")
    print("\nsummary of the last run:")
    for key, value in sorted(summary.items()):
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
