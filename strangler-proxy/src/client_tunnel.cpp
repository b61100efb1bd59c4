// ClientConnection, the tunnel after an upgrade (WebSocket and other `Upgrade` protocols): once
// the upstream answered 101, bytes pass both ways untouched until both ends closed, either
// failed, the tunnel was idle for limits.tunnel_idle_timeout_ms, or the proxy stops. Each
// direction buffers at most kStreamWindow (plus one read): a side that reads slower than the
// other writes stops the other's reading, never grows memory.
#include <sys/socket.h>

#include <cerrno>

#include "client_connection.h"
#include "http_util.h"

namespace strangler::proxy {
namespace {

enum class Io { kMoved, kBlocked, kEnd, kFailed };

Io classify(ssize_t n) {
  if (n > 0) return Io::kMoved;
  if (n == 0) return Io::kEnd;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return Io::kBlocked;
  return Io::kFailed;
}

}  // namespace

void ClientConnection::onSwitched(std::string_view early) {
  auto& shared = worker_.shared();
  state_ = State::kTunnel;
  // The exchange (the handshake) is over: counted and timed as a request answered 101. The
  // access log's line comes at the tunnel's end, with its duration and bytes.
  shared.active_requests.fetch_sub(1, std::memory_order_relaxed);
  tunnel_route_ = decision_.route != nullptr ? decision_.route->name : "";
  shared.metrics.recordRequest(worker_.index(), tunnel_route_, upstream_name_, 101,
                               std::chrono::duration<double>(worker_.now() - started_).count(),
                               protocol());
  shared.metrics.recordClientEvent(worker_.index(), "tunnel_opened");
  tunnel_idle_ = std::chrono::milliseconds(runtime_->config->limits.tunnel_idle_timeout_ms);
  tunnel_deadline_ = worker_.now() + tunnel_idle_;
  endUnsafe();
  shadow_.reset();
  decision_.route = nullptr;  // points into the snapshot released here
  decision_.route_index = -1;
  runtime_.reset();
  // What the client sent after its request (it should have waited, but may not have) and
  // what the upstream sent after the 101 go first.
  tunnel_up_.assign(in_, in_pos_);
  std::string().swap(in_);
  in_pos_ = 0;
  client_eof_ = peer_closed_;
  response_bytes_ += early.size();
  queue(early);
  pumpTunnel();
}

void ClientConnection::pumpTunnel() {
  if (closed) return;
  UpstreamConnection* to = upstream;
  if (to == nullptr || to->closed) {
    endTunnel("upstream_failed");
    return;
  }
  char buffer[kReadChunk];
  // One direction, one step: read while the buffer has room, write what it holds, and pass the
  // reader's end on once all of it is written. False: a side failed and the tunnel ended.
  bool moved = true;
  const auto step = [&](auto&& read, auto&& write, auto&& end, std::string& held, size_t& pos,
                        bool& eof, bool& ended, uint64_t& count, const char* read_failed,
                        const char* write_failed) {
    if (!eof && held.size() - pos < kStreamWindow) {
      const ssize_t n = read(buffer, sizeof buffer);
      switch (classify(n)) {
        case Io::kMoved:
          held.append(buffer, static_cast<size_t>(n));
          count += static_cast<size_t>(n);
          moved = true;
          break;
        case Io::kEnd:
          eof = moved = true;
          break;
        case Io::kBlocked:
          break;
        case Io::kFailed:
          endTunnel(read_failed);
          return false;
      }
    }
    if (pos < held.size()) {
      const ssize_t n = write(held.data() + pos, held.size() - pos);
      const Io io = classify(n);
      if (io == Io::kFailed || io == Io::kEnd) {
        endTunnel(write_failed);
        return false;
      }
      if (io == Io::kMoved) {
        pos += static_cast<size_t>(n);
        moved = true;
      }
    }
    if (pos == held.size()) {
      held.clear();
      pos = 0;
      if (eof && !ended) {
        end();
        ended = true;
      }
    }
    return true;
  };
  while (moved) {
    moved = false;
    const bool up = step([&](char* b, size_t n) { return receive(b, n); },
                         [&](const char* d, size_t n) { return to->transmit(d, n); },
                         [&] { to->shutdownWrite(); }, tunnel_up_, tunnel_up_pos_, client_eof_,
                         upstream_shut_, tunnel_up_bytes_, "client_failed", "upstream_failed");
    if (!up) return;
    const bool down = step([&](char* b, size_t n) { return to->receive(b, n); },
                           [&](const char* d, size_t n) { return transmit(d, n); },
                           [&] {
                             if (tls_) tls_->shutdown();
                             ::shutdown(fd, SHUT_WR);
                           },
                           out_, out_pos_, upstream_eof_, client_shut_, response_bytes_,
                           "upstream_failed", "client_failed");
    if (!down) return;
    if (moved) tunnel_deadline_ = worker_.now() + tunnel_idle_;
  }
  if (client_shut_ && upstream_shut_) endTunnel("closed");
}

void ClientConnection::endTunnel(const char* reason) {
  if (closed) return;
  const std::string_view why(reason);
  auto& metrics = worker_.shared().metrics;
  metrics.recordClientEvent(worker_.index(), "tunnel_closed");
  if (why != "closed") metrics.recordClientEvent(worker_.index(), std::string("tunnel_") + reason);
  logAccess(101, tunnel_route_, std::chrono::duration<double>(worker_.now() - started_).count(),
            nlohmann::json{
                {"upgrade", upgrade_}, {"bytes_up", tunnel_up_bytes_}, {"tunnel_end", reason}});
  worker_.closeClient(this);  // and the upstream connection with it
}

}  // namespace strangler::proxy
