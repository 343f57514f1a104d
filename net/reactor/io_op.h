// Internal: the link between an SQE and the object that handles its completions.
#pragma once

#include <cstdint>

namespace sluice::net::internal {

// An operation submitted to a Reactor's ring. The SQE's user_data is the IoOp's address; the
// reactor calls Complete() for each of its CQEs (several for a multishot op, the last one
// without IORING_CQE_F_MORE). An IoOp must stay alive until its last CQE has been delivered:
// owners count their in-flight ops and free themselves only when the count is zero.
// user_data 0 is reserved for requests whose completion nobody waits for (cancels).
class IoOp {
 public:
  virtual void Complete(int res, uint32_t cqe_flags) = 0;

 protected:
  ~IoOp() = default;
};

// An IoOp that forwards to a member function of its owner; embedded in the owner.
template <typename Owner, void (Owner::*kFn)(int, uint32_t)>
class MemberOp final : public IoOp {
 public:
  explicit MemberOp(Owner* owner) : owner_(owner) {}
  void Complete(int res, uint32_t cqe_flags) override { (owner_->*kFn)(res, cqe_flags); }

 private:
  Owner* owner_;
};

}  // namespace sluice::net::internal
