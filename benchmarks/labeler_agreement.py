"""Agreement of the rule labeler's positive calls with the IU/Open-i indexers' tags, and its speed.

    python benchmarks/labeler_agreement.py [--reports ../shared/data/iu_reports_dev.csv] [--errors OBS]

Text = findings + impression of each report. For each observation the tags cover (the ``gold ...``
columns: 1 tagged, 0 not tagged, empty = excluded), prints precision / recall / F1 / support of the
labeler's 1.0 calls and the macro average, then the labeler's throughput (reports/s, one process).
``--errors OBS`` lists the false positives / negatives of one observation with the mentions found.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from clinclip.text.labeler import RuleLabeler, positive_agreement
from clinclip.text.rules import find_mentions

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "iu_reports_dev.csv"


def load(path: Path) -> tuple[list[str], dict[str, np.ndarray], pd.DataFrame]:
    frame = pd.read_csv(path)
    texts = (frame["findings"].fillna("") + " " + frame["impression"].fillna("")).str.strip().tolist()
    gold = {c[len("gold "):]: frame[c].to_numpy(dtype=float) for c in frame.columns if c.startswith("gold ")}
    return texts, gold, frame


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=Path, default=DEFAULT)
    ap.add_argument("--errors", default=None, help="observation whose errors to list")
    ap.add_argument("--max-errors", type=int, default=40)
    ap.add_argument("--repeat", type=int, default=3, help="timing repeats (best is reported)")
    args = ap.parse_args()

    texts, gold, frame = load(args.reports)
    labeler = RuleLabeler()
    labeler.label(texts[:5])  # compile the lexicons outside the timing
    best = float("inf")
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        pred = labeler.label(texts)
        best = min(best, time.perf_counter() - t0)
    rows = positive_agreement(pred, gold)

    print(f"{len(texts):,} reports from {args.reports}")
    print(f"{'observation':28s} {'precision':>9s} {'recall':>7s} {'F1':>6s} {'support':>8s} {'scored':>7s}")
    for r in sorted(rows, key=lambda r: r["f1"]):
        print(f"{r['observation']:28s} {r['precision']:9.3f} {r['recall']:7.3f} {r['f1']:6.3f} "
              f"{r['support']:8d} {r['n']:7d}")
    macro = float(np.mean([r["f1"] for r in rows]))
    print(f"{'macro':28s} {np.mean([r['precision'] for r in rows]):9.3f} "
          f"{np.mean([r['recall'] for r in rows]):7.3f} {macro:6.3f}")
    print(f"speed: {len(texts) / best:,.0f} reports/s (rules labeler, one process, best of {args.repeat}; "
          f"{sum(map(len, texts)) / len(texts):.0f} characters per report)")

    from clinclip.text import sentences

    sentences._process_sentence.cache_clear()  # cold sentence cache: the first pass over a corpus
    t0 = time.perf_counter()
    for text in texts:
        sentences.split_text(text)
    cold = time.perf_counter() - t0
    print(f"split_text (sentences, single-entity, temporal): {len(texts) / cold:,.0f} reports/s with a cold "
          f"sentence cache (one process)")

    if args.errors:
        from clinclip.observations import OBSERVATIONS

        j = OBSERVATIONS.index(args.errors)
        g = gold[args.errors]
        shown = 0
        for i, text in enumerate(texts):
            if np.isnan(g[i]):
                continue
            p = pred[i, j] == 1.0
            if p != (g[i] == 1.0):
                kind = "FP" if p else "FN"
                ms = [(m.phrase, m.assertion) for m in find_mentions(text) if m.observation == args.errors]
                print(f"\n[{kind}] uid={frame['uid'][i]} mesh={frame['mesh'][i]}\n  {text}\n  mentions: {ms}")
                shown += 1
                if shown >= args.max_errors:
                    break


if __name__ == "__main__":
    main()
