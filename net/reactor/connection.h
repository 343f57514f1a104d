// Connection: one TCP socket owned by a Reactor. See net/reactor/README.md.
//
// Threading: every method runs on the owning reactor's thread. Another shard that wants to
// answer a connection posts a task to that reactor carrying the ConnectionId and looks it up
// with Reactor::FindConnection (the connection may be gone by then).
//
// Lifetime: created by a Listener or Reactor::AdoptConnection, owned by the reactor. After
// Close (or a peer close, error or timeout) the handler's OnClose runs once; the object and its
// handler are destroyed later, on the loop, once every submitted operation of the connection
// has delivered its last completion. A Connection& stays valid for the whole callback it was
// passed to, even if the callback closes it.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "net/reactor/buffer.h"
#include "net/reactor/io_op.h"
#include "net/reactor/reactor.h"

namespace sluice::net {

class ConnectionLimiter;
class FdBudget;

// How file ranges are put on the socket.
enum class FileSendMode {
  // IORING_OP_SPLICE file -> pipe -> socket when the kernel supports it, else kSendfile.
  kAuto,
  // Non-blocking sendfile(2) on the loop thread (a page-cache miss blocks the loop). Falls
  // back to kCopy if the file does not support it.
  kSendfile,
  // pread(2) into a buffer on the loop thread, then sent as bytes. The last resort.
  kCopy,
};

struct ConnectionOptions {
  // Bytes asked of one recv when the handler expects nothing more specific.
  size_t recv_chunk = 64 * 1024;
  // Hard cap on buffered input. A handler asking for more (ExpectAtLeast) or leaving this
  // much unconsumed gets the connection closed with ResourceExhausted. Codecs should reject
  // oversized frames themselves, with a protocol error, well before this.
  size_t max_input_bytes = 128 * 1024 * 1024;
  // Backpressure: when queued-but-unsent output exceeds this, receiving stops until it falls
  // to half. A client that never reads cannot make the broker buffer more than about this
  // plus one handler's response to one input buffer.
  uint64_t send_high_watermark = 64 * 1024 * 1024;
  // Close after this long without a byte moving in either direction; zero = never. (Sent
  // bytes count too: a consumer draining a large fetch is not idle, and while backpressure
  // holds receiving, silence on the input side is the broker's doing.)
  absl::Duration idle_timeout = absl::ZeroDuration();
  // Request read timeout: once the handler leaves a partial frame in the input buffer (it
  // returned from OnData without consuming it all), the rest of that frame must arrive within
  // this long, plus one second for every `request_min_bytes_per_sec` bytes of it received so
  // far; otherwise the connection closes with DeadlineExceeded. A frame the handler consumes
  // ends the clock and the next partial frame starts it again. So a large request on a slow
  // link completes as long as it averages that rate, and a client trickling bytes (which
  // would keep resetting the idle timeout) cannot hold a connection. The clock stops while
  // receiving is paused (by the handler or by send backpressure). Zero = off.
  absl::Duration request_read_timeout = absl::ZeroDuration();
  uint64_t request_min_bytes_per_sec = 0;
  // After CloseAfterSend has flushed everything and sent FIN, how long to keep reading (and
  // dropping) the peer's bytes while waiting for its FIN. Closing a socket with unread input
  // sends RST, which can destroy responses the peer has not read yet.
  absl::Duration linger_timeout = absl::Seconds(2);
  FileSendMode file_send_mode = FileSendMode::kAuto;
};

// The protocol side of a connection (a codec + request dispatcher). Called on the loop thread.
class ConnectionHandler {
 public:
  virtual ~ConnectionHandler() = default;

  // The connection is set up and receiving. May Send, arm a deadline, or Close.
  virtual void OnOpen(Connection& conn) {}
  // New bytes arrived and input.size() >= the last ExpectAtLeast. Consume every whole frame,
  // leave a partial one, and call input.ExpectAtLeast(n) when its total size is known. Not
  // called again until more bytes arrive (or ResumeReceive finds some buffered).
  virtual void OnData(Connection& conn, InputBuffer& input) = 0;
  // The output queue fell below half the high watermark after exceeding it.
  virtual void OnWritable(Connection& conn) {}
  // Queued output fell to the levels asked for with Connection::NotifyWhenOutputBelow.
  virtual void OnOutputBelow(Connection& conn) {}
  // Called exactly once. `reason`: OK after CloseAfterSend or a peer close at a frame boundary
  // (nothing unconsumed); DataLoss if the peer closed with unconsumed input (mid-frame);
  // DeadlineExceeded for the idle timeout or a deadline; ResourceExhausted for input limits;
  // Cancelled when the reactor shuts down; the socket error otherwise; or whatever was passed
  // to Close(). Sends are ignored from here on.
  virtual void OnClose(Connection& conn, absl::Status reason) = 0;
};

class Connection {
 public:
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  Reactor& reactor() const { return *reactor_; }
  ConnectionId id() const { return id_; }
  // "ip:port" of the peer, for logs.
  const std::string& peer() const { return peer_; }
  int fd() const { return fd_; }
  bool is_open() const { return state_ == State::kOpen; }

