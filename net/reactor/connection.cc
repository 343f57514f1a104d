#include "net/reactor/connection.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "net/reactor/listener.h"
#include "net/reactor/net_log.h"

namespace sluice::net {
namespace {

// Loop-thread work for one sendfile/pread burst before yielding to other connections.
constexpr uint64_t kDirectSendBudget = 1024 * 1024;
// Largest read of the kCopy fallback.
constexpr size_t kCopyChunk = 256 * 1024;
// Pipe size asked for the splice path (the default is 64 KiB; unprivileged processes may
// raise it up to /proc/sys/fs/pipe-max-size, 1 MiB by default).
constexpr int kPipeSize = 1024 * 1024;
// Consecutive EAGAINs from a splice out of a file before giving up on the connection.
constexpr int kMaxSpliceInRetries = 100;

std::string_view FileSendModeName(FileSendMode mode) {
  switch (mode) {
    case FileSendMode::kAuto:
      return "splice";
    case FileSendMode::kSendfile:
      return "sendfile";
    case FileSendMode::kCopy:
      return "pread+send";
  }
  return "?";
}

}  // namespace

Connection::Connection(Reactor* reactor, ConnectionId id, int fd, std::string peer,
                       const ConnectionOptions& options)
    : reactor_(reactor),
      id_(id),
      fd_(fd),
      peer_(std::move(peer)),
      options_(options),
      file_mode_(options.file_send_mode) {
  if (file_mode_ == FileSendMode::kAuto && !reactor->supports_splice()) {
    file_mode_ = FileSendMode::kSendfile;
  }
}

Connection::~Connection() {
  if (pipe_r_ >= 0) ::close(pipe_r_);
  if (pipe_w_ >= 0) ::close(pipe_w_);
  ::close(fd_);
  if (limiter_) limiter_->Release(limiter_ip_);
  if (fd_budget_) fd_budget_->Release(fds_charged_);
}

void Connection::AttachLimits(std::shared_ptr<ConnectionLimiter> limiter, std::string ip,
                              std::shared_ptr<FdBudget> fd_budget) {
  limiter_ = std::move(limiter);
  limiter_ip_ = std::move(ip);
  fd_budget_ = std::move(fd_budget);
  fds_charged_ = fd_budget_ ? 1 : 0;
}

void Connection::Start(std::unique_ptr<ConnectionHandler> handler) {
  handler_ = std::move(handler);
  last_activity_ = Reactor::Clock::now();
  if (handler_ == nullptr) {
    // The factory refused the connection: drop it without callbacks.
    state_ = State::kClosed;
    MaybeFinish();
    return;
  }
  if (options_.idle_timeout > absl::ZeroDuration()) ArmIdleTimer(options_.idle_timeout);
  handler_->OnOpen(*this);
  MaybeStartRecv();
}

// ---------------------------------------------------------------------------------------------
// Receive path: one recv in flight, into input_.

void Connection::MaybeStartRecv() {
  if (recv_step_ != RecvStep::kIdle || state_ == State::kClosed) return;
  if (peer_eof_) return;  // nothing more will come
  size_t want = options_.recv_chunk;
  if (state_ == State::kOpen) {
    if (user_paused_ || backpressure_) return;
    const size_t expected = input_.expected();
    if (expected > options_.max_input_bytes) {
      Close(absl::ResourceExhaustedError(
          absl::StrFormat("handler expects %d input bytes, over max_input_bytes %d", expected,
                          options_.max_input_bytes)));
      return;
    }
    if (expected > input_.size()) want = std::max(want, expected - input_.size());
    if (input_.size() + want > options_.max_input_bytes) {
      if (input_.size() >= options_.max_input_bytes) {
        Close(absl::ResourceExhaustedError(
            absl::StrFormat("%d unconsumed input bytes reached max_input_bytes", input_.size())));
        return;
      }
      want = options_.max_input_bytes - input_.size();
    }
  } else {
    // Flushing or lingering: input is read only to be dropped (see linger_timeout).
    input_.Consume(input_.size());
    input_.ShrinkIfEmpty(options_.recv_chunk);
  }
  absl::Span<uint8_t> space = input_.PrepareWrite(want);
  const size_t len = std::min<size_t>(space.size(), std::numeric_limits<int32_t>::max());
  io_uring_sqe* sqe = reactor_->GetSqe(&recv_op_);
  io_uring_prep_recv(sqe, fd_, space.data(), len, 0);
  recv_step_ = RecvStep::kRecv;
}

void Connection::OnRecv(int res, uint32_t) {
  recv_step_ = RecvStep::kIdle;
  if (res <= 0 || state_ == State::kClosed) input_.AbandonWrite();
  if (state_ == State::kClosed) {
    MaybeFinish();
    return;
  }
  if (res == -EAGAIN || res == -EINTR) {
    // io_uring normally waits for readiness itself; if it hands EAGAIN back, poll first.
    io_uring_sqe* sqe = reactor_->GetSqe(&poll_in_op_);
    io_uring_prep_poll_add(sqe, fd_, POLLIN);
    recv_step_ = RecvStep::kPollIn;
    return;
  }
  if (res == -ECANCELED) {
    MaybeStartRecv();
    return;
  }
  if (res < 0) {
    Close(absl::ErrnoToStatus(-res, absl::StrCat("recv from ", peer_)));
    return;
  }
  if (res == 0) {
    HandlePeerClosed();
    return;
  }
  input_.Commit(static_cast<size_t>(res));
  bytes_received_ += static_cast<uint64_t>(res);
  frame_bytes_ += static_cast<uint64_t>(res);
  last_activity_ = Reactor::Clock::now();
  DeliverInput();
}

void Connection::DeliverInput() {
  if (state_ == State::kOpen && !user_paused_ &&
      input_.size() >= std::max<size_t>(input_.expected(), 1)) {
    input_.ExpectAtLeast(0);
    const uint64_t consumed_before = input_.consumed_total();
    handler_->OnData(*this, input_);
    if (state_ == State::kOpen) TrackPartialFrame(input_.consumed_total() != consumed_before);
    // After a big frame, give the memory back rather than keep it per idle connection (the
    // buffer keeps it while a recv is in flight into it).
    input_.ShrinkIfEmpty(2 * options_.recv_chunk);
  }
  if (peer_eof_ && state_ == State::kOpen && !user_paused_) {
    HandlePeerClosed();  // the EOF that came while paused, now that the input was seen
    return;
  }
  MaybeStartRecv();
}

void Connection::OnPollIn(int res, uint32_t) {
  recv_step_ = RecvStep::kIdle;
  if (state_ == State::kClosed) {
    MaybeFinish();
    return;
  }
  if (res < 0 && res != -ECANCELED && res != -EINTR) {
    Close(absl::ErrnoToStatus(-res, absl::StrCat("poll on ", peer_)));
    return;
  }
  MaybeStartRecv();
}

void Connection::HandlePeerClosed() {
  peer_eof_ = true;
  switch (state_) {
    case State::kOpen: {
      // Paused with input the handler has not seen: decide after ResumeReceive delivers it.
      if (user_paused_ && !input_.empty()) return;
      absl::Status reason =
          input_.empty() ? absl::OkStatus()
                         : absl::DataLossError(absl::StrFormat(
                               "peer %s closed the connection mid-frame (%d unconsumed bytes)",
                               peer_, input_.size()));
      if (out_.empty() && send_step_ == SendStep::kIdle && pipe_bytes_ == 0) {
        Close(std::move(reason));
      } else {
        // The peer may have only shut down its write side: deliver what is queued first.
        close_reason_ = std::move(reason);
        state_ = State::kFlushing;
      }
      return;
    }
    case State::kFlushing:
      return;  // keep flushing; OnOutputDrained closes
    case State::kLingering:
      Close(close_reason_);
      return;
    case State::kClosed:
      return;
  }
}

void Connection::PauseReceive() {
  reactor_->AssertInLoopThread();
  user_paused_ = true;
}

void Connection::ResumeReceive() {
  reactor_->AssertInLoopThread();
  if (!user_paused_) return;
  user_paused_ = false;
  if (state_ == State::kOpen && (!input_.empty() || peer_eof_)) {
    // Bytes buffered while paused may hold whole frames (and an EOF may be waiting behind
    // them): deliver them without waiting for more, from a task so a handler calling this
    // from its own callback is not re-entered.
    reactor_->Post([reactor = reactor_, id = id_] {
      if (Connection* conn = reactor->FindConnection(id)) conn->DeliverInput();
    });
  }
  MaybeStartRecv();
}

void Connection::TrackPartialFrame(bool consumed) {
  if (options_.request_read_timeout <= absl::ZeroDuration()) return;
  if (input_.empty()) {
    frame_partial_ = false;  // the timer, if armed, finds nothing to time and lapses
    return;
  }
  if (frame_partial_ && !consumed) return;  // the same frame, still incomplete
  // A new partial frame: whatever is buffered belongs to it (the handler consumed the frames
  // before it, or this is its first piece).
  frame_partial_ = true;
  frame_started_ = Reactor::Clock::now();
  frame_bytes_ = input_.size();
  if (read_timer_.value == 0) {
    read_timer_ = reactor_->RunAfter(options_.request_read_timeout, [this] { OnReadTimer(); });
  }
}

void Connection::OnReadTimer() {
  read_timer_ = TimerId{};
  if (state_ != State::kOpen || !frame_partial_) return;
  const auto now = Reactor::Clock::now();
  if (user_paused_ || backpressure_) {
    // Not the client's doing: the clock starts again when receiving resumes.
    frame_started_ = now;
    frame_bytes_ = 0;
    read_timer_ = reactor_->RunAfter(options_.request_read_timeout, [this] { OnReadTimer(); });
    return;
  }
  absl::Duration allowed = options_.request_read_timeout;
  if (options_.request_min_bytes_per_sec > 0) {
    allowed += absl::Seconds(static_cast<double>(frame_bytes_) /
                             static_cast<double>(options_.request_min_bytes_per_sec));
  }
  const absl::Duration elapsed = absl::FromChrono(now - frame_started_);
  if (elapsed >= allowed) {
    Close(absl::DeadlineExceededError(absl::StrFormat(
        "request read timeout: %s sent %d bytes of a frame in %s (allowed: %s, plus 1 s per %d "
        "bytes)",
        peer_, frame_bytes_, absl::FormatDuration(elapsed),
        absl::FormatDuration(options_.request_read_timeout), options_.request_min_bytes_per_sec)));
    return;
  }
  read_timer_ = reactor_->RunAfter(allowed - elapsed, [this] { OnReadTimer(); });
}

void Connection::DeliverBufferedLater() {
  reactor_->AssertInLoopThread();
  if (state_ != State::kOpen || input_.empty()) return;
  reactor_->Post([reactor = reactor_, id = id_] {
    if (Connection* conn = reactor->FindConnection(id)) conn->DeliverInput();
  });
}

void Connection::ArmIdleTimer(absl::Duration delay) {
  idle_timer_ = reactor_->RunAfter(delay, [this] { OnIdleTimer(); });
}

void Connection::OnIdleTimer() {
  idle_timer_ = TimerId{};
  if (state_ == State::kClosed) return;
  const absl::Duration idle = absl::FromChrono(Reactor::Clock::now() - last_activity_);
  if (idle >= options_.idle_timeout) {
    Close(absl::DeadlineExceededError(
        absl::StrCat("no bytes received from ", peer_, " for ", absl::FormatDuration(idle))));
  } else {
    // Re-armed lazily from the last activity: no timer work per recv or send.
    ArmIdleTimer(options_.idle_timeout - idle);
  }
}

void Connection::SetDeadline(absl::Duration delay, absl::Status reason) {
  reactor_->AssertInLoopThread();
  if (state_ == State::kClosed) return;
  reactor_->Cancel(deadline_timer_);
  deadline_timer_ = reactor_->RunAfter(delay, [this, reason = std::move(reason)] {
    deadline_timer_ = TimerId{};
    Close(reason);
  });
}

void Connection::ClearDeadline() {
  reactor_->AssertInLoopThread();
  reactor_->Cancel(deadline_timer_);
  deadline_timer_ = TimerId{};
}

// ---------------------------------------------------------------------------------------------
// Send path: one operation in flight, always for the head of out_.

void Connection::Send(OutputChunk chunk) {
  reactor_->AssertInLoopThread();
  if (state_ != State::kOpen) return;
  const uint64_t n = chunk.size();
  if (n == 0) return;
  if (chunk.is_file() && chunk.file().file == nullptr) {
    Close(absl::InvalidArgumentError("file range without a file"));
    return;
  }
  queued_bytes_ += n;
  if (chunk.is_file()) {
    ++queued_file_ranges_;
  } else {
    queued_memory_bytes_ += n;
  }
  out_.push_back(std::move(chunk));
  UpdateBackpressure();
  if (!send_scheduled_ && send_step_ == SendStep::kIdle) {
    send_scheduled_ = true;
    reactor_->MarkSendPending(this);
  }
}

void Connection::ContinueSend() {
  if (state_ == State::kClosed || send_step_ != SendStep::kIdle) return;
  if (pipe_bytes_ > 0) {
    SubmitSpliceOut();
    return;
  }
  if (out_.empty()) {
    OnOutputDrained();
    return;
  }
  if (!out_.front().is_file()) {
    SubmitSendmsg();
    return;
  }
  if (file_mode_ == FileSendMode::kAuto) {
    if (absl::Status s = EnsurePipe(); !s.ok()) {
      SwitchFileSendMode(FileSendMode::kSendfile, s.ToString());
    } else {
      SubmitSpliceIn();
      return;
    }
  }
  SendFileDirect();
}

void Connection::SubmitSendmsg() {
  // Gather consecutive byte chunks (up to a file range) into one sendmsg.
  int n = 0;
  for (auto it = out_.begin(); it != out_.end() && n < kMaxIov && !it->is_file(); ++it) {
    absl::Span<const uint8_t> b = it->bytes();
    const size_t skip = n == 0 ? static_cast<size_t>(head_sent_) : 0;
    iov_[n].iov_base = const_cast<uint8_t*>(b.data() + skip);
    iov_[n].iov_len = b.size() - skip;
    ++n;
  }
  msg_ = msghdr{};
  msg_.msg_iov = iov_;
  msg_.msg_iovlen = static_cast<size_t>(n);
  io_uring_sqe* sqe = reactor_->GetSqe(&sendmsg_op_);
  // MSG_NOSIGNAL: a peer that went away is an EPIPE result, not a SIGPIPE for the broker.
  io_uring_prep_sendmsg(sqe, fd_, &msg_, MSG_NOSIGNAL);
  send_step_ = SendStep::kSendmsg;
}

void Connection::OnSendmsg(int res, uint32_t) {
  send_step_ = SendStep::kIdle;
  if (state_ == State::kClosed) {
    MaybeFinish();
    return;
  }
  if (res == -EAGAIN || res == -EINTR || res == -ENOBUFS) {
    SubmitPollOut();
    return;
  }
  if (res < 0) {
    SendFailed(-res, "sendmsg");
    return;
  }
  AdvanceSent(static_cast<uint64_t>(res));  // short writes just leave the rest queued
  ContinueSend();
}

absl::Status Connection::EnsurePipe() {
  if (pipe_r_ >= 0) return absl::OkStatus();
  if (fd_budget_ != nullptr && !fd_budget_->TryAcquire(2)) {
    return absl::ResourceExhaustedError("no file descriptors left in the network's budget");
  }
  int p[2];
  if (::pipe2(p, O_NONBLOCK | O_CLOEXEC) != 0) {
    const int err = errno;
    if (fd_budget_ != nullptr) fd_budget_->Release(2);
    return absl::ErrnoToStatus(err, "pipe2");
  }
  if (fd_budget_ != nullptr) fds_charged_ += 2;
  pipe_r_ = p[0];
  pipe_w_ = p[1];
  int size = ::fcntl(pipe_w_, F_SETPIPE_SZ, kPipeSize);
  if (size < 0) size = ::fcntl(pipe_w_, F_GETPIPE_SZ);
  pipe_capacity_ = size > 0 ? static_cast<uint32_t>(size) : 64 * 1024;
  return absl::OkStatus();
}

void Connection::SubmitSpliceIn() {
  FileRange& r = out_.front().file();
  const uint64_t remaining = r.length - head_piped_;
  const auto len = static_cast<unsigned>(std::min<uint64_t>(remaining, pipe_capacity_));
  io_uring_sqe* sqe = reactor_->GetSqe(&splice_in_op_);
  // The pipe is empty here, so this never waits for the pipe; the file read itself runs in an
  // io-wq worker, off the loop thread.
  io_uring_prep_splice(sqe, r.file->fd(), static_cast<int64_t>(r.offset + head_piped_), pipe_w_, -1,
                       len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
  send_step_ = SendStep::kSpliceIn;
}

void Connection::OnSpliceIn(int res, uint32_t) {
  send_step_ = SendStep::kIdle;
  if (state_ == State::kClosed) {
    MaybeFinish();
    return;
  }
  if (res == -EAGAIN || res == -EINTR) {
    if (++eagain_streak_ > kMaxSpliceInRetries) {
      Close(absl::UnavailableError("splice from file keeps returning EAGAIN"));
    } else {
      SubmitSpliceIn();
    }
    return;
  }
  eagain_streak_ = 0;
  if (res == -EINVAL || res == -EOPNOTSUPP || res == -ENOSYS) {
    // This file (its file system) can't splice; the pipe is empty, so switching is safe.
    SwitchFileSendMode(FileSendMode::kSendfile, absl::StrCat("splice: errno ", -res));
    ContinueSend();
    return;
  }
  if (res < 0) {
    Close(absl::ErrnoToStatus(-res, "splice from file"));
    return;
  }
  if (res == 0) {
    Close(absl::DataLossError("file range ends past the end of its file"));
    return;
  }
  pipe_bytes_ = static_cast<uint32_t>(res);
  head_piped_ += static_cast<uint64_t>(res);
  SubmitSpliceOut();
}

void Connection::SubmitSpliceOut() {
  unsigned flags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
  // More of this range or another chunk follows: let TCP fill whole segments.
  if (out_.size() > 1 || head_piped_ < out_.front().size()) flags |= SPLICE_F_MORE;
  io_uring_sqe* sqe = reactor_->GetSqe(&splice_out_op_);
  // The socket is non-blocking, so a full send buffer is EAGAIN (then POLLOUT), not an io-wq
  // worker parked on a slow reader.
  io_uring_prep_splice(sqe, pipe_r_, -1, fd_, -1, pipe_bytes_, flags);
  send_step_ = SendStep::kSpliceOut;
}

void Connection::OnSpliceOut(int res, uint32_t) {
  send_step_ = SendStep::kIdle;
  if (state_ == State::kClosed) {
    MaybeFinish();
    return;
  }
  if (res == -EAGAIN || res == -EINTR) {
    SubmitPollOut();
    return;
  }
  if (res < 0) {
    SendFailed(-res, "splice to socket");
    return;
  }
  if (res == 0) {  // the pipe holds data, so this can't make progress
    Close(absl::InternalError("splice from pipe to socket returned 0"));
    return;
  }
  pipe_bytes_ -= static_cast<uint32_t>(res);
  AdvanceSent(static_cast<uint64_t>(res));
  ContinueSend();
}

void Connection::SubmitPollOut() {
  io_uring_sqe* sqe = reactor_->GetSqe(&poll_out_op_);
  io_uring_prep_poll_add(sqe, fd_, POLLOUT);
  send_step_ = SendStep::kPollOut;
  ++send_waits_;
}

void Connection::OnPollOut(int res, uint32_t) {
  send_step_ = SendStep::kIdle;
  if (state_ == State::kClosed) {
    MaybeFinish();
    return;
  }
  if (res < 0 && res != -EINTR && res != -ECANCELED) {
    SendFailed(-res, "poll for POLLOUT");
    return;
  }
  ContinueSend();  // a POLLERR/POLLHUP shows up as the send's error
}

void Connection::SendFileDirect() {
  uint64_t budget = kDirectSendBudget;
  while (!out_.empty() && out_.front().is_file() && budget > 0) {
    FileRange& r = out_.front().file();
    const uint64_t left = r.length - head_sent_;
    if (file_mode_ != FileSendMode::kCopy) {
      off_t off = static_cast<off_t>(r.offset + head_sent_);
      const ssize_t n = ::sendfile(fd_, r.file->fd(), &off, std::min(left, budget));
      if (n > 0) {
        budget -= std::min<uint64_t>(budget, static_cast<uint64_t>(n));
        AdvanceSent(static_cast<uint64_t>(n));
        if (state_ == State::kClosed) return;  // OnWritable may have closed
        continue;
      }
      if (n == 0) {
        Close(absl::DataLossError("file range ends past the end of its file"));
        return;
      }
      if (errno == EAGAIN || errno == EINTR) {
        SubmitPollOut();
        return;
      }
      if (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) {
        SwitchFileSendMode(FileSendMode::kCopy, absl::StrCat("sendfile: errno ", errno));
        continue;
      }
      SendFailed(errno, "sendfile");
      return;
    }
    // kCopy: read a piece and put it in front of the rest of the range as a byte chunk.
    const size_t len = static_cast<size_t>(std::min<uint64_t>(left, kCopyChunk));
    std::string piece(len, '\0');
    const ssize_t n =
        ::pread(r.file->fd(), piece.data(), len, static_cast<off_t>(r.offset + head_sent_));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Close(absl::ErrnoToStatus(errno, "pread"));
      return;
    }
    if (n == 0) {
      Close(absl::DataLossError("file range ends past the end of its file"));
      return;
    }
    piece.resize(static_cast<size_t>(n));
    r.offset += head_sent_ + static_cast<uint64_t>(n);
    r.length -= static_cast<uint32_t>(head_sent_ + static_cast<uint64_t>(n));
    head_sent_ = 0;
    head_piped_ = 0;
    if (r.length == 0) {
      out_.pop_front();
      --queued_file_ranges_;
    }
    queued_memory_bytes_ += piece.size();
    out_.emplace_front(std::move(piece));  // queued_bytes_ unchanged: same bytes, new form
    SubmitSendmsg();
    return;
  }
  if (!out_.empty() && out_.front().is_file()) {
    // Budget used up: yield to other connections; POLLOUT completes at once if writable.
    SubmitPollOut();
    return;
  }
  ContinueSend();
}

void Connection::SwitchFileSendMode(FileSendMode mode, absl::string_view why) {
  // Per connection, and under descriptor pressure many connections switch: rate-limited.
  thread_local LogRateLimiter log_limit(absl::Seconds(10));
  if (uint64_t suppressed = 0; log_limit.Allow(&suppressed)) {
    NetLog("connection %s: file ranges fall back from %s to %s (%s; %u more such lines held back)",
           peer_, FileSendModeName(file_mode_), FileSendModeName(mode), why,
           static_cast<unsigned>(suppressed));
  }
  file_mode_ = mode;
}

void Connection::AdvanceSent(uint64_t n) {
  bytes_sent_ += n;
  last_activity_ = Reactor::Clock::now();
  queued_bytes_ -= n;
  while (n > 0) {
    const uint64_t left = out_.front().size() - head_sent_;
    if (n < left) {
      head_sent_ += n;
      break;
    }
    n -= left;
    if (out_.front().is_file()) {
      --queued_file_ranges_;
    } else {
      queued_memory_bytes_ -= out_.front().size();
    }
    out_.pop_front();  // releases the bytes or the FileRef
    head_sent_ = 0;
    head_piped_ = 0;
  }
  MaybeNotifyOutputBelow();
  if (state_ == State::kClosed) return;  // the handler closed
  UpdateBackpressure();
}

void Connection::NotifyWhenOutputBelow(uint64_t memory_bytes, size_t file_ranges) {
  reactor_->AssertInLoopThread();
  output_notify_armed_ = true;
  output_notify_bytes_ = memory_bytes;
  output_notify_ranges_ = file_ranges;
}

void Connection::MaybeNotifyOutputBelow() {
  if (!output_notify_armed_ || queued_memory_bytes_ > output_notify_bytes_ ||
      queued_file_ranges_ > output_notify_ranges_ || state_ != State::kOpen) {
    return;
  }
  output_notify_armed_ = false;
  handler_->OnOutputBelow(*this);
}

void Connection::UpdateBackpressure() {
  if (!backpressure_) {
    if (queued_bytes_ > options_.send_high_watermark) backpressure_ = true;
    return;
  }
  if (queued_bytes_ > options_.send_high_watermark / 2) return;
  backpressure_ = false;
  if (state_ != State::kOpen) return;
  MaybeStartRecv();
  handler_->OnWritable(*this);
}

void Connection::SendFailed(int err, const char* what) {
  if (peer_eof_ && state_ != State::kOpen) {
    Close(close_reason_);
  } else {
    Close(absl::ErrnoToStatus(err, absl::StrCat(what, " to ", peer_)));
  }
}

// ---------------------------------------------------------------------------------------------
// Closing.

void Connection::OnOutputDrained() {
  if (state_ != State::kFlushing) return;
  if (peer_eof_) {
    Close(close_reason_);
  } else {
    BeginLinger();
  }
}

void Connection::CloseAfterSend() {
  reactor_->AssertInLoopThread();
  if (state_ != State::kOpen) return;
  close_reason_ = absl::OkStatus();
  state_ = State::kFlushing;
  if (out_.empty() && send_step_ == SendStep::kIdle && pipe_bytes_ == 0) {
    OnOutputDrained();
  }
  // Otherwise the send path calls OnOutputDrained when the queue empties.
}

void Connection::BeginLinger() {
  state_ = State::kLingering;
  // FIN after the last byte; the peer reads everything, then sees end of stream.
  ::shutdown(fd_, SHUT_WR);
  linger_timer_ = reactor_->RunAfter(options_.linger_timeout, [this] {
    linger_timer_ = TimerId{};
    Close(close_reason_);
  });
  MaybeStartRecv();
}

void Connection::Close(absl::Status reason) {
  reactor_->AssertInLoopThread();
  if (state_ == State::kClosed) return;
  state_ = State::kClosed;
  reactor_->Cancel(idle_timer_);
  reactor_->Cancel(deadline_timer_);
  reactor_->Cancel(linger_timer_);
  reactor_->Cancel(read_timer_);
  // Also wakes an io-wq worker that might be blocked on the socket, and tells the peer now.
  ::shutdown(fd_, SHUT_RDWR);
  switch (recv_step_) {
    case RecvStep::kRecv:
      reactor_->CancelOp(&recv_op_);
      break;
    case RecvStep::kPollIn:
      reactor_->CancelOp(&poll_in_op_);
      break;
    case RecvStep::kIdle:
      break;
  }
  switch (send_step_) {
    case SendStep::kSendmsg:
      reactor_->CancelOp(&sendmsg_op_);
      break;
    case SendStep::kSpliceIn:
      reactor_->CancelOp(&splice_in_op_);
      break;
    case SendStep::kSpliceOut:
      reactor_->CancelOp(&splice_out_op_);
      break;
    case SendStep::kPollOut:
      reactor_->CancelOp(&poll_out_op_);
      break;
    case SendStep::kIdle:
      break;
  }
  // The output queue is kept until destruction: in-flight SQEs may still point into it.
  handler_->OnClose(*this, std::move(reason));
  MaybeFinish();
}

void Connection::MaybeFinish() {
  if (state_ != State::kClosed || inflight() || destroy_scheduled_) return;
  destroy_scheduled_ = true;
  reactor_->ScheduleDestroy(this);
}

}  // namespace sluice::net
