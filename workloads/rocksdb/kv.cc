// kv: a small RocksDB (librocksdb 7.8) program for brink's rocksdb workload and checker.
//
//   kv init              create the database "db" in the working directory (the base image)
//   kv put N sync|nosync [BYTES]
//                        Put k1..kN, one at a time, WriteOptions.sync as given; after each
//                        Put returns OK, append "put kI" to the file named by $BRINK_MARK
//                        (opened, written and closed per acknowledgement). Value of kI:
//                        "value I", padded with '.' to BYTES (default: no padding)
//   kv check [MODE]      open "db" as the application's next start would, with the WAL
//                        recovery mode MODE (point-in-time, the default and RocksDB 7.8's
//                        default; tolerate-tail, absolute or skip-any), then verify each
//                        acknowledged key of the file $BRINK_MARKS
//
// Options kept small so that a trace stays small: a 64 KiB write buffer (8 keys never fill
// it, so no flush or compaction happens), no compression, no informational LOG file (a
// logger that discards), no statistics dumps. Same options for every subcommand.
//
// check exits 0 when consistent, 1 on a violation (first stdout line: what is wrong),
// 2 when it cannot check (no $BRINK_MARKS, bad arguments).
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/options.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

namespace {

const char* const kPath = "db";

class NullLogger : public rocksdb::Logger {
 public:
  using rocksdb::Logger::Logv;
  void Logv(const char*, va_list) override {}
};

rocksdb::Options options() {
  rocksdb::Options o;
  o.info_log = std::make_shared<NullLogger>();
  o.write_buffer_size = 64 << 10;
  o.compression = rocksdb::kNoCompression;
  o.stats_dump_period_sec = 0;
  o.stats_persist_period_sec = 0;
  o.max_background_jobs = 2;
  return o;
}

struct Mode {
  const char* name;
  rocksdb::WALRecoveryMode mode;
  const char* spelled;
};
const Mode kModes[] = {
    {"point-in-time", rocksdb::WALRecoveryMode::kPointInTimeRecovery, "kPointInTimeRecovery"},
    {"tolerate-tail", rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords, "kTolerateCorruptedTailRecords"},
    {"absolute", rocksdb::WALRecoveryMode::kAbsoluteConsistency, "kAbsoluteConsistency"},
    {"skip-any", rocksdb::WALRecoveryMode::kSkipAnyCorruptedRecords, "kSkipAnyCorruptedRecords"},
};

std::string value(int i, size_t bytes = 0) {
  std::string v = "value " + std::to_string(i);
  if (v.size() < bytes) v.append(bytes - v.size(), '.');
  return v;
}

// Whether v is what `put` writes for key i, at any padding.
bool is_value(int i, const std::string& v) {
  const std::string head = value(i);
  if (v.compare(0, head.size(), head) != 0) return false;
  return v.find_first_not_of('.', head.size()) == std::string::npos;
}

int init() {
  rocksdb::Options o = options();
  o.create_if_missing = true;
  o.error_if_exists = true;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(o, kPath, &db);
  if (!s.ok()) {
    std::cerr << "kv init: " << s.ToString() << "\n";
    return 2;
  }
  delete db;
  return 0;
}

bool mark(const char* file, int i) {
  FILE* f = std::fopen(file, "a");
  if (f == nullptr) return false;
  bool ok = std::fprintf(f, "put k%d\n", i) > 0;
  return std::fclose(f) == 0 && ok;
}

int put(int n, bool sync, size_t bytes) {
  const char* mark_file = std::getenv("BRINK_MARK");
  if (mark_file == nullptr) {
    std::cerr << "kv put: BRINK_MARK is not set\n";
    return 2;
  }
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options(), kPath, &db);
  if (!s.ok()) {
    std::cerr << "kv put: open: " << s.ToString() << "\n";
    return 2;
  }
  rocksdb::WriteOptions w;
  w.sync = sync;
  for (int i = 1; i <= n; i++) {
    s = db->Put(w, "k" + std::to_string(i), value(i, bytes));
    if (!s.ok()) {
      std::cerr << "kv put: k" << i << ": " << s.ToString() << "\n";
      delete db;
      return 1;
    }
    if (!mark(mark_file, i)) {
      std::cerr << "kv put: cannot write the mark file\n";
      delete db;
      return 2;
    }
  }
  s = db->Close();
  delete db;
  if (!s.ok()) {
    std::cerr << "kv put: close: " << s.ToString() << "\n";
    return 1;
  }
  return 0;
}

