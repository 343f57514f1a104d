#include "net/reactor/net_log.h"

#include <cstdio>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace sluice::net {
namespace {

struct SinkState {
  absl::Mutex mu;
  NetLogSink sink ABSL_GUARDED_BY(mu);
};

SinkState& State() {
  static SinkState* state = new SinkState;  // never destroyed: usable during exit
  return *state;
}

}  // namespace

void SetNetLogSink(NetLogSink sink) {
  SinkState& s = State();
  absl::MutexLock lock(&s.mu);
  s.sink = std::move(sink);
}

namespace internal {

void EmitNetLog(std::string_view line) {
  SinkState& s = State();
  absl::MutexLock lock(&s.mu);
  if (s.sink) {
    s.sink(line);
    return;
  }
  std::fprintf(stderr, "sluice/net: %.*s\n", static_cast<int>(line.size()), line.data());
}

}  // namespace internal
}  // namespace sluice::net
