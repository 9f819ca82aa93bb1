#!/bin/sh
# The base image: `data`, 64 KiB of 'o' (the old version), durable, so its blocks are
# allocated and an injection can aim at them (file:data).
set -eu
head -c 65536 /dev/zero | tr '\0' o > data
sync