  // Queues output. Chunks go on the wire strictly in queue order; the send starts at the end
  // of the current loop iteration so that responses queued together leave in one sendmsg.
  // Ignored after Close/CloseAfterSend (the chunks are released).
  void Send(OutputChunk chunk);
  template <typename... Chunks>
  void Send(OutputChunk first, OutputChunk second, Chunks&&... rest) {
    Send(std::move(first));
    Send(std::move(second));
    (Send(OutputChunk(std::forward<Chunks>(rest))), ...);
  }
  // Bytes queued and not yet on the socket (file ranges count their length).
  uint64_t queued_bytes() const { return queued_bytes_; }
  // What the queued output costs: memory held by byte chunks not yet fully on the socket
  // (a chunk counts whole until its last byte is sent), and the number of file ranges.
  uint64_t queued_memory_bytes() const { return queued_memory_bytes_; }
  size_t queued_file_ranges() const { return queued_file_ranges_; }
  // Calls the handler's OnOutputBelow once, the first time sending brings queued memory to at
  // most `memory_bytes` and queued file ranges to at most `file_ranges` (for a handler
  // bounding what one connection may queue, see src/kafka/responder.h). Fires only on a
  // decrease: check before arming. Arming again replaces the levels.
  void NotifyWhenOutputBelow(uint64_t memory_bytes, size_t file_ranges);

  // Stops receiving, sends everything queued, shuts down the write side, waits (bounded by
  // linger_timeout) for the peer's FIN, then closes with an OK reason.
  void CloseAfterSend();
  // Closes now: queued output is dropped, in-flight operations are cancelled, OnClose runs
  // before this returns (unless already closed).
  void Close(absl::Status reason);

  // Receive flow control for the handler (e.g. while a request waits on another shard).
  // While paused, OnData is not called (a recv already in flight may still add to the
  // buffer). ResumeReceive delivers what was buffered, from a posted task, without waiting
  // for more bytes. Independent of send backpressure: receiving resumes when neither holds.
  void PauseReceive();
  void ResumeReceive();
  // For a handler that returns from OnData with whole frames still buffered, to let other
  // connections run (fairness): OnData is called again for them from a posted task, without
  // waiting for more bytes.
  void DeliverBufferedLater();

  // Closes the connection with `reason` (e.g. DeadlineExceeded("handshake timeout")) unless
  // ClearDeadline is called within `delay`. One deadline per connection; arming replaces.
  void SetDeadline(absl::Duration delay, absl::Status reason);
  void ClearDeadline();

  // Counters, for metrics and tests.
  uint64_t bytes_received() const { return bytes_received_; }
  uint64_t bytes_sent() const { return bytes_sent_; }
  bool receive_blocked_by_backpressure() const { return backpressure_; }
  // Times the send path waited for POLLOUT: the socket was full (EAGAIN), or a sendfile
  // burst used its budget and yields until the socket can take more.
  uint64_t send_waits() const { return send_waits_; }
  size_t input_capacity() const { return input_.capacity(); }

 private:
  friend class Reactor;
  friend class Listener;
  enum class State {
    kOpen,       // receiving and sending
    kFlushing,   // CloseAfterSend (or peer FIN) with output still queued
    kLingering,  // FIN sent; dropping input until the peer's FIN or linger_timeout
    kClosed,     // OnClose has run; waiting for in-flight completions before destruction
  };
  enum class RecvStep { kIdle, kRecv, kPollIn };
  enum class SendStep { kIdle, kSendmsg, kSpliceIn, kSpliceOut, kPollOut };

  Connection(Reactor* reactor, ConnectionId id, int fd, std::string peer,
             const ConnectionOptions& options);
  void Start(std::unique_ptr<ConnectionHandler> handler);
  // From the Listener: the slot taken for `ip` and the one descriptor taken from `fd_budget`
  // (may be null), given back on destruction.
  void AttachLimits(std::shared_ptr<ConnectionLimiter> limiter, std::string ip,
                    std::shared_ptr<FdBudget> fd_budget);

