#include "tests/fs/fault_env.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace sluice::storage::testing {
namespace {

constexpr uint64_t kPage = 4096;

// Reads a whole file through `env` (fd already open); empty on error.
std::vector<uint8_t> ReadAll(Env* env, int fd) {
  std::vector<uint8_t> out;
  uint8_t buf[65536];
  while (true) {
    ssize_t n = env->Pread(fd, buf, sizeof(buf), out.size());
    if (n <= 0) break;
    out.insert(out.end(), buf, buf + n);
  }
  return out;
}

absl::Status Errno(const char* what, const std::string& path, int rc) {
  return absl::InternalError(absl::StrCat("fault env: ", what, " ", path, ": ", strerror(-rc)));
}

absl::Status RemoveChildren(Env* env, const std::string& dir) {
  std::vector<std::string> names;
  if (int rc = env->ListDir(dir, &names); rc < 0) return Errno("list", dir, rc);
  for (const std::string& name : names) {
    const std::string path = absl::StrCat(dir, "/", name);
    FileStat st;
    if (int rc = env->Stat(path, &st); rc < 0) return Errno("stat", path, rc);
    if (st.is_dir) {
      if (absl::Status s = RemoveChildren(env, path); !s.ok()) return s;
      if (int rc = env->RemoveDir(path); rc < 0) return Errno("rmdir", path, rc);
    } else if (int rc = env->Unlink(path); rc < 0) {
      return Errno("unlink", path, rc);
    }
  }
  return absl::OkStatus();
}

}  // namespace

const char* EnvOpName(EnvOp op) {
  switch (op) {
    case kOpOpen:
      return "open";
    case kOpClose:
      return "close";
    case kOpRead:
      return "read";
    case kOpWrite:
      return "write";
    case kOpSync:
      return "fdatasync";
    case kOpTruncate:
      return "truncate";
    case kOpAllocate:
      return "allocate";
    case kOpSize:
      return "size";
    case kOpMap:
      return "map";
    case kOpUnmap:
      return "unmap";
    case kOpSyncMapped:
      return "msync";
    case kOpRename:
      return "rename";
    case kOpUnlink:
      return "unlink";
    case kOpMakeDir:
      return "mkdir";
    case kOpRemoveDir:
      return "rmdir";
    case kOpSyncDir:
      return "fsync dir";
    case kOpListDir:
      return "list";
    case kOpStat:
      return "stat";
    default:
      return "?";
  }
}

FaultEnv::FaultEnv(std::string root, Env* base, uint64_t seed)
    : root_(Normalize(root)), base_(base), rng_(seed) {
  absl::MutexLock lock(&mu_);
  absl::Status s = SnapshotLocked();
  if (!s.ok()) fprintf(stderr, "FaultEnv(%s): %s\n", root_.c_str(), s.ToString().c_str());
}

FaultEnv::~FaultEnv() = default;

// ---- bookkeeping ----

std::string FaultEnv::Normalize(const std::string& path) const {
  // Fast path for a path that is already normal (nearly all of them).
  const std::string_view v(path);
  if (v.find("//") == v.npos && (v.size() <= 1 || v.back() != '/') && v.find("/./") == v.npos &&
      !(v.size() > 2 && v.ends_with("/.")))
    return path;
  std::string out;
  out.reserve(path.size());
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '/' && !out.empty() && out.back() == '/') continue;
    out.push_back(path[i]);
  }
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  // "/./" components.
  for (size_t at; (at = out.find("/./")) != std::string::npos;) out.erase(at, 2);
  if (absl::EndsWith(out, "/.") && out.size() > 2) out.resize(out.size() - 2);
  return out;
}

