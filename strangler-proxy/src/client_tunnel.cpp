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
                               std::chrono::duration<double>(worker_.now() - started_).count());
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
  bool moved = true;
  while (moved) {
    moved = false;
    // Client → upstream.
    if (!client_eof_ && tunnel_up_.size() - tunnel_up_pos_ < kStreamWindow) {
      const ssize_t n = receive(buffer, sizeof buffer);
      switch (classify(n)) {
        case Io::kMoved:
          tunnel_up_.append(buffer, static_cast<size_t>(n));
          tunnel_up_bytes_ += static_cast<size_t>(n);
          moved = true;
          break;
        case Io::kEnd:
          client_eof_ = moved = true;
          break;
        case Io::kBlocked:
          break;
        case Io::kFailed:
          endTunnel("client_failed");
          return;
      }
    }
    if (tunnel_up_pos_ < tunnel_up_.size()) {
      const ssize_t n =
          to->transmit(tunnel_up_.data() + tunnel_up_pos_, tunnel_up_.size() - tunnel_up_pos_);
      const Io io = classify(n);
      if (io == Io::kFailed || io == Io::kEnd) {
        endTunnel("upstream_failed");
        return;
      }
      if (io == Io::kMoved) {
        tunnel_up_pos_ += static_cast<size_t>(n);
        moved = true;
      }
    }
    if (tunnel_up_pos_ == tunnel_up_.size()) {
      tunnel_up_.clear();
      tunnel_up_pos_ = 0;
      if (client_eof_ && !upstream_shut_) {  // the client's end, passed on once all is sent
        to->shutdownWrite();
        upstream_shut_ = true;
      }
    }
    // Upstream → client.
    if (!upstream_eof_ && out_.size() - out_pos_ < kStreamWindow) {
      const ssize_t n = to->receive(buffer, sizeof buffer);
      switch (classify(n)) {
        case Io::kMoved:
          out_.append(buffer, static_cast<size_t>(n));
          response_bytes_ += static_cast<size_t>(n);
          moved = true;
          break;
        case Io::kEnd:
          upstream_eof_ = moved = true;
          break;
        case Io::kBlocked:
          break;
        case Io::kFailed:
          endTunnel("upstream_failed");
          return;
      }
    }
    if (out_pos_ < out_.size()) {
      const ssize_t n = transmit(out_.data() + out_pos_, out_.size() - out_pos_);
      const Io io = classify(n);
      if (io == Io::kFailed || io == Io::kEnd) {
        endTunnel("client_failed");
        return;
      }
      if (io == Io::kMoved) {
        out_pos_ += static_cast<size_t>(n);
        moved = true;
      }
    }
    if (out_pos_ == out_.size()) {
      out_.clear();
      out_pos_ = 0;
      if (upstream_eof_ && !client_shut_) {
        if (tls_) tls_->shutdown();
        ::shutdown(fd, SHUT_WR);
        client_shut_ = true;
      }
    }
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
