// Small file helpers shared by the storage engine and the broker's metadata writers. All
// return absl::Status with the path and errno text in the message. Each goes through `env`
// (fs/env.h), the default POSIX one unless a caller passes another.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "fs/env.h"

namespace sluice::storage {

absl::Status ErrnoStatus(absl::string_view what, const std::string& path, int err);

absl::Status CreateDirIfMissing(const std::string& path, Env* env = Env::Default());
absl::Status SyncDir(const std::string& dir, Env* env = Env::Default());
// Names (not paths) of the entries of `dir`, "." and ".." excluded.
absl::StatusOr<std::vector<std::string>> ListDir(const std::string& dir, Env* env = Env::Default());
absl::StatusOr<uint64_t> FileSize(const std::string& path, Env* env = Env::Default());
bool FileExists(const std::string& path, Env* env = Env::Default());
absl::Status RemoveFile(const std::string& path, Env* env = Env::Default());  // OK if missing
// Creates (or truncates) an empty file; its name is durable once its directory is synced.
absl::Status CreateEmptyFile(const std::string& path, Env* env = Env::Default());
absl::Status RemoveTree(const std::string& path, Env* env = Env::Default());  // rm -r
absl::Status RenameFile(const std::string& from, const std::string& to, Env* env = Env::Default());

// Writes `data` to `path` atomically and durably: temp file, write, fdatasync, rename over
// `path`, fsync of the directory. After a crash the file holds either the old or the new bytes.
absl::Status WriteFileAtomically(const std::string& path, std::span<const uint8_t> data,
                                 Env* env = Env::Default());
absl::StatusOr<std::vector<uint8_t>> ReadWholeFile(const std::string& path,
                                                   Env* env = Env::Default());

// pread() of exactly `n` bytes unless the file ends first; returns the bytes read.
absl::StatusOr<size_t> PreadFully(int fd, void* buf, size_t n, uint64_t offset,
                                  Env* env = Env::Default());

// pwrite() of all `n` bytes, continuing after short writes; errors name `path`.
absl::Status PwriteFully(int fd, const void* buf, size_t n, uint64_t offset,
                         const std::string& path, Env* env = Env::Default());

std::string DirName(const std::string& path);

}  // namespace sluice::storage
