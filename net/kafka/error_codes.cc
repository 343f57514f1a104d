#include "net/kafka/error_codes.h"

namespace sluice::kafka::errors {

std::string_view ErrorCodeName(int16_t code) {
  switch (code) {
#define SLUICE_KAFKA_ERROR_NAME(name, value, text) \
  case value:                                      \
    return text;
    SLUICE_KAFKA_ERROR_CODES(SLUICE_KAFKA_ERROR_NAME)
#undef SLUICE_KAFKA_ERROR_NAME
    default:
      return "UNKNOWN_ERROR_CODE";
  }
}

bool IsRetriable(int16_t code) {
  switch (code) {
    case kCorruptMessage:
    case kUnknownTopicOrPartition:
    case kLeaderNotAvailable:
    case kNotLeaderOrFollower:
    case kRequestTimedOut:
    case kNetworkException:
    case kCoordinatorLoadInProgress:
    case kCoordinatorNotAvailable:
    case kNotCoordinator:
    case kNotEnoughReplicas:
    case kNotEnoughReplicasAfterAppend:
    case kConcurrentTransactions:
    case kKafkaStorageError:
    case kFetchSessionIdNotFound:
    case kInvalidFetchSessionEpoch:
    case kFencedLeaderEpoch:
    case kUnknownLeaderEpoch:
    case kOffsetNotAvailable:
    case kPreferredLeaderNotAvailable:
    case kEligibleLeadersNotAvailable:
    case kUnstableOffsetCommit:
    case kThrottlingQuotaExceeded:
    case kUnknownTopicId:
    case kInconsistentTopicId:
    case kFetchSessionTopicIdError:
      return true;
    default:
      return false;
  }
}

}  // namespace sluice::kafka::errors