std::string FaultEnv::Parent(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

bool FaultEnv::Modelled(const std::string& path) const {
  return path.size() > root_.size() && absl::StartsWith(path, root_) && path[root_.size()] == '/';
}

int FaultEnv::Admit(EnvOp op, const std::string& path, bool* short_write) {
  ++calls_;
  ++calls_by_op_[op];
  if (power_off_) return -EIO;
  if (power_left_ == 0) {
    power_off_ = true;
    cut_call_ = absl::StrCat(EnvOpName(op), " ", path);
    return -EIO;
  }
  if (power_left_ > 0) --power_left_;
  for (auto& [id, r] : rules_) {
    const FaultRule& rule = r.rule;
    if ((rule.ops & op) == 0) continue;
    if (!rule.path_contains.empty() && !absl::StrContains(path, rule.path_contains)) continue;
    ++r.matched;
    if (rule.nth > 0 && r.matched != rule.nth) continue;
    if (rule.max_failures >= 0 && r.failed >= rule.max_failures) continue;
    if (rule.probability < 1.0 &&
        std::uniform_real_distribution<double>(0.0, 1.0)(rng_) >= rule.probability) {
      continue;
    }
    ++r.failed;
    ++failures_;
    if (rule.short_write && op == kOpWrite && short_write != nullptr) {
      *short_write = true;
      return 0;
    }
    return -rule.error;
  }
  return 0;
}

const std::string* FaultEnv::PathOfFd(int fd) const {
  auto it = fds_.find(fd);
  return it == fds_.end() ? nullptr : &it->second.path;
}

FaultEnv::InodeId FaultEnv::InodeOfFd(int fd) const {
  auto it = fds_.find(fd);
  return it == fds_.end() ? -1 : it->second.inode;
}

FaultEnv::InodeId FaultEnv::NewInode() {
  const InodeId id = next_inode_++;
  inodes_[id] = Inode();
  return id;
}

void FaultEnv::MarkDirty(Inode& ino, uint64_t from, uint64_t to) {
  if (from >= to) return;
  if (!ino.dirty.empty() && ino.dirty.back().second == from) {
    ino.dirty.back().second = to;  // appends: one growing range
    return;
  }
  ino.dirty.emplace_back(from, to);
}

void FaultEnv::SyncInode(InodeId id, int fd) {
  auto it = inodes_.find(id);
  if (it == inodes_.end()) return;
  Inode& ino = it->second;
  if (off_t real = base_->Size(fd); real >= 0) ino.size = static_cast<uint64_t>(real);
  for (const auto& [addr, m] : maps_) {
    if (m.inode == id && m.writable) MarkDirty(ino, 0, std::min<uint64_t>(m.len, ino.size));
  }
  if (ino.min_size_since_sync < ino.durable.size()) ino.durable.resize(ino.min_size_since_sync);
  ino.durable.resize(ino.size, 0);  // a hole or a regrown truncation reads as zeros
  for (auto [from, to] : ino.dirty) {
    to = std::min<uint64_t>(to, ino.size);
    while (from < to) {
      ssize_t n = base_->Pread(fd, ino.durable.data() + from, to - from, from);
      if (n <= 0) break;
      from += static_cast<uint64_t>(n);
    }
  }
  ino.dirty.clear();
  ino.min_size_since_sync = UINT64_MAX;
}

std::vector<uint8_t> FaultEnv::CurrentContents(InodeId id) {
  for (const auto& [fd, f] : fds_) {
    if (f.inode == id) return ReadAll(base_, fd);
  }
  for (const auto& [path, node] : current_) {
    if (!node.is_dir && node.inode == id) {
      int fd = base_->Open(path, OpenMode::kRead);
      if (fd < 0) break;
      std::vector<uint8_t> out = ReadAll(base_, fd);
      base_->Close(fd);
      return out;
    }
  }
  return inodes_[id].durable;  // unreachable: nothing newer to lose
}

void FaultEnv::RecordNameChange(NameChange change) {
  change.dirs_to_sync.insert(Parent(change.path));
  if (change.kind == NameChange::kRename) change.dirs_to_sync.insert(Parent(change.to));
  pending_.push_back(std::move(change));
}

void FaultEnv::ApplyNameChange(const NameChange& c, PathMap<Node>* names) {
  switch (c.kind) {
    case NameChange::kCreate:
      (*names)[c.path] = Node{false, c.inode};
      break;
    case NameChange::kMakeDir:
      (*names)[c.path] = Node{true, -1};
      break;
    case NameChange::kUnlink:
    case NameChange::kRemoveDir:
      names->erase(c.path);
      break;
    case NameChange::kRename: {
      auto it = names->find(c.path);
      Node node = it != names->end() ? it->second : Node{false, c.inode};
      if (it != names->end()) names->erase(it);
      // A renamed directory takes its entries along.
      const std::string from_prefix = c.path + "/";
      std::vector<std::pair<std::string, Node>> moved;
      for (auto e = names->lower_bound(from_prefix);
           e != names->end() && absl::StartsWith(e->first, from_prefix);) {
        moved.emplace_back(c.to + e->first.substr(c.path.size()), e->second);
        e = names->erase(e);
      }
      (*names)[c.to] = node;
      for (auto& [path, n] : moved) (*names)[path] = n;
      break;
    }
  }
}

void FaultEnv::Unlinked(const PathMap<Node>::iterator& it) {
  if (it->second.is_dir) return;
  if (auto ino = inodes_.find(it->second.inode); ino != inodes_.end()) --ino->second.links;
}

uint64_t FaultEnv::SpaceFor(uint64_t want) const {
  if (space_limit_ < 0) return want;
  uint64_t used = 0;
  for (const auto& [id, ino] : inodes_) {
    if (ino.links > 0) used += ino.size;
  }
  const uint64_t limit = static_cast<uint64_t>(space_limit_);
  return used >= limit ? 0 : std::min(want, limit - used);
}

absl::Status FaultEnv::SnapshotLocked() {
  inodes_.clear();
  current_.clear();
  durable_.clear();
  pending_.clear();
  std::vector<std::string> dirs = {root_};
  while (!dirs.empty()) {
    const std::string dir = dirs.back();
    dirs.pop_back();
    std::vector<std::string> names;
    if (int rc = base_->ListDir(dir, &names); rc < 0) return Errno("list", dir, rc);
    for (const std::string& name : names) {
      const std::string path = absl::StrCat(dir, "/", name);
      FileStat st;
      if (int rc = base_->Stat(path, &st); rc < 0) return Errno("stat", path, rc);
      if (st.is_dir) {
        current_[path] = durable_[path] = Node{true, -1};
        dirs.push_back(path);
        continue;
      }
      int fd = base_->Open(path, OpenMode::kRead);
      if (fd < 0) return Errno("open", path, fd);
      const InodeId id = NewInode();
      Inode& ino = inodes_[id];
      ino.durable = ReadAll(base_, fd);
      base_->Close(fd);
      ino.size = ino.durable.size();
      ino.links = 1;
      current_[path] = durable_[path] = Node{false, id};
    }
  }
  // Open fds (ResetModel) follow their names.
  for (auto& [fd, f] : fds_) {
    auto it = current_.find(f.path);
    f.inode = it != current_.end() && !it->second.is_dir ? it->second.inode : -1;
  }
  for (auto& [addr, m] : maps_) m.inode = InodeOfFd(m.fd);
  return absl::OkStatus();
}

// ---- control ----

int FaultEnv::AddRule(FaultRule rule) {
  absl::MutexLock lock(&mu_);
  const int id = next_rule_++;
  rules_[id] = Rule{std::move(rule)};
  return id;
}

void FaultEnv::RemoveRule(int id) {
  absl::MutexLock lock(&mu_);
  rules_.erase(id);
}

void FaultEnv::ClearRules() {
  absl::MutexLock lock(&mu_);
  rules_.clear();
}

void FaultEnv::SetSpaceLimit(int64_t bytes) {
  absl::MutexLock lock(&mu_);
  space_limit_ = bytes;
}

int64_t FaultEnv::space_used() const {
  absl::MutexLock lock(&mu_);
  int64_t used = 0;
  for (const auto& [id, ino] : inodes_) {
    if (ino.links > 0) used += static_cast<int64_t>(ino.size);
  }
  return used;
}

void FaultEnv::CutPowerAfter(int64_t calls) {
  absl::MutexLock lock(&mu_);
  power_left_ = calls;
}

bool FaultEnv::power_cut() const {
  absl::MutexLock lock(&mu_);
  return power_off_;
}

std::string FaultEnv::power_cut_call() const {
  absl::MutexLock lock(&mu_);
  return cut_call_;
}

int64_t FaultEnv::calls() const {
  absl::MutexLock lock(&mu_);
  return calls_;
}

int64_t FaultEnv::calls_of(EnvOp op) const {
  absl::MutexLock lock(&mu_);
  auto it = calls_by_op_.find(op);
  return it == calls_by_op_.end() ? 0 : it->second;
}

int64_t FaultEnv::failures() const {
  absl::MutexLock lock(&mu_);
  return failures_;
}

absl::Status FaultEnv::ResetModel() {
  absl::MutexLock lock(&mu_);
  return SnapshotLocked();
}

std::vector<uint8_t> FaultEnv::SurvivingContents(InodeId id, const CrashModel& model,
                                                 std::mt19937_64& rng) {
  const std::vector<uint8_t> old = inodes_[id].durable;
  if (model.data == CrashModel::Data::kDropUnsynced) return old;
  const std::vector<uint8_t> now = CurrentContents(id);
  auto random_below = [&rng](uint64_t n) -> uint64_t { return n == 0 ? 0 : rng() % n; };
  switch (model.data) {
    case CrashModel::Data::kDropUnsynced:
      return old;
    case CrashModel::Data::kKeepRandomPrefix: {
      std::vector<uint8_t> out = old;
      if (now.size() > old.size()) {
        const uint64_t keep = random_below(now.size() - old.size() + 1);
        out.insert(out.end(), now.begin() + static_cast<ptrdiff_t>(old.size()),
                   now.begin() + static_cast<ptrdiff_t>(old.size() + keep));
      }
      return out;
    }
    case CrashModel::Data::kGarbageTail: {
      std::vector<uint8_t> out = old;
      if (now.size() > old.size()) {
        const uint64_t n = random_below(now.size() - old.size() + 1);
        for (uint64_t i = 0; i < n; ++i) out.push_back(static_cast<uint8_t>(rng()));
      }
      return out;
    }
    case CrashModel::Data::kRandomPages: {
      const uint64_t lo = std::min(old.size(), now.size());
      const uint64_t hi = std::max(old.size(), now.size());
      uint64_t size;
      switch (random_below(3)) {
        case 0:
          size = old.size();
          break;
        case 1:
          size = now.size();
          break;
        default:
          size = std::min(hi, (lo + random_below(hi - lo + 1)) / kPage * kPage);
          size = std::max(size, lo);
      }
      std::vector<uint8_t> out(size, 0);
      for (uint64_t page = 0; page < size; page += kPage) {
        const std::vector<uint8_t>& from = (rng() & 1) ? now : old;
        const uint64_t end = std::min<uint64_t>(page + kPage, size);
        for (uint64_t i = page; i < end && i < from.size(); ++i) out[i] = from[i];
      }
      return out;
    }
  }
  return old;
}

absl::Status FaultEnv::RestoreAfterPowerCut(const CrashModel& model) {
  absl::MutexLock lock(&mu_);
  std::mt19937_64 rng(model.seed);
  PathMap<Node> names = durable_;
  if (model.keep_name_change_prefix) {
    const size_t keep = rng() % (pending_.size() + 1);
    for (size_t i = 0; i < keep; ++i) ApplyNameChange(pending_[i], &names);
  }
  // Only what hangs off the root through surviving directories exists.
  PathMap<Node> tree;
  for (const auto& [path, node] : names) {
    const std::string parent = Parent(path);
    if (parent == root_ || (tree.count(parent) > 0 && tree[parent].is_dir)) tree[path] = node;
  }
  std::map<InodeId, std::vector<uint8_t>> contents;
  for (const auto& [path, node] : tree) {
    if (!node.is_dir && contents.count(node.inode) == 0) {
      contents[node.inode] = SurvivingContents(node.inode, model, rng);
    }
  }
  if (absl::Status s = RemoveChildren(base_, root_); !s.ok()) return s;
  for (const auto& [path, node] : tree) {  // parents sort before their entries
    if (node.is_dir) {
      if (int rc = base_->MakeDir(path); rc < 0) return Errno("mkdir", path, rc);
      continue;
    }
    int fd = base_->Open(path, OpenMode::kCreateTruncate);
    if (fd < 0) return Errno("create", path, fd);
    const std::vector<uint8_t>& bytes = contents[node.inode];
    for (size_t done = 0; done < bytes.size();) {
      ssize_t n = base_->Pwrite(fd, bytes.data() + done, bytes.size() - done, done);
      if (n <= 0) {
        base_->Close(fd);
        return Errno("write", path, n < 0 ? static_cast<int>(n) : -EIO);
      }
      done += static_cast<size_t>(n);
    }
    base_->Close(fd);
  }
  fds_.clear();
  maps_.clear();
  power_off_ = false;
  cut_call_.clear();
  power_left_ = -1;
  return SnapshotLocked();
}

// ---- Env calls ----

int FaultEnv::Open(const std::string& raw, OpenMode mode) {
  absl::MutexLock lock(&mu_);
  const std::string path = Normalize(raw);
  if (int rc = Admit(kOpOpen, path); rc < 0) return rc;
  const int fd = base_->Open(path, mode);
  if (fd < 0) return fd;
  OpenFile file{path, -1};
  if (Modelled(path)) {
    auto it = current_.find(path);
    if (it == current_.end()) {
      const InodeId id = NewInode();
      Inode& ino = inodes_[id];
      ino.links = 1;
      current_[path] = Node{false, id};
      if (mode == OpenMode::kCreateTruncate) {
        RecordNameChange(NameChange{NameChange::kCreate, path, "", id, {}});
      } else {
        // Made behind our back: adopt it as durable.
        ino.durable = ReadAll(base_, fd);
        ino.size = ino.durable.size();
        durable_[path] = Node{false, id};
      }
      file.inode = id;
    } else if (!it->second.is_dir) {
      file.inode = it->second.inode;
      if (mode == OpenMode::kCreateTruncate) {
        Inode& ino = inodes_[file.inode];
        ino.size = 0;
        ino.min_size_since_sync = 0;
        ino.dirty.clear();
      }
    }
  }
  fds_[fd] = std::move(file);
  return fd;
}

int FaultEnv::Close(int fd) {
  absl::MutexLock lock(&mu_);
  const std::string* path = PathOfFd(fd);
  (void)Admit(kOpClose, path != nullptr ? *path : "");  // releases the fd even without power
  fds_.erase(fd);
  return base_->Close(fd);
}

ssize_t FaultEnv::Pread(int fd, void* buf, size_t n, uint64_t offset) {
  absl::MutexLock lock(&mu_);
  const std::string* path = PathOfFd(fd);
  if (int rc = Admit(kOpRead, path != nullptr ? *path : ""); rc < 0) return rc;
  return base_->Pread(fd, buf, n, offset);
}

ssize_t FaultEnv::Pwrite(int fd, const void* buf, size_t n, uint64_t offset) {
  iovec iov{const_cast<void*>(buf), n};
  return Pwritev(fd, &iov, 1, offset);
}

ssize_t FaultEnv::Pwritev(int fd, const iovec* iov, int count, uint64_t offset) {
  absl::MutexLock lock(&mu_);
  const std::string* path = PathOfFd(fd);
  bool short_write = false;
  if (int rc = Admit(kOpWrite, path != nullptr ? *path : "", &short_write); rc < 0) return rc;
  uint64_t total = 0;
  for (int i = 0; i < count; ++i) total += iov[i].iov_len;
  uint64_t len = total;
  if (short_write && len > 1) len /= 2;
  const InodeId id = InodeOfFd(fd);
  if (id >= 0 && space_limit_ >= 0) {
    const Inode& ino = inodes_[id];
    const uint64_t end = offset + len;
    const uint64_t growth = end > ino.size ? end - ino.size : 0;
    const uint64_t fits = SpaceFor(growth);
    if (fits < growth) {
      const uint64_t allowed_end = ino.size + fits;
      if (allowed_end <= offset) {
        ++failures_;
        return -ENOSPC;
      }
      len = allowed_end - offset;
    }
  }
  // The first `len` bytes of the gather list.
  std::vector<iovec> pieces;
  for (int i = 0; i < count && len > 0; ++i) {
    const size_t take = std::min<uint64_t>(iov[i].iov_len, len);
    if (take > 0) pieces.push_back(iovec{iov[i].iov_base, take});
    len -= take;
  }
  if (pieces.empty()) return 0;
  const ssize_t written =
      base_->Pwritev(fd, pieces.data(), static_cast<int>(pieces.size()), offset);
  if (written > 0 && id >= 0) {
    Inode& ino = inodes_[id];
    MarkDirty(ino, offset, offset + static_cast<uint64_t>(written));
    ino.size = std::max<uint64_t>(ino.size, offset + static_cast<uint64_t>(written));
  }
  return written;
}

int FaultEnv::Fdatasync(int fd) {
  absl::MutexLock lock(&mu_);
  const std::string* path = PathOfFd(fd);
  if (int rc = Admit(kOpSync, path != nullptr ? *path : ""); rc < 0) return rc;
  if (int rc = base_->Fdatasync(fd); rc < 0) return rc;
  if (InodeId id = InodeOfFd(fd); id >= 0) SyncInode(id, fd);
  return 0;
}

int FaultEnv::Truncate(int fd, uint64_t size) {
  absl::MutexLock lock(&mu_);
  const std::string* path = PathOfFd(fd);
  if (int rc = Admit(kOpTruncate, path != nullptr ? *path : ""); rc < 0) return rc;
  if (int rc = base_->Truncate(fd, size); rc < 0) return rc;
  if (InodeId id = InodeOfFd(fd); id >= 0) {
    Inode& ino = inodes_[id];
    ino.size = size;
    ino.min_size_since_sync = std::min(ino.min_size_since_sync, size);
  }
  return 0;
}

int FaultEnv::Allocate(int fd, uint64_t offset, uint64_t len) {
  absl::MutexLock lock(&mu_);
  const std::string* path = PathOfFd(fd);
  if (int rc = Admit(kOpAllocate, path != nullptr ? *path : ""); rc < 0) return rc;
  if (InodeId id = InodeOfFd(fd); id >= 0 && space_limit_ >= 0) {
    const uint64_t end = offset + len;
    const uint64_t size = inodes_[id].size;
    const uint64_t growth = end > size ? end - size : 0;
    if (SpaceFor(growth) < growth) {
      ++failures_;
      return -ENOSPC;
    }
  }
  return base_->Allocate(fd, offset, len);
}

off_t FaultEnv::Size(int fd) {
  absl::MutexLock lock(&mu_);
  const std::string* path = PathOfFd(fd);
  if (int rc = Admit(kOpSize, path != nullptr ? *path : ""); rc < 0) return rc;
  return base_->Size(fd);
}

int FaultEnv::Map(int fd, size_t len, bool writable, uint8_t** addr) {
  absl::MutexLock lock(&mu_);
  const std::string* path = PathOfFd(fd);
  if (int rc = Admit(kOpMap, path != nullptr ? *path : ""); rc < 0) return rc;
  if (int rc = base_->Map(fd, len, writable, addr); rc < 0) return rc;
  maps_[*addr] = Mapping{fd, len, writable, InodeOfFd(fd)};
  return 0;
}

int FaultEnv::Unmap(uint8_t* addr, size_t len) {
  absl::MutexLock lock(&mu_);
  auto it = maps_.find(addr);
  const std::string* path = it != maps_.end() ? PathOfFd(it->second.fd) : nullptr;
  (void)Admit(kOpUnmap, path != nullptr ? *path : "");  // released even without power
  if (it != maps_.end()) maps_.erase(it);
  return base_->Unmap(addr, len);
}

int FaultEnv::SyncMapped(uint8_t* addr, size_t len) {
  absl::MutexLock lock(&mu_);
  auto it = maps_.find(addr);
  const std::string* path = it != maps_.end() ? PathOfFd(it->second.fd) : nullptr;
  if (int rc = Admit(kOpSyncMapped, path != nullptr ? *path : ""); rc < 0) return rc;
  if (int rc = base_->SyncMapped(addr, len); rc < 0) return rc;
  if (it != maps_.end() && it->second.inode >= 0) SyncInode(it->second.inode, it->second.fd);
  return 0;
}

int FaultEnv::Rename(const std::string& raw_from, const std::string& raw_to) {
  absl::MutexLock lock(&mu_);
  const std::string from = Normalize(raw_from);
  const std::string to = Normalize(raw_to);
  if (int rc = Admit(kOpRename, absl::StrCat(from, "\n", to)); rc < 0) return rc;
  if (int rc = base_->Rename(from, to); rc < 0) return rc;
  if (!Modelled(from) || !Modelled(to)) return 0;
  auto src = current_.find(from);
  if (src == current_.end()) return 0;  // not ours to model
  const Node node = src->second;
  current_.erase(src);
  if (auto dst = current_.find(to); dst != current_.end()) {
    Unlinked(dst);
    current_.erase(dst);
  }
  NameChange change{NameChange::kRename, from, to, node.inode, {}};
  // Entries of a renamed directory move with it.
  const std::string from_prefix = from + "/";
  std::vector<std::pair<std::string, Node>> moved;
  for (auto e = current_.lower_bound(from_prefix);
       e != current_.end() && absl::StartsWith(e->first, from_prefix);) {
    moved.emplace_back(to + e->first.substr(from.size()), e->second);
    e = current_.erase(e);
  }
  current_[to] = node;
  for (auto& [path, n] : moved) current_[path] = n;
  for (auto& [fd, f] : fds_) {
    if (f.path == from) f.path = to;
    if (absl::StartsWith(f.path, from_prefix)) f.path = to + f.path.substr(from.size());
  }
  RecordNameChange(std::move(change));
  return 0;
}

int FaultEnv::Unlink(const std::string& raw) {
  absl::MutexLock lock(&mu_);
  const std::string path = Normalize(raw);
  if (int rc = Admit(kOpUnlink, path); rc < 0) return rc;
  if (int rc = base_->Unlink(path); rc < 0) return rc;
  if (auto it = current_.find(path); it != current_.end()) {
    Unlinked(it);
    current_.erase(it);
    RecordNameChange(NameChange{NameChange::kUnlink, path, "", -1, {}});
  }
  return 0;
}

int FaultEnv::MakeDir(const std::string& raw) {
  absl::MutexLock lock(&mu_);
  const std::string path = Normalize(raw);
  if (int rc = Admit(kOpMakeDir, path); rc < 0) return rc;
  if (int rc = base_->MakeDir(path); rc < 0) return rc;
  if (Modelled(path)) {
    current_[path] = Node{true, -1};
    RecordNameChange(NameChange{NameChange::kMakeDir, path, "", -1, {}});
  }
  return 0;
}

int FaultEnv::RemoveDir(const std::string& raw) {
  absl::MutexLock lock(&mu_);
  const std::string path = Normalize(raw);
  if (int rc = Admit(kOpRemoveDir, path); rc < 0) return rc;
  if (int rc = base_->RemoveDir(path); rc < 0) return rc;
  if (auto it = current_.find(path); it != current_.end()) {
    current_.erase(it);
    RecordNameChange(NameChange{NameChange::kRemoveDir, path, "", -1, {}});
  }
  return 0;
}

int FaultEnv::SyncDir(const std::string& raw) {
  absl::MutexLock lock(&mu_);
  const std::string path = Normalize(raw);
  if (int rc = Admit(kOpSyncDir, path); rc < 0) return rc;
  if (int rc = base_->SyncDir(path); rc < 0) return rc;
  // Changes of this directory are durable now (a rename once both of its directories are).
  std::vector<NameChange> still;
  for (NameChange& c : pending_) {
    c.dirs_to_sync.erase(path);
    if (c.dirs_to_sync.empty()) {
      ApplyNameChange(c, &durable_);
    } else {
      still.push_back(std::move(c));
    }
  }
  pending_ = std::move(still);
  return 0;
}

int FaultEnv::ListDir(const std::string& raw, std::vector<std::string>* names) {
  absl::MutexLock lock(&mu_);
  const std::string path = Normalize(raw);
  if (int rc = Admit(kOpListDir, path); rc < 0) return rc;
  return base_->ListDir(path, names);
}

int FaultEnv::Stat(const std::string& raw, FileStat* out) {
  absl::MutexLock lock(&mu_);
  const std::string path = Normalize(raw);
  if (int rc = Admit(kOpStat, path); rc < 0) return rc;
  return base_->Stat(path, out);
}

}  // namespace sluice::storage::testing
