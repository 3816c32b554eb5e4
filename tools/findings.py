"""The README's findings table, generated from a committed results folder so it cannot drift.

    python -m tools.findings            # rewrite the block between the README's findings markers
    python -m tools.findings --check    # exit 1 if the README's block is not what the results give

The block sits between `<!-- findings: begin ... -->` and `<!-- findings: end -->`; the
results folder is the laptop default's (`make benchmark`), committed under docs/results/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


from reducecnn import aggregate, store
from reducecnn.report import format_interval, format_mean_std, format_percent

RESULTS = "docs/results/mnist-holdout-v040"
BEGIN, END = "<!-- findings: begin", "<!-- findings: end -->"


def table(results: Path) -> str:
    """Markdown: one row per model of the folder's (single) group, with its verdict against the baseline."""
    runs, warnings = store.read_table(store.locate(str(results.parent), results.name), "runs")
    if runs.empty or warnings:
        raise SystemExit(f"findings: {results} has no readable runs ({'; '.join(warnings) or 'empty'})")
    summary = aggregate.summarize(runs)
    comparison = aggregate.compare_to_baseline(runs).set_index("model")
    lines = ["| model | trainable params | the study's single run % | ours, test acc. % (mean ± std) | seeds "
             "| 95% CI % | vs baseline, points [95% CI] | verdict |",
             "|---|--:|--:|--:|:-:|:-:|--:|---|"]
    for row in summary.itertuples(index=False):
        if row.model in comparison.index:
            pair = comparison.loc[row.model]
            versus = f"{pair.difference * 100:+.2f} {format_interval(pair.ci_low, pair.ci_high, signed=True)}"
            verdict = pair.verdict
        else:
            versus, verdict = "-", "(the reference)"
        lines.append(f"| {row.model} | {int(row.params_trainable):,} | {format_percent(row.study_test_accuracy)} "
                     f"| {format_mean_std(row.test_accuracy_mean, row.test_accuracy_std)} | {row.ok_runs} "
                     f"| {format_interval(row.test_accuracy_ci_low, row.test_accuracy_ci_high)} | {versus} | {verdict} |")
    first = summary.iloc[0]
    lines.append("")
    lines.append(f"{aggregate.describe_settings(first)}; {int(summary['ok_runs'].sum())} runs of reducecnn "
                 f"{runs['reducecnn_version'].iloc[0]} ([{results.as_posix()}]({results.as_posix()}/summary.md)). "
                 "Reproduce: `make benchmark`.")
    return "\n".join(lines)


def replace_block(readme: str, block: str, source: str, begin: str = BEGIN, end: str = END) -> str:
    """The text with the block between `begin ... -->` and `end` replaced; SystemExit if the markers are missing."""
    start, stop = readme.find(begin), readme.find(end)
    if start < 0 or stop < start:
        raise SystemExit(f"findings: {source} has no `{begin} ... -->` / `{end}` markers")
    head = readme[:readme.index("\n", start) + 1]
    return head + block + "\n" + readme[stop:]


def check_or_write(path: Path, current: str, updated: str, check: bool, stale: str) -> int:
    """With `check`: exit status 1 and the `stale` line on stderr if the generated text differs
    from the file's; without: write it. The one rule for every generated block."""
    if check:
        if updated != current:
            print(stale, file=sys.stderr)
            return 1
        return 0
    path.write_text(updated, encoding="utf-8")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default=RESULTS, help=f"results folder (default {RESULTS})")
    parser.add_argument("--readme", default="README.md", help="the file holding the markers (default README.md)")
    parser.add_argument("--check", action="store_true", help="only check that the block is up to date")
    args = parser.parse_args(argv)
    readme_path = Path(args.readme)
    readme = readme_path.read_text(encoding="utf-8")
    updated = replace_block(readme, table(Path(args.results)), args.readme)
    stale = f"findings: the table in {args.readme} is stale; run `python -m tools.findings`"
    status = check_or_write(readme_path, readme, updated, args.check, stale)
    if not args.check:
        print(f"findings: {args.readme} updated from {args.results}")
    return status

if __name__ == "__main__":
    sys.exit(main())
