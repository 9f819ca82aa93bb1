#!/bin/sh
# Regenerates the ext4 images the attribution tests read (see README.md). Needs
# e2fsprogs (mkfs.ext4, debugfs), perl and gzip; no root, no mount. The tests never run
# this: they read the committed .img.gz files.
set -eu
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The tree mkfs.ext4 -d copies in, with fixed times.
mkdir -p "$work/src/logs" "$work/src/data/sub"
printf 'version 0\n' > "$work/src/config"
printf 'appended 0\n' > "$work/src/logs/app.log"
head -c 40000 /dev/zero | tr '\0' 'x' > "$work/src/data/big"
printf 'old\n' > "$work/src/data/sub/old"
find "$work/src" -exec touch -h -d '2024-01-01 00:00:00 UTC' {} +

# base: 8 MiB, 4 KiB blocks (the smallest size that gets a journal, 1024 blocks), fixed
# UUID and hash seed. A rerun gives the same layout but not the same bytes (inode
# generation numbers are random), so the tests' snapshots would need refreshing.
E2FSPROGS_FAKE_TIME=1704067200 mkfs.ext4 -q -F -b 4096 \
    -U 6b1e2f3a-0000-4000-8000-000000000001 \
    -E hash_seed=6b1e2f3a-0000-4000-8000-000000000002,root_owner=0:0 \
    -d "$work/src" "$work/base.img" 8M

# after: base changed in place by debugfs (so the layout is the same): config replaced by
# a new inode, newdir/file created (newdir reuses config's old inode and data block),
# data/sub/old removed.
cp "$work/base.img" "$work/after.img"
printf 'version 1\n' > "$work/cfg1"
head -c 9000 /dev/zero | tr '\0' 'y' > "$work/newfile"
(cd "$work" && E2FSPROGS_FAKE_TIME=1704070800 debugfs -w after.img -f - >/dev/null 2>&1) <<'CMDS'
write cfg1 config.tmp
rm config
ln config.tmp config
unlink config.tmp
sif config links_count 1
mkdir newdir
write newfile newdir/file
rm data/sub/old
CMDS

# Corrupt variants of base.
head -c 147456 "$work/base.img" > "$work/truncated.img"       # 36 blocks: to the second inode table block
head -c 1536 "$work/base.img" > "$work/truncated-superblock.img" # half the superblock
cp "$work/base.img" "$work/bad-magic.img"
printf '\000\000' | dd of="$work/bad-magic.img" bs=1 seek=1080 conv=notrunc 2>/dev/null
cp "$work/base.img" "$work/garbage-inodes.img"                  # inode table blocks 34 and 35
perl -e 'srand(12); print pack("C*", map { int(rand(256)) } 1 .. 8192)' |
    dd of="$work/garbage-inodes.img" bs=4096 seek=34 conv=notrunc 2>/dev/null

for f in base after truncated truncated-superblock bad-magic garbage-inodes; do
    gzip -9 -n -c "$work/$f.img" > "$f.img.gz"
done
