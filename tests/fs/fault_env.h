// FaultEnv: an Env (fs/env.h) for tests that fails calls on demand and simulates power loss.
//
// It works on the real files of one directory tree (`root`), so fds stay real fds; alongside,
// it keeps a model of what is durable:
//   - per file: its contents and size as of its last successful Fdatasync (or SyncMapped),
//     and the ranges written since (writes, truncations, stores through writable mappings);
//   - per directory: its names as of its last successful SyncDir, and the name changes made
//     since (creates, renames, unlinks, mkdir, rmdir), in order.
// Everything under `root` when the FaultEnv is made counts as durable. Paths outside `root`
// pass through unmodelled (they can still be made to fail).
//
// Power loss: CutPowerAfter(n) lets n more calls run; from the next one on, every call fails
// with EIO and changes nothing (Close and Unmap still release the fd or mapping). The test then
// drops the objects that used the Env and calls RestoreAfterPowerCut(), which rewrites the tree
// on disk to what a machine would find after rebooting (the CrashModel says how much of the
// unsynced changes it keeps) and turns the power back on, everything again durable. The tree
// can then be opened with Env::Default() (the "POSIX view") or with this Env again.
//
// Faults: AddRule() makes matching calls fail with an errno (ENOSPC, EIO, ...) or, for writes,
// come back short; SetSpaceLimit() models a disk that fills up (writes that do not fit are
// short, then fail with ENOSPC; Allocate fails with ENOSPC) until the limit is raised again
// (space returns). Calls that fail change nothing.
//
// Thread-safe (one mutex); meant for tests, not for speed.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "fs/env.h"
#include "tests/fs/path_map.h"

namespace sluice::storage::testing {

// Kinds of Env calls, as bits for FaultRule::ops.
enum EnvOp : uint32_t {
  kOpOpen = 1u << 0,
  kOpClose = 1u << 1,
  kOpRead = 1u << 2,
  kOpWrite = 1u << 3,  // Pwrite and Pwritev
  kOpSync = 1u << 4,   // Fdatasync
  kOpTruncate = 1u << 5,
  kOpAllocate = 1u << 6,
  kOpSize = 1u << 7,
  kOpMap = 1u << 8,
  kOpUnmap = 1u << 9,
  kOpSyncMapped = 1u << 10,
  kOpRename = 1u << 11,
  kOpUnlink = 1u << 12,
  kOpMakeDir = 1u << 13,
  kOpRemoveDir = 1u << 14,
  kOpSyncDir = 1u << 15,
  kOpListDir = 1u << 16,
  kOpStat = 1u << 17,
  kOpAll = (1u << 18) - 1,
  // Calls that change what is on disk (the ones a full or failing disk refuses).
  kOpMutating = kOpOpen | kOpWrite | kOpSync | kOpTruncate | kOpAllocate | kOpSyncMapped |
                kOpRename | kOpUnlink | kOpMakeDir | kOpRemoveDir | kOpSyncDir,
};
const char* EnvOpName(EnvOp op);

// Which calls fail, and how. A call matches when its kind is in `ops` and its path (for fd
// calls: the name the file had when opened, followed through renames) contains
// `path_contains`. Of the matching calls, the `nth` (1-based; 0: every one) fails, each with
// `probability`, at most `max_failures` times (-1: no limit).
struct FaultRule {
  uint32_t ops = kOpAll;
  std::string path_contains;
  int64_t nth = 0;
  double probability = 1.0;
  int64_t max_failures = -1;
  int error = EIO;
  // For writes: instead of failing, write about half of the bytes and report that (a short
  // write); the caller is expected to write the rest with another call.
  bool short_write = false;
};

// What survives the power cut of the changes not made durable.
struct CrashModel {
  enum class Data {
    kDropUnsynced,  // every file exactly as of its last sync
    // Bytes appended past the synced size: a random prefix of them survives (torn append);
    // changes inside the synced size are lost.
    kKeepRandomPrefix,
    // Each 4 KiB page changed since the last sync is either old or new, independently, and
    // the size is the synced one, the current one or a page boundary in between (the kernel
    // writes pages back in any order).
    kRandomPages,
    // Bytes appended past the synced size are replaced by a random amount of random bytes
    // (a disk returning garbage for a torn write).
    kGarbageTail,
  };
  Data data = Data::kDropUnsynced;
  // Name changes not made durable by a SyncDir: all lost, or a random prefix of them (in the
  // order they were made, as a journaling file system commits them) kept.
  bool keep_name_change_prefix = false;
  uint64_t seed = 0;
};

class FaultEnv final : public Env {
 public:
  explicit FaultEnv(std::string root, Env* base = Env::Default(), uint64_t seed = 1);
  ~FaultEnv() override;

  // ---- fault injection ----
  int AddRule(FaultRule rule);  // returns an id for RemoveRule
  void RemoveRule(int id);
  void ClearRules();
  // Bytes the modelled files may occupy in total (their sizes; -1: unlimited). Lowering it
  // below what is used makes every growth fail; raising it is "space returns".
  void SetSpaceLimit(int64_t bytes);
  int64_t space_used() const;

