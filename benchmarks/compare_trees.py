"""One benchmark script, side by side on two checkouts, in alternating rounds.

Each round runs the script once per checkout (``PYTHONPATH=CHECKOUT/src``,
its extension built in place), the order swapped every round, and reads the
``results`` of its ``--json``: each variant's median GiB/s (and server CPU
per GiB where the script reports one).  The table gives, per variant, the
median over rounds on each checkout and their ratio, with the per-round
ratios' range: a refactor's "within 5%" is read there.

    python benchmarks/compare_trees.py --before /tmp/old --rounds 3 -- \\
        benchmarks/bench_file_file.py --size 256M --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _run(tree: Path, script: list[str], json_path: Path) -> dict[str, dict[str, float]]:
    env = dict(os.environ, PYTHONPATH=str(tree / "src"))
    cmd = [sys.executable, *script, "--json", str(json_path)]
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    data = json.loads(json_path.read_text())
    figures: dict[str, dict[str, float]] = {}
    for name, entry in _results(data).items():
        summary = entry.get("summary", entry)
        gib = summary.get("gib_s", {}).get("median")
        if gib is None:
            continue
        row = {"gib_s": float(gib)}
        for key in ("cpu_s_per_gib", "server_cpu_s_per_gib"):
            value = summary.get(key)
            if isinstance(value, dict):
                value = value.get("median")
            if isinstance(value, int | float):
                row["cpu"] = float(value)
        figures[name] = row
    return figures


def _results(data: dict[str, Any]) -> dict[str, Any]:
    """The variants of a script's JSON: ``results``, or its first level of nesting."""
    results = data.get("results", {})
    if results and all("summary" in v or "gib_s" in v for v in results.values()):
        return dict(results)
    flat: dict[str, Any] = {}
    for group, inner in results.items():
        if isinstance(inner, dict):
            for name, entry in inner.items():
                if isinstance(entry, dict) and ("summary" in entry or "gib_s" in entry):
                    flat[f"{name} [{group}]"] = entry
    return flat


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", required=True, type=Path, help="the other checkout")
    p.add_argument("--after", type=Path, default=HERE.parent, help="default: this checkout")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("script", nargs="+", help="the benchmark script and its arguments (after --)")
    args = p.parse_args(argv)
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    rounds: list[dict[str, dict[str, dict[str, float]]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.rounds):
            order = ["before", "after"] if i % 2 == 0 else ["after", "before"]
            this: dict[str, dict[str, dict[str, float]]] = {}
            for label in order:
                print(f"round {i + 1}: {label}", file=sys.stderr, flush=True)
                this[label] = _run(trees[label], args.script, Path(tmp) / f"{label}{i}.json")
            rounds.append(this)
    names = [n for n in rounds[0]["after"] if n in rounds[0]["before"]]
    print(f"{' '.join(args.script)}; {args.rounds} alternating rounds")
    print(f"before: {trees['before']}\nafter:  {trees['after']}\n")
    print(
        "| variant | before GiB/s | after GiB/s | after/before | per round "
        "| CPU s/GiB before | after |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in names:
        b = [r["before"][name]["gib_s"] for r in rounds]
        a = [r["after"][name]["gib_s"] for r in rounds]
        ratios = [x / y for x, y in zip(a, b, strict=True) if y]
        cpu_b = [r["before"][name].get("cpu") for r in rounds]
        cpu_a = [r["after"][name].get("cpu") for r in rounds]
        cb = statistics.median(c for c in cpu_b if c is not None) if any(cpu_b) else None
        ca = statistics.median(c for c in cpu_a if c is not None) if any(cpu_a) else None
        print(
            f"| {name} | {statistics.median(b):.2f} | {statistics.median(a):.2f} | "
            f"{statistics.median(a) / statistics.median(b):.3f} | "
            f"{min(ratios):.2f}-{max(ratios):.2f} | "
            f"{'-' if cb is None else f'{cb:.3f}'} | {'-' if ca is None else f'{ca:.3f}'} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
