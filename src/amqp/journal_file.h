// The file handling the AMQP journals share (cursor journal, metadata journal): open for
// appending right after the last valid record, cutting a torn or damaged tail, and append.
//
// Threading: the shard thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace sluice::amqp {

struct JournalFile {
  int fd = -1;
  uint64_t size = 0;  // bytes of valid records: appends go here
};

// Reads the journal at `path` if it exists; `decode` consumes its records and returns how many
// leading bytes they span. Bytes after them are logged (naming `what`) and cut; the file is
// created if missing and opened for writing.
absl::StatusOr<JournalFile> OpenJournalFile(const std::string& path, std::string_view what,
                                            absl::FunctionRef<size_t(std::string_view)> decode);

// Writes all of `data` at `offset` of `fd` (pwrite, retried on EINTR and short writes).
absl::Status WriteAllAt(int fd, std::string_view data, uint64_t offset, const std::string& path);

}  // namespace sluice::amqp
