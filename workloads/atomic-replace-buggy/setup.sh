#!/bin/sh
# The base image: version 0 of config, durable.
set -eu
seq -f "config version 0 line %04g" 512 > config
sync -f .   # this file system only: a global sync would flush other recordings running at once
