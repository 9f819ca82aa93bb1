#!/bin/sh
# atomic-replace, BUGGY: replace `config` three times the classic way (write a temporary
# file, fsync it, rename it over the old one) and acknowledge each version, but never
# fsync the directory: the rename lives in the directory, so the acknowledged version
# can be lost by a power cut while the application believes it is on disk.
set -eu
for v in 1 2 3; do
  seq -f "config version $v line %04g" 512 > config.tmp
  sync config.tmp                     # fsync(config.tmp): the new data is durable
  mv config.tmp config                # rename(config.tmp, config)
  echo "config v$v" > "$BRINK_MARK"   # acknowledged: nothing made the rename durable
done
