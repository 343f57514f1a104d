#include "bench/harness/driver.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace sluice::bench {

absl::Status ParseHostPort(const std::string& broker, std::string* host, int* port) {
  const size_t colon = broker.rfind(':');
  int p = 0;
  if (colon == std::string::npos || colon == 0 || !absl::SimpleAtoi(broker.substr(colon + 1), &p) ||
      p <= 0 || p > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("expected HOST:PORT, got '", broker, "'"));
  }
  *host = broker.substr(0, colon);
  *port = p;
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Driver>> MakeDriver(absl::string_view kind,
                                                   const std::string& broker,
                                                   DriverSettings settings) {
  if (kind == "amqp") return MakeAmqpDriver(broker, std::move(settings));
  if (kind == "kafka") return MakeKafkaDriver(broker, std::move(settings));
  return absl::InvalidArgumentError(absl::StrCat("unknown driver '", kind, "' (kafka or amqp)"));
}

}  // namespace sluice::bench
