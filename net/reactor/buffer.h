// Byte containers of a connection: the input buffer a recv fills and a handler drains, and the
// chunks a handler queues for sending (owned bytes, ref-counted bytes, or a range of a file
// sent without copying it through user space).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace sluice::net {

class Connection;

// Received bytes of one connection, not yet consumed by its handler. Owned by the Connection
// and touched only on its reactor's thread. The handler consumes whole frames and leaves a
// partial frame in place; the data it leaves stays valid and in order, but its address may
// change between OnData calls (the buffer is compacted or reallocated).
//
// Growth contract: the connection never makes the buffer larger than
// max(ExpectAtLeast() target, size() + one recv chunk), and never larger than the connection's
// max_input_bytes. A codec that reads a frame's declared size checks it against its own limit
// BEFORE calling ExpectAtLeast, so an oversized declared frame is rejected without allocation.
class InputBuffer {
 public:
  InputBuffer() = default;
  InputBuffer(const InputBuffer&) = delete;
  InputBuffer& operator=(const InputBuffer&) = delete;

  absl::Span<const uint8_t> readable() const { return {data_.get() + begin_, end_ - begin_}; }
  std::string_view view() const {
    return {reinterpret_cast<const char*>(data_.get()) + begin_, end_ - begin_};
  }
  size_t size() const { return end_ - begin_; }
  bool empty() const { return begin_ == end_; }

  // Drops the first `n` readable bytes (n <= size()).
  void Consume(size_t n);

  // Don't call OnData again until size() >= n. Reset to 0 ("any new byte") before every OnData
  // call, so a handler that leaves a partial frame states what it needs each time.
  void ExpectAtLeast(size_t n) { expected_ = n; }
  size_t expected() const { return expected_; }

  size_t capacity() const { return capacity_; }
  // Bytes consumed since the buffer was made (a handler that consumed something finished a
  // frame: the connection's request read timeout then starts again for the next one).
  uint64_t consumed_total() const { return consumed_total_; }

 private:
  friend class Connection;
  friend class InputBufferTestPeer;

  // Makes at least `n` bytes writable after the readable ones, compacting first and
  // reallocating to exactly size() + n only when compaction is not enough. From then until
  // Commit or AbandonWrite the write is pending: the kernel may be filling that span (a recv
  // in flight while the handler consumes), so nothing may move or free the storage.
  absl::Span<uint8_t> PrepareWrite(size_t n);
  // Marks `n` bytes written into the span PrepareWrite returned as readable.
  void Commit(size_t n) {
    end_ += n;
    write_pending_ = false;
  }
  // The pending write wrote nothing (the recv failed or was cancelled).
  void AbandonWrite() { write_pending_ = false; }
  // Frees the storage when it is empty and larger than `keep` (after a big frame).
  void ShrinkIfEmpty(size_t keep);

  std::unique_ptr<uint8_t[]> data_;
  size_t capacity_ = 0;
  size_t begin_ = 0;
  size_t end_ = 0;
  size_t expected_ = 0;
  uint64_t consumed_total_ = 0;
  bool write_pending_ = false;
};

// An open file descriptor shared by queued file-range chunks. A connection keeps the reference
// until every byte of the range is on the socket (or the connection is destroyed), so the
// storage engine may drop its own reference (e.g. delete a segment) at any time.
//
// Owned (Adopt, Open): the fd is closed when the last reference goes. Borrowed (Borrow): the
// fd belongs to another object, kept alive by the reference; nothing is duplicated, so queued
// ranges cost no descriptors of their own (a dup per range once let a client that never reads
// exhaust RLIMIT_NOFILE with pipelined fetches).
class FileRef {
 public:
  // Takes ownership of `fd`.
  static std::shared_ptr<const FileRef> Adopt(int fd);
  // Opens `path` read-only.
  static absl::StatusOr<std::shared_ptr<const FileRef>> Open(const std::string& path);
  // Refers to `fd`, which `owner` keeps open for as long as the reference lives (e.g. the
  // storage engine's shared segment file).
  static std::shared_ptr<const FileRef> Borrow(int fd, std::shared_ptr<const void> owner);

  explicit FileRef(int fd) : fd_(fd) {}
  FileRef(int fd, std::shared_ptr<const void> owner)
      : fd_(fd), owned_(false), owner_(std::move(owner)) {}
  FileRef(const FileRef&) = delete;
  FileRef& operator=(const FileRef&) = delete;
  ~FileRef();

  int fd() const { return fd_; }

 private:
  int fd_;
  bool owned_ = true;
  std::shared_ptr<const void> owner_;  // keeps a borrowed fd open
};

// A range of a file to send as is (zero-copy where the kernel allows).
struct FileRange {
  std::shared_ptr<const FileRef> file;
  uint64_t offset = 0;
  uint32_t length = 0;
};

// Immutable bytes kept alive by a reference count, e.g. one encoded response shared by many
// connections, or a slice of a larger buffer. `owner` keeps [data, data + size) alive.
struct SharedBytes {
  std::shared_ptr<const void> owner;
  const uint8_t* data = nullptr;
  size_t size = 0;

  static SharedBytes FromString(std::string bytes);
};

// One piece of a connection's output. Chunks of a connection are sent strictly in the order
// they were queued, whatever their kind.
class OutputChunk {
 public:
  OutputChunk(std::string bytes) : v_(std::move(bytes)) {}           // NOLINT: implicit
  OutputChunk(std::vector<uint8_t> bytes) : v_(std::move(bytes)) {}  // NOLINT: implicit
  OutputChunk(SharedBytes bytes) : v_(std::move(bytes)) {}           // NOLINT: implicit
  OutputChunk(FileRange range) : v_(std::move(range)) {}             // NOLINT: implicit
  OutputChunk(std::string_view) = delete;                            // say std::string(...) to copy

  bool is_file() const { return std::holds_alternative<FileRange>(v_); }
  // Total bytes this chunk puts on the wire.
  uint64_t size() const;
  // For byte chunks: the bytes. Undefined for file chunks.
  absl::Span<const uint8_t> bytes() const;
  // For file chunks: the range. Undefined for byte chunks.
  FileRange& file() { return std::get<FileRange>(v_); }

 private:
  std::variant<std::string, std::vector<uint8_t>, SharedBytes, FileRange> v_;
};

}  // namespace sluice::net
