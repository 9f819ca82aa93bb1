# One log record: "rec NNNN <about 1000 bytes of payload> CRC", CRC being the POSIX
# cksum of everything before the last space. Sourced by the append-log workloads.
record() {
  body=$(printf 'rec %04d %0990d' "$1" "$1")
  printf '%s %s\n' "$body" "$(printf %s "$body" | cksum | cut -d' ' -f1)"
}
