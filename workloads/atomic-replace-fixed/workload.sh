#!/bin/sh
# atomic-replace, FIXED: as the buggy variant, but the directory is fsynced after the
# rename and before the acknowledgement, so the acknowledged version is durable.
set -eu
for v in 1 2 3; do
  seq -f "config version $v line %04g" 512 > config.tmp
  sync config.tmp                     # fsync(config.tmp)
  mv config.tmp config                # rename(config.tmp, config)
  sync .                              # fsync(".") makes the rename durable
  echo "config v$v" > "$BRINK_MARK"
done