  // ---- power loss ----
  void CutPowerAfter(int64_t calls);
  void CutPowerNow() { CutPowerAfter(0); }
  bool power_cut() const;
  // The call the power went at ("fdatasync /dir/file"), empty before a cut.
  std::string power_cut_call() const;
  // Rewrites the tree to what survived (see CrashModel), forgets every fd and mapping made
  // before (their owners must be gone or never use them again), and powers on.
  absl::Status RestoreAfterPowerCut(const CrashModel& model = {});
  // Treats the tree as it is now on disk as durable (e.g. after changing it without the Env).
  absl::Status ResetModel();

  // ---- counters ----
  int64_t calls() const;  // every call so far
  int64_t calls_of(EnvOp op) const;
  int64_t failures() const;  // calls failed by rules or the space limit (not by power loss)

  // ---- Env ----
  bool AllowsBypass() const override { return false; }
  int Open(const std::string& path, OpenMode mode) override;
  int Close(int fd) override;
  ssize_t Pread(int fd, void* buf, size_t n, uint64_t offset) override;
  ssize_t Pwrite(int fd, const void* buf, size_t n, uint64_t offset) override;
  ssize_t Pwritev(int fd, const iovec* iov, int count, uint64_t offset) override;
  int Fdatasync(int fd) override;
  int Truncate(int fd, uint64_t size) override;
  int Allocate(int fd, uint64_t offset, uint64_t len) override;
  off_t Size(int fd) override;
  int Map(int fd, size_t len, bool writable, uint8_t** addr) override;
  int Unmap(uint8_t* addr, size_t len) override;
  int SyncMapped(uint8_t* addr, size_t len) override;
  int Rename(const std::string& from, const std::string& to) override;
  int Unlink(const std::string& path) override;
  int MakeDir(const std::string& path) override;
  int RemoveDir(const std::string& path) override;
  int SyncDir(const std::string& path) override;
  int ListDir(const std::string& path, std::vector<std::string>* names) override;
  int Stat(const std::string& path, FileStat* out) override;

 private:
  using InodeId = int64_t;
  struct Inode {
    std::vector<uint8_t> durable;  // contents (and size) as of the last sync
    uint64_t size = 0;             // current size
    uint64_t min_size_since_sync = UINT64_MAX;
    std::vector<std::pair<uint64_t, uint64_t>> dirty;  // [from, to) written since the sync
    int links = 0;                                     // current names
  };
  struct Node {
    bool is_dir = false;
    InodeId inode = -1;  // files
  };
  struct NameChange {
    enum Kind { kCreate, kRename, kUnlink, kMakeDir, kRemoveDir } kind;
    std::string path;  // the created/removed name, or the rename's source
    std::string to;    // the rename's target
    InodeId inode = -1;
    PathSet dirs_to_sync;  // parent dirs whose SyncDir makes it durable
  };
  struct OpenFile {
    std::string path;
    InodeId inode = -1;  // -1: not modelled (outside root)
  };
  struct Mapping {
    int fd = -1;
    size_t len = 0;
    bool writable = false;
    InodeId inode = -1;
  };
  struct Rule {
    FaultRule rule;
    int64_t matched = 0;
    int64_t failed = 0;
  };

  // Counts the call and decides its fate: 0 to go ahead, -errno to fail it; *short_write is
  // set when a rule asks for a short write instead.
  int Admit(EnvOp op, const std::string& path, bool* short_write = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool Modelled(const std::string& path) const;
  std::string Normalize(const std::string& path) const;
  static std::string Parent(const std::string& path);
  const std::string* PathOfFd(int fd) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  InodeId InodeOfFd(int fd) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  InodeId NewInode() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MarkDirty(Inode& ino, uint64_t from, uint64_t to);
  void SyncInode(InodeId id, int fd) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads the current bytes of a modelled file (through an open fd or a current name).
  std::vector<uint8_t> CurrentContents(InodeId id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordNameChange(NameChange change) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  static void ApplyNameChange(const NameChange& c, PathMap<Node>* names);
  void Unlinked(const PathMap<Node>::iterator& it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // How many bytes of a growth by `want` bytes fit under the space limit.
  uint64_t SpaceFor(uint64_t want) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status SnapshotLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<uint8_t> SurvivingContents(InodeId id, const CrashModel& model, std::mt19937_64& rng)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string root_;
  Env* const base_;
  mutable absl::Mutex mu_;
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  std::map<InodeId, Inode> inodes_ ABSL_GUARDED_BY(mu_);
  InodeId next_inode_ ABSL_GUARDED_BY(mu_) = 1;
  PathMap<Node> current_ ABSL_GUARDED_BY(mu_);  // path -> node, under root
  PathMap<Node> durable_ ABSL_GUARDED_BY(mu_);
  std::vector<NameChange> pending_ ABSL_GUARDED_BY(mu_);  // not yet durable, in order
  std::map<int, OpenFile> fds_ ABSL_GUARDED_BY(mu_);
  std::map<uint8_t*, Mapping> maps_ ABSL_GUARDED_BY(mu_);
  std::map<int, Rule> rules_ ABSL_GUARDED_BY(mu_);
  int next_rule_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t space_limit_ ABSL_GUARDED_BY(mu_) = -1;
  int64_t calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint32_t, int64_t> calls_by_op_ ABSL_GUARDED_BY(mu_);
  int64_t failures_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t power_left_ ABSL_GUARDED_BY(mu_) = -1;  // calls until the cut (-1: no cut planned)
  bool power_off_ ABSL_GUARDED_BY(mu_) = false;
  std::string cut_call_ ABSL_GUARDED_BY(mu_);
};

}  // namespace sluice::storage::testing
