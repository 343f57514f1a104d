#include "src/amqp/journal_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

#include "log/file_util.h"
#include "log/logging.h"

namespace sluice::amqp {

absl::StatusOr<JournalFile> OpenJournalFile(const std::string& path, std::string_view what,
                                            absl::FunctionRef<size_t(std::string_view)> decode) {
  uint64_t valid = 0;
  if (storage::FileExists(path)) {
    absl::StatusOr<std::vector<uint8_t>> data = storage::ReadWholeFile(path);
    if (!data.ok()) return data.status();
    std::string_view bytes(reinterpret_cast<const char*>(data->data()), data->size());
    valid = decode(bytes);
    if (valid < bytes.size()) {
      storage::LogWarning(
          "amqp: %s %s: %d bytes after the last valid record at %d cut (torn write or damage)",
          std::string(what), path, bytes.size() - valid, valid);
    }
  }
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return storage::ErrnoStatus("open", path, errno);
  if (::ftruncate(fd, static_cast<off_t>(valid)) != 0) {
    int err = errno;
    ::close(fd);
    return storage::ErrnoStatus("ftruncate", path, err);
  }
  return JournalFile{fd, valid};
}

absl::Status WriteAllAt(int fd, std::string_view data, uint64_t offset, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n =
        ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return storage::ErrnoStatus("pwrite", path, errno);
    if (n == 0) return storage::ErrnoStatus("pwrite", path, EIO);  // no progress possible
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace sluice::amqp
