#include "tests/fs/mem_env.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

namespace sluice::storage::testing {

std::string MemEnv::Normalize(const std::string& path) {
  // Nearly every path the log asks for is already normal: return it without a rebuild (the
  // rebuild below was a fifth of the storage fuzzers' time).
  const std::string_view v(path);
  if (!v.empty() && v[0] == '/' && v.find("//") == v.npos && (v.size() == 1 || v.back() != '/'))
    return path;
  std::string out;
  out.reserve(path.size() + 1);
  if (path.empty() || path[0] != '/') out.push_back('/');  // relative: taken from the root
  for (char c : path) {
    if (c == '/' && !out.empty() && out.back() == '/') continue;
    out.push_back(c);
  }
  if (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

std::string MemEnv::Parent(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

std::string MemEnv::ChildPrefix(const std::string& dir) { return dir == "/" ? dir : dir + "/"; }

bool MemEnv::IsDir(const std::string& norm) const {
  if (norm == "/") return true;
  auto it = nodes_.find(norm);
  return it != nodes_.end() && it->second.is_dir;
}

MemEnv::OpenFile* MemEnv::FdLocked(int fd) {
  auto it = fds_.find(fd);
  return it == fds_.end() ? nullptr : &it->second;
}

void MemEnv::Resize(File& f, uint64_t size) {
  if (size > f.capacity) {
    if (f.maps > 0) {
      fprintf(stderr, "MemEnv: a mapped file grows past its buffer (%llu -> %llu bytes)\n",
              static_cast<unsigned long long>(f.capacity), static_cast<unsigned long long>(size));
      abort();
    }
    const uint64_t capacity = std::max<uint64_t>(size, 2 * f.capacity);
    auto fresh = std::make_unique<uint8_t[]>(capacity);  // zeroed
    if (f.size > 0) std::memcpy(fresh.get(), f.buf.get(), f.size);
    f.buf = std::move(fresh);
    f.capacity = capacity;
  } else if (size > f.size) {
    std::memset(f.buf.get() + f.size, 0, size - f.size);  // bytes a truncation dropped read 0
  }
  f.size = size;
}

size_t MemEnv::nodes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return nodes_.size();
}
size_t MemEnv::open_fds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return fds_.size();
}
size_t MemEnv::mappings() const {
  std::lock_guard<std::mutex> lock(mu_);
  return maps_.size();
}

int MemEnv::Open(const std::string& path, OpenMode mode) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string p = Normalize(path);
  if (IsDir(p)) return -EISDIR;
  auto it = nodes_.find(p);
  if (it == nodes_.end()) {
    if (mode != OpenMode::kCreateTruncate) return -ENOENT;
    const std::string parent = Parent(p);
    if (!IsDir(parent)) return nodes_.count(parent) ? -ENOTDIR : -ENOENT;
    it = nodes_.emplace(p, Node{false, std::make_shared<File>()}).first;
  } else if (mode == OpenMode::kCreateTruncate) {
    Resize(*it->second.file, 0);
  }
  const int fd = next_fd_++;
  fds_[fd] = OpenFile{it->second.file, mode != OpenMode::kRead};
  return fd;
}

int MemEnv::Close(int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  return fds_.erase(fd) == 1 ? 0 : -EBADF;
}

ssize_t MemEnv::Pread(int fd, void* buf, size_t n, uint64_t offset) {
  std::lock_guard<std::mutex> lock(mu_);
  OpenFile* of = FdLocked(fd);
  if (of == nullptr) return -EBADF;
  const File& f = *of->file;
  if (offset >= f.size || n == 0) return 0;
  const size_t got = static_cast<size_t>(std::min<uint64_t>(n, f.size - offset));
  std::memcpy(buf, f.buf.get() + offset, got);
  return static_cast<ssize_t>(got);
}

ssize_t MemEnv::Pwrite(int fd, const void* buf, size_t n, uint64_t offset) {
  iovec iov{const_cast<void*>(buf), n};
  return Pwritev(fd, &iov, 1, offset);
}

ssize_t MemEnv::Pwritev(int fd, const iovec* iov, int count, uint64_t offset) {
  std::lock_guard<std::mutex> lock(mu_);
  OpenFile* of = FdLocked(fd);
  if (of == nullptr) return -EBADF;
  if (!of->writable) return -EBADF;
  if (count < 0) return -EINVAL;
  size_t total = 0;
  for (int i = 0; i < count; ++i) total += iov[i].iov_len;
  if (total == 0) return 0;
  File& f = *of->file;
  if (offset + total > f.size) Resize(f, offset + total);
  uint64_t at = offset;
  for (int i = 0; i < count; ++i) {
    if (iov[i].iov_len > 0) std::memcpy(f.buf.get() + at, iov[i].iov_base, iov[i].iov_len);
    at += iov[i].iov_len;
  }
  return static_cast<ssize_t>(total);
}

int MemEnv::Fdatasync(int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  return FdLocked(fd) ? 0 : -EBADF;
}

int MemEnv::Truncate(int fd, uint64_t size) {
  std::lock_guard<std::mutex> lock(mu_);
  OpenFile* of = FdLocked(fd);
  if (of == nullptr) return -EBADF;
  if (!of->writable) return -EINVAL;  // ftruncate on an O_RDONLY fd
  Resize(*of->file, size);
  return 0;
}

int MemEnv::Allocate(int fd, uint64_t, uint64_t) {
  std::lock_guard<std::mutex> lock(mu_);
  OpenFile* of = FdLocked(fd);
  if (of == nullptr) return -EBADF;
  return of->writable ? 0 : -EBADF;
}

off_t MemEnv::Size(int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  OpenFile* of = FdLocked(fd);
  if (of == nullptr) return -EBADF;
  return static_cast<off_t>(of->file->size);
}

int MemEnv::Map(int fd, size_t len, bool writable, uint8_t** addr) {
  std::lock_guard<std::mutex> lock(mu_);
  OpenFile* of = FdLocked(fd);
  if (of == nullptr) return -EBADF;
  if (len == 0) return -EINVAL;
  if (writable && !of->writable) return -EACCES;
  File& f = *of->file;
  if (len > f.capacity) {
    // Room for the whole mapping (its part past the end of the file reads as zeros), without
    // changing the size.
    const uint64_t size = f.size;
    Resize(f, len);
    f.size = size;
  }
  ++f.maps;
  *addr = f.buf.get();
  maps_.emplace(*addr, Mapping{of->file, len});
  return 0;
}

int MemEnv::Unmap(uint8_t* addr, size_t len) {
  std::lock_guard<std::mutex> lock(mu_);
  auto [first, last] = maps_.equal_range(addr);
  if (first == last) return -EINVAL;
  auto it = first;
  for (auto i = first; i != last; ++i) {
    if (i->second.len == len) {
      it = i;
      break;
    }
  }
  --it->second.file->maps;
  maps_.erase(it);
  return 0;
}

int MemEnv::SyncMapped(uint8_t* addr, size_t) {
  std::lock_guard<std::mutex> lock(mu_);
  return maps_.count(addr) ? 0 : -ENOMEM;  // msync of an unmapped range
}

int MemEnv::Rename(const std::string& from, const std::string& to) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string f = Normalize(from), t = Normalize(to);
  if (f == "/" || t == "/") return -EBUSY;
  auto src = nodes_.find(f);
  if (src == nodes_.end()) return -ENOENT;
  if (!IsDir(Parent(t))) return -ENOENT;
  if (f == t) return 0;
  auto dst = nodes_.find(t);
  if (!src->second.is_dir) {
    if (dst != nodes_.end() && dst->second.is_dir) return -EISDIR;
    Node n = src->second;
    nodes_.erase(src);
    nodes_[t] = std::move(n);
    return 0;
  }
  // A directory: into an absent name or over an empty directory, never below itself.
  if (t.compare(0, f.size() + 1, f + "/") == 0) return -EINVAL;
  if (dst != nodes_.end()) {
    if (!dst->second.is_dir) return -ENOTDIR;
    auto child = nodes_.lower_bound(t + "/");
    if (child != nodes_.end() && child->first.compare(0, t.size() + 1, t + "/") == 0) {
      return -ENOTEMPTY;
    }
    nodes_.erase(dst);
  }
  std::vector<std::pair<std::string, Node>> moved;
  const std::string prefix = f + "/";
  for (auto it = nodes_.lower_bound(prefix);
       it != nodes_.end() && it->first.compare(0, prefix.size(), prefix) == 0;) {
    moved.emplace_back(t + "/" + it->first.substr(prefix.size()), std::move(it->second));
    it = nodes_.erase(it);
  }
  Node n = std::move(nodes_[f]);
  nodes_.erase(f);
  nodes_[t] = std::move(n);
  for (auto& [path, node] : moved) nodes_[path] = std::move(node);
  return 0;
}

