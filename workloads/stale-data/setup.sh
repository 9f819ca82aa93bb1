#!/bin/sh
# The base image: 4 MiB of recognizable secret bytes were written, made durable, then
# deleted, so the free blocks the workload will be given still hold them.
set -eu
yes 'SECRET-KEY-0123456789abcdef' | head -c 4194304 > secret
sync secret
rm secret
sync -f .   # this file system only: a global sync would flush other recordings running at once
