# The append-log record format, shared by the workloads that write it and the checker
# that reads it: "rec NNNN <990 digits> CRC", CRC being the POSIX cksum of all before it.
record() {
  body=$(printf 'rec %04d %0990d' "$1" "$1")
  printf '%s %s\n' "$body" "$(crc "$body")"
}
crc() {
  printf %s "$1" | cksum | cut -d' ' -f1
}