int MemEnv::Unlink(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string p = Normalize(path);
  if (p == "/") return -EISDIR;
  auto it = nodes_.find(p);
  if (it == nodes_.end()) return -ENOENT;
  if (it->second.is_dir) return -EISDIR;
  nodes_.erase(it);
  return 0;
}

int MemEnv::MakeDir(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string p = Normalize(path);
  if (p == "/" || nodes_.count(p)) return -EEXIST;
  const std::string parent = Parent(p);
  if (!IsDir(parent)) return nodes_.count(parent) ? -ENOTDIR : -ENOENT;
  nodes_[p] = Node{true, nullptr};
  return 0;
}

int MemEnv::RemoveDir(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string p = Normalize(path);
  if (p == "/") return -EBUSY;
  auto it = nodes_.find(p);
  if (it == nodes_.end()) return -ENOENT;
  if (!it->second.is_dir) return -ENOTDIR;
  auto next = std::next(it);
  if (next != nodes_.end() && next->first.compare(0, p.size() + 1, p + "/") == 0) {
    return -ENOTEMPTY;
  }
  nodes_.erase(it);
  return 0;
}

int MemEnv::SyncDir(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string p = Normalize(path);
  if (IsDir(p)) return 0;
  return nodes_.count(p) ? -ENOTDIR : -ENOENT;
}

int MemEnv::ListDir(const std::string& path, std::vector<std::string>* names) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string p = Normalize(path);
  if (!IsDir(p)) return nodes_.count(p) ? -ENOTDIR : -ENOENT;
  names->clear();
  const std::string prefix = ChildPrefix(p);
  for (auto it = nodes_.lower_bound(prefix);
       it != nodes_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
    std::string rest = it->first.substr(prefix.size());
    if (rest.find('/') == std::string::npos) names->push_back(std::move(rest));
  }
  return 0;
}

int MemEnv::Stat(const std::string& path, FileStat* out) {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string p = Normalize(path);
  if (p == "/") {
    *out = FileStat{0, true};
    return 0;
  }
  auto it = nodes_.find(p);
  if (it == nodes_.end()) return -ENOENT;
  out->is_dir = it->second.is_dir;
  out->size = it->second.is_dir ? 0 : it->second.file->size;
  return 0;
}

}  // namespace sluice::storage::testing
