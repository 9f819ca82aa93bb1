#!/usr/bin/env python3
"""Check that a merge of shards equals one machine's exploration of the same trace.

    compare.py MERGED ONE     (BRINK: the brink binary, default `brink` on PATH)

Compares what `brink merge` promises to reproduce (README, "Sharding an exploration"):
- states.jsonl, line for line once sorted by id, apart from each check's `ms` and
  `tree_dup_of` (which state of equal recovered trees ran the checkers: scheduling);
- minimal.jsonl likewise; trace.json apart from the trace's path; run.json apart from
  the trace's path and the shard;
- `brink report --json`: the vulnerabilities (their `repro` command with the trace's
  path left out) and the summary's counts, i.e. every field but the times (`wall_s`,
  `states_per_s`, `time_ms`), `jobs`, the verdict cache's counts, `minimize_probes`,
  `tree_dups`,
  the trace's path and the merge's own `merged`;
- that MERGED's summary says every shard was merged and the merge is complete.
Prints one line: "compare: same: …" (exit 0) or "compare: DIFFER: <the first difference>"
(exit 1); exit 2 if a directory cannot be read.
"""
import json
import os
import re
import subprocess
import sys

SUMMARY_IGNORED = {"trace", "wall_s", "states_per_s", "time_ms", "jobs", "cache_hits",
                   "cache_stored", "minimize_probes", "merged", "tree_dups"}


def differ(msg):
    print(f"compare: DIFFER: {msg}")
    sys.exit(1)


def broken(msg):
    print(f"compare: ERROR: {msg}")
    sys.exit(2)


def read_jsonl(path):
    if not os.path.exists(path):
        return None
    out = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as e:
                    broken(f"{path}:{n}: {e}")
    return out


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        broken(f"{path}: {e}")


def untimed(state):
    for check in state.get("checks") or []:
        check.pop("ms", None)
    state.pop("tree_dup_of", None)
    return state


def first_field_diff(a, b):
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            return f"{k}: {json.dumps(a.get(k))[:200]} vs {json.dumps(b.get(k))[:200]}"
    return "?"


def compare_states(name, merged_dir, one_dir):
    a = read_jsonl(os.path.join(merged_dir, name))
    b = read_jsonl(os.path.join(one_dir, name))
    if a is None and b is None:
        return 0
    if a is None or b is None:
        differ(f"{name} exists in only one of them (merged: {a is not None})")
    a = {s["id"]: untimed(s) for s in a}
    b = {s["id"]: untimed(s) for s in b}
    only_a, only_b = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_a or only_b:
        differ(f"{name}: {len(a)} vs {len(b)} states; only merged: {only_a[:5]}, "
               f"only one machine: {only_b[:5]}")
    for sid in sorted(a):
        if a[sid] != b[sid]:
            differ(f"{name}: state {sid}: {first_field_diff(a[sid], b[sid])}")
    return len(a)


def compare_json(name, merged_dir, one_dir, ignored):
    a = read_json(os.path.join(merged_dir, name))
    b = read_json(os.path.join(one_dir, name))
    for k in ignored:
        a.pop(k, None)
        b.pop(k, None)
    if a != b:
        differ(f"{name}: {first_field_diff(a, b)}")


def report(brink, d):
    try:
        p = subprocess.run([brink, "report", "--json", d], capture_output=True, text=True,
                           check=False)
    except OSError as e:
        broken(f"{brink}: {e}")
    if p.returncode not in (0, 1):
        broken(f"brink report --json {d} exited {p.returncode}: {p.stderr.strip()[:300]}")
    try:
        return json.loads(p.stdout)
    except json.JSONDecodeError as e:
        broken(f"brink report --json {d}: {e}")


def vulns(rep):
    out = []
    for v in rep.get("vulnerabilities") or []:
        v = dict(v)
        if isinstance(v.get("repro"), str):
            v["repro"] = re.sub(r"^brink replay .*? (\S+) -o ", r"brink replay TRACE \1 -o ",
                                v["repro"])
        out.append(v)
    return sorted(out, key=lambda v: str(v.get("id")))


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        sys.exit(2)
    merged_dir, one_dir = sys.argv[1], sys.argv[2]
    brink = os.environ.get("BRINK", "brink")

    msum = read_json(os.path.join(merged_dir, "summary.json"))
    info = msum.get("merged")
    if not isinstance(info, dict):
        differ(f"{merged_dir}/summary.json has no 'merged': not a merge")
    if info.get("missing") or info.get("incomplete") or not msum.get("complete"):
        differ(f"the merge is not complete: missing {info.get('missing')}, "
               f"incomplete {info.get('incomplete')}, complete={msum.get('complete')}")

    n = compare_states("states.jsonl", merged_dir, one_dir)
    m = compare_states("minimal.jsonl", merged_dir, one_dir)
    compare_json("trace.json", merged_dir, one_dir, {"trace"})
    compare_json("run.json", merged_dir, one_dir, {"trace", "shard"})

    ra, rb = report(brink, merged_dir), report(brink, one_dir)
    va, vb = vulns(ra), vulns(rb)
    if [v.get("id") for v in va] != [v.get("id") for v in vb]:
        differ(f"vulnerabilities: {[v.get('id') for v in va]} vs {[v.get('id') for v in vb]}")
    for x, y in zip(va, vb):
        if x != y:
            differ(f"vulnerability {x.get('id')}: {first_field_diff(x, y)}")
    sa = {k: v for k, v in ra.items() if k not in SUMMARY_IGNORED | {"vulnerabilities"}}
    sb = {k: v for k, v in rb.items() if k not in SUMMARY_IGNORED | {"vulnerabilities"}}
    if sa != sb:
        differ(f"report summary: {first_field_diff(sa, sb)}")

    print(f"compare: same: {n} states ({sa.get('states_unique')} unique, "
          f"{sa.get('violations')} violating), {m} minimal, {len(va)} vulnerabilities, "
          f"{len(sa)} summary fields; merged {len(info.get('merged') or [])} of "
          f"{info.get('shards')} shards")


if __name__ == "__main__":
    main()