  // Receive path.
  void MaybeStartRecv();
  void OnRecv(int res, uint32_t flags);
  // Calls OnData if the handler is not paused and its ExpectAtLeast is met, then re-arms.
  void DeliverInput();
  void OnPollIn(int res, uint32_t flags);
  void HandlePeerClosed();
  void ArmIdleTimer(absl::Duration delay);
  void OnIdleTimer();
  // Request read timeout: after OnData, whether a partial frame is pending and since when.
  void TrackPartialFrame(bool consumed);
  void OnReadTimer();
  void MaybeNotifyOutputBelow();

  // Send path (one operation in flight at a time keeps the order trivially).
  void ContinueSend();
  void SubmitSendmsg();
  void SubmitSpliceIn();
  void SubmitSpliceOut();
  void SubmitPollOut();
  void SendFileDirect();  // kSendfile and kCopy, on the loop thread
  void OnSendmsg(int res, uint32_t flags);
  void OnSpliceIn(int res, uint32_t flags);
  void OnSpliceOut(int res, uint32_t flags);
  void OnPollOut(int res, uint32_t flags);
  // `n` bytes of the head of the queue reached the socket.
  void AdvanceSent(uint64_t n);
  void UpdateBackpressure();
  absl::Status EnsurePipe();
  void SwitchFileSendMode(FileSendMode mode, absl::string_view why);
  void OnOutputDrained();
  void BeginLinger();

  // A send-side failure: the socket error, or the reason already chosen if the peer had
  // closed (its RST then is expected).
  void SendFailed(int err, const char* what);
  void MaybeFinish();
  bool inflight() const { return recv_step_ != RecvStep::kIdle || send_step_ != SendStep::kIdle; }

  Reactor* const reactor_;
  const ConnectionId id_;
  const int fd_;
  const std::string peer_;
  const ConnectionOptions options_;
  std::unique_ptr<ConnectionHandler> handler_;
  std::shared_ptr<ConnectionLimiter> limiter_;  // released on destruction (set by Listener)
  std::string limiter_ip_;
  std::shared_ptr<FdBudget> fd_budget_;  // fds_charged_ of it released on destruction
  size_t fds_charged_ = 0;
  State state_ = State::kOpen;
  absl::Status close_reason_;  // for a deferred close (flush, linger)

  // Receive.
  InputBuffer input_;
  RecvStep recv_step_ = RecvStep::kIdle;
  bool peer_eof_ = false;
  bool user_paused_ = false;
  bool backpressure_ = false;
  Reactor::Clock::time_point last_activity_;  // last byte received or sent
  TimerId idle_timer_;
  TimerId deadline_timer_;
  TimerId linger_timer_;
  uint64_t bytes_received_ = 0;
  // The partial frame the handler left (request read timeout): when it started, bytes of it
  // received, and a lazily re-armed timer.
  bool frame_partial_ = false;
  Reactor::Clock::time_point frame_started_;
  uint64_t frame_bytes_ = 0;
  TimerId read_timer_;

  // Send. A deque, not a vector: in-flight iovecs point into the chunks (into a std::string's
  // inline storage, too), and a deque never moves its elements on push_back/pop_front.
  std::deque<OutputChunk> out_;
  uint64_t head_sent_ = 0;  // bytes of out_.front() already on the socket
  uint64_t queued_bytes_ = 0;
  uint64_t queued_memory_bytes_ = 0;
  size_t queued_file_ranges_ = 0;
  bool output_notify_armed_ = false;
  uint64_t output_notify_bytes_ = 0;
  size_t output_notify_ranges_ = 0;
  uint64_t bytes_sent_ = 0;
  uint64_t send_waits_ = 0;
  bool send_scheduled_ = false;  // in the reactor's send_pending_ list
  SendStep send_step_ = SendStep::kIdle;
  static constexpr int kMaxIov = 64;
  iovec iov_[kMaxIov];
  msghdr msg_{};
  FileSendMode file_mode_;
  int pipe_r_ = -1;  // splice pipe, created on first file range
  int pipe_w_ = -1;
  uint32_t pipe_capacity_ = 0;
  uint32_t pipe_bytes_ = 0;  // spliced in, not yet out
  uint64_t head_piped_ = 0;  // bytes of the head file range spliced into the pipe
  int eagain_streak_ = 0;

  bool destroy_scheduled_ = false;

  internal::MemberOp<Connection, &Connection::OnRecv> recv_op_{this};
  internal::MemberOp<Connection, &Connection::OnPollIn> poll_in_op_{this};
  internal::MemberOp<Connection, &Connection::OnSendmsg> sendmsg_op_{this};
  internal::MemberOp<Connection, &Connection::OnSpliceIn> splice_in_op_{this};
  internal::MemberOp<Connection, &Connection::OnSpliceOut> splice_out_op_{this};
  internal::MemberOp<Connection, &Connection::OnPollOut> poll_out_op_{this};
};

}  // namespace sluice::net
