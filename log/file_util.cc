#include "log/file_util.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace sluice::storage {

absl::Status ErrnoStatus(absl::string_view what, const std::string& path, int err) {
  std::string msg = absl::StrCat(what, " ", path, ": ", strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(msg);
    case EEXIST:
      return absl::AlreadyExistsError(msg);
    case ENOSPC:
    case EDQUOT:
      // Out of space is retriable (the log resumes when space returns): Unavailable, never
      // ResourceExhausted, which the protocols read as "too large" (Kafka MESSAGE_TOO_LARGE).
      return absl::UnavailableError(msg);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

absl::Status CreateDirIfMissing(const std::string& path, Env* env) {
  if (int rc = env->MakeDir(path); rc < 0 && rc != -EEXIST) return ErrnoStatus("mkdir", path, -rc);
  return absl::OkStatus();
}

absl::Status CreateEmptyFile(const std::string& path, Env* env) {
  int fd = env->Open(path, OpenMode::kCreateTruncate);
  if (fd < 0) return ErrnoStatus("create", path, -fd);
  if (int rc = env->Close(fd); rc < 0) return ErrnoStatus("close", path, -rc);
  return absl::OkStatus();
}

absl::Status SyncDir(const std::string& dir, Env* env) {
  if (int rc = env->SyncDir(dir); rc < 0) return ErrnoStatus("fsync dir", dir, -rc);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir, Env* env) {
  std::vector<std::string> names;
  if (int rc = env->ListDir(dir, &names); rc < 0) return ErrnoStatus("opendir", dir, -rc);
  return names;
}

absl::StatusOr<uint64_t> FileSize(const std::string& path, Env* env) {
  FileStat st;
  if (int rc = env->Stat(path, &st); rc < 0) return ErrnoStatus("stat", path, -rc);
  return st.size;
}

bool FileExists(const std::string& path, Env* env) {
  FileStat st;
  return env->Stat(path, &st) == 0;
}

absl::Status RemoveFile(const std::string& path, Env* env) {
  if (int rc = env->Unlink(path); rc < 0 && rc != -ENOENT) return ErrnoStatus("unlink", path, -rc);
  return absl::OkStatus();
}

absl::Status RemoveTree(const std::string& path, Env* env) {
  FileStat st;
  if (int rc = env->Stat(path, &st); rc < 0) {
    return rc == -ENOENT ? absl::OkStatus() : ErrnoStatus("stat", path, -rc);
  }
  if (st.is_dir) {
    auto names = ListDir(path, env);
    if (!names.ok()) return names.status();
    for (const std::string& n : *names) {
      absl::Status s = RemoveTree(path + "/" + n, env);
      if (!s.ok()) return s;
    }
    if (int rc = env->RemoveDir(path); rc < 0) return ErrnoStatus("rmdir", path, -rc);
    return absl::OkStatus();
  }
  return RemoveFile(path, env);
}

absl::Status RenameFile(const std::string& from, const std::string& to, Env* env) {
  if (int rc = env->Rename(from, to); rc < 0) return ErrnoStatus("rename", from, -rc);
  return absl::OkStatus();
}

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

absl::Status PwriteFully(int fd, const void* buf, size_t n, uint64_t offset,
                         const std::string& path, Env* env) {
  size_t done = 0;
  while (done < n) {
    ssize_t w = env->Pwrite(fd, static_cast<const uint8_t*>(buf) + done, n - done, offset + done);
    if (w < 0) return ErrnoStatus("write", path, static_cast<int>(-w));
    if (w == 0) return ErrnoStatus("write", path, EIO);  // no progress possible
    done += static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::string& path, std::span<const uint8_t> data, Env* env) {
  const std::string tmp = path + ".tmp";
  int fd = env->Open(tmp, OpenMode::kCreateTruncate);
  if (fd < 0) return ErrnoStatus("open", tmp, -fd);
  absl::Status s = PwriteFully(fd, data.data(), data.size(), 0, tmp, env);
  if (s.ok()) {
    if (int rc = env->Fdatasync(fd); rc < 0) s = ErrnoStatus("fdatasync", tmp, -rc);
  }
  (void)env->Close(fd);
  if (!s.ok()) {
    // A failed attempt must not leave its temp file holding space on a full disk.
    (void)env->Unlink(tmp);
    return s;
  }
  s = RenameFile(tmp, path, env);
  if (!s.ok()) return s;
  return SyncDir(DirName(path), env);
}

absl::StatusOr<std::vector<uint8_t>> ReadWholeFile(const std::string& path, Env* env) {
  int fd = env->Open(path, OpenMode::kRead);
  if (fd < 0) return ErrnoStatus("open", path, -fd);
  std::vector<uint8_t> out;
  uint8_t buf[65536];
  while (true) {
    ssize_t n = env->Pread(fd, buf, sizeof(buf), out.size());
    if (n < 0) {
      (void)env->Close(fd);
      return ErrnoStatus("read", path, static_cast<int>(-n));
    }
    if (n == 0) break;
    out.insert(out.end(), buf, buf + n);
  }
  (void)env->Close(fd);
  return out;
}

absl::StatusOr<size_t> PreadFully(int fd, void* buf, size_t n, uint64_t offset, Env* env) {
  size_t done = 0;
  while (done < n) {
    ssize_t r = env->Pread(fd, static_cast<uint8_t*>(buf) + done, n - done, offset + done);
    if (r < 0) return ErrnoStatus("pread", absl::StrCat("fd ", fd), static_cast<int>(-r));
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  return done;
}

}  // namespace sluice::storage
