"""The measured table of fsync-failure-semantics.md from run.sh's JSON lines (argument)."""
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1])]
names={"ext4-ordered":"ext4 `data=ordered`","ext4-writeback":"ext4 `data=writeback`","ext4-journal":"ext4 `data=journal`","ext4-journal-jblock":"ext4 `data=journal`, journal block fails","xfs":"XFS","btrfs":"Btrfs"}
print("| file system | injected (first match fails, once) | failing fsync | next fsync | re-read (cached) | re-read after the pages are dropped | new file + fsync afterwards | on disk after clean unmount |")
print("|---|---|---|---|---|---|---|---|")
def e(v): return {"Input/output-error":"EIO","Read-only-file-system":"EROFS","ok":"ok"}.get(v,v)
for r in rows:
    print(f"| {names[r['name']]} | `{r['inject']}` | {e(r['fsync1'])} | {e(r['fsync2'])} | {r['read_cached']} | {r['read_evicted']} | {e(r['new_write'])} | {r['disk_after_unmount']} |")