int check(const Mode& mode) {
  const char* marks_file = std::getenv("BRINK_MARKS");
  if (marks_file == nullptr) {
    std::cout << "BRINK_MARKS is not set\n";
    return 2;
  }
  std::ifstream in(marks_file);
  if (!in) {
    std::cout << "cannot read " << marks_file << "\n";
    return 2;
  }
  std::vector<int> acked;
  for (std::string line; std::getline(in, line);) {
    int k = 0;
    char rest = 0;
    if (std::sscanf(line.c_str(), "put k%d%c", &k, &rest) == 1 && k > 0) acked.push_back(k);
  }
  rocksdb::Options o = options();
  o.wal_recovery_mode = mode.mode;
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(o, kPath, &db);
  if (!s.ok()) {
    std::cout << "rocksdb cannot open this state (" << mode.spelled << "): " << s.ToString() << "\n";
    return 1;
  }
  // What the database holds: k1..k64 (the workload writes fewer).
  const int kMax = 64;
  std::vector<int> present(kMax + 1, 0);
  std::string got;
  std::string wrong;
  for (int i = 1; i <= kMax; i++) {
    s = db->Get(rocksdb::ReadOptions(), "k" + std::to_string(i), &got);
    if (s.ok()) {
      present[i] = is_value(i, got) ? 1 : -1;
      if (present[i] < 0 && wrong.empty())
        wrong = "k" + std::to_string(i) + " reads '" + got.substr(0, 40) + (got.size() > 40 ? "...'" : "'");
    } else if (!s.IsNotFound()) {
      std::cout << "rocksdb cannot read k" << i << " (" << mode.spelled << "): " << s.ToString() << "\n";
      delete db;
      return 1;
    }
  }
  delete db;
  std::string held;
  int last = 0;
  for (int i = 1; i <= kMax; i++)
    if (present[i] != 0) {
      held += (held.empty() ? "k" : " k") + std::to_string(i);
      last = i;
    }
  if (held.empty()) held = "none";
  const std::string how = "recovered with " + std::string(mode.spelled) + "; keys present: " + held;
  for (int k : acked) {
    if (present[k] != 1) {
      std::cout << "acknowledged 'put k" << k << "' lost: k" << k
                << (present[k] == 0 ? " is absent" : " has the wrong value");
      if (last > k) std::cout << ", while the later 'put k" << last << "' was recovered (a hole)";
      std::cout << "\n" << how << "\n";
      return 1;
    }
  }
  if (!wrong.empty()) {
    std::cout << "a key holds a value never written: " << wrong << "\n" << how << "\n";
    return 1;
  }
  // Point-in-time recovery promises a prefix of the writes: no hole (a later Put
  // recovered while an earlier one is lost), acknowledged or not.
  for (int i = 1; i < last; i++) {
    if (present[i] == 0) {
      std::cout << "hole: 'put k" << last << "' recovered but 'put k" << i << "' lost (not a point in time)\n"
                << how << "\n";
      return 1;
    }
  }
  std::cout << how << "\n";
  return 0;
}

int usage() {
  std::cerr << "usage: kv init | kv put N sync|nosync [BYTES] | kv check [point-in-time|tolerate-tail|absolute|skip-any]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  std::string cmd = argv[1];
  if (cmd == "init" && argc == 2) return init();
  if (cmd == "put" && (argc == 4 || argc == 5)) {
    int n = std::atoi(argv[2]);
    std::string how = argv[3];
    long bytes = argc == 5 ? std::atol(argv[4]) : 0;
    if (n <= 0 || n > 64 || (how != "sync" && how != "nosync") || bytes < 0 || bytes > (1 << 20)) return usage();
    return put(n, how == "sync", static_cast<size_t>(bytes));
  }
  if (cmd == "check" && argc <= 3) {
    const char* name = argc == 3 ? argv[2] : "point-in-time";
    for (const Mode& m : kModes)
      if (std::strcmp(m.name, name) == 0) return check(m);
    return usage();
  }
  return usage();
}
