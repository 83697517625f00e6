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
import os
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


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the workers): robust on a shared machine."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


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
    labeler.label(["warm-up: no pleural effusion."])  # lexicon compilation is a one-off
    start, cpu = time.perf_counter(), cpu_seconds()
    labeler.label(texts)
    rows.append(("rules labeler alone (1 process)", time.perf_counter() - start, cpu_seconds() - cpu))

    for dedupe in (False, True):
        start, cpu = time.perf_counter(), cpu_seconds()
        out, summary = prepare_corpus_with_summary(frame, PrepareOptions(workers=args.workers, dedupe=dedupe,
                                                                         progress=False))
        name = f"whole prepare, {args.workers} workers, {'de-duplicated texts' if dedupe else 'every row'}"
        rows.append((name, time.perf_counter() - start, cpu_seconds() - cpu))
    kept = int(out["skip_reason"].isna().sum())

    print(f"\n{args.reports} reports sampled with replacement from {args.csv.name} "
          f"({frame['report'].nunique()} distinct); {kept} kept by prepare; load average at the end: "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs\n")
    print(f"| {'stage':<56} | {'wall s':>7} | {'reports/s':>9} | {'CPU s':>7} | {'reports/CPU-s':>13} |")
    print(f"|{'-' * 58}|{'-' * 9}|{'-' * 11}|{'-' * 9}|{'-' * 15}|")
    for name, seconds, cpu in rows:
        print(f"| {name:<56} | {seconds:7.2f} | {args.reports / seconds:9.0f} | {cpu:7.2f} | "
              f"{args.reports / cpu:13.0f} |")
    print("\nreports/CPU-s does not depend on other jobs sharing the machine; with N idle cores and N workers "
          "the whole pipeline approaches N x that rate.")
    print("\nsummary of the last run:")
    for key, value in sorted(summary.items()):
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
