#!/usr/bin/env python
"""Compare two sets of bench/run.py results (e.g. an old and a new build, runs alternated).

    python bench/compare.py --before old1.json old2.json --after new1.json new2.json

Per (layer, threads, system): the median over the runs of each run's median, the ratio
after / before, and the spread of the runs; then the geometric mean of the ratios per system
and thread count. Peers measured in both sets show how much the machine itself moved.
"""
import argparse
import collections
import json
import math
import statistics


def load(paths):
    """{(layer, threads, system): [median_s of each run]}."""
    out = collections.defaultdict(list)
    for path in paths:
        with open(path) as f:
            for r in json.load(f)["results"]:
                if r.get("median_s"):
                    out[(r["layer"], r["threads"], r["system"])].append(r["median_s"])
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--before", nargs="+", required=True)
    p.add_argument("--after", nargs="+", required=True)
    args = p.parse_args()
    before, after = load(args.before), load(args.after)
    keys = [k for k in before if k in after]
    print(f"{'layer':<14} {'T':>2} {'system':<18} {'before ms':>10} {'after ms':>10} "
          f"{'after/before':>12}  runs before / after (ms)")
    ratios = collections.defaultdict(list)
    for key in keys:
        b, a = statistics.median(before[key]), statistics.median(after[key])
        ratios[key[1:]].append(a / b)
        runs = (" ".join(f"{t * 1e3:.2f}" for t in before[key]) + " / "
                + " ".join(f"{t * 1e3:.2f}" for t in after[key]))
        print(f"{key[0]:<14} {key[1]:>2} {key[2]:<18} {b * 1e3:>10.3f} {a * 1e3:>10.3f} "
              f"{a / b:>12.3f}  {runs}")
    print()
    for (threads, system), rs in sorted(ratios.items()):
        gm = math.exp(sum(map(math.log, rs)) / len(rs))
        print(f"geometric mean after/before, {system}, {threads} thread(s): {gm:.3f} "
              f"over {len(rs)} layers (min {min(rs):.3f}, max {max(rs):.3f})")


if __name__ == "__main__":
    main()
