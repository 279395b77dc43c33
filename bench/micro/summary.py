#!/usr/bin/env python3
"""Markdown summary of the verification micro-benchmarks (bench/micro).

Usage: python3 bench/micro/summary.py CRITERION_DIR    (e.g. $CARGO_TARGET_DIR/criterion)

Reads criterion's */new/benchmark.json and */new/estimates.json (median point estimates, in
ns) and prints to stdout a table per algorithm: cold verify, raw aws-lc-rs signature check
with a parsed key and with an unparsed one, the cold/raw ratio; then the cache-hit time, and
the authorization decisions with 1,000 bindings (benches/authz.rs, group `authz`).
"""

import json
import os
import sys

ALG_ORDER = ["RS256", "ES256", "EdDSA"]


def medians(root):
    """full_id ("verify_cold/RS256", "cache_hit") -> median in ns, from the latest run."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
            continue
        try:
            with open(os.path.join(dirpath, "benchmark.json")) as f:
                full_id = json.load(f)["full_id"]
        except (OSError, ValueError, KeyError):
            full_id = os.path.relpath(os.path.dirname(dirpath), root)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            out[full_id] = json.load(f)["median"]["point_estimate"]
    return out


def us(ns):
    return "–" if ns is None else f"{ns / 1000:.1f}"


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    m = medians(argv[1])
    if not m:
        print(f"summary.py: no criterion results under {argv[1]}", file=sys.stderr)
        return 1
    verify_groups = ("verify_cold", "raw_signature", "raw_signature_unparsed")
    found = {k.split("/", 1)[1] for k in m if k.split("/", 1)[0] in verify_groups}
    algs = [a for a in ALG_ORDER if a in found] + sorted(found - set(ALG_ORDER))
    print("Access-token verification (criterion medians):")
    print()
    print("| alg | verify, cold (µs) | raw ParsedPublicKey (µs) | raw UnparsedPublicKey (µs) "
          "| cold / raw parsed |")
    print("|---|---:|---:|---:|---:|")
    for alg in algs:
        cold = m.get(f"verify_cold/{alg}")
        parsed = m.get(f"raw_signature/{alg}")
        unparsed = m.get(f"raw_signature_unparsed/{alg}")
        ratio = f"{cold / parsed:.2f}" if cold and parsed else "–"
        print(f"| {alg} | {us(cold)} | {us(parsed)} | {us(unparsed)} | {ratio} |")
    hit = m.get("cache_hit")
    print()
    if hit is not None:
        print(f"Token cache hit (RS256 token): {hit:.0f} ns")
    else:
        print("Token cache hit: not measured")
    decisions = sorted(k for k in m if k.startswith("authz/"))
    if decisions:
        print()
        print("Authorization decisions with 1,000 bindings (benches/authz.rs; target ≤ 1 µs):")
        print()
        for k in decisions:
            print(f"- {k}: {m[k]:.0f} ns")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
