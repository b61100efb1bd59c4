// ClientConnection, the connection itself: reading the socket, the loop that drives the parser
// (and the body's back-pressure), the route's write hold, the proxy's own answers, and the end
// of an exchange. Reading a request is in client_request.cpp, the exchange with the upstream in
// client_upstream.cpp.
#include "client_connection.h"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "http_util.h"

namespace strangler::proxy {
namespace {

constexpr size_t kMaxPipelinedInput = 256 * 1024;  // stop reading the client beyond this

}  // namespace

int ClientConnection::idleTimeoutMs() const {
  auto runtime = const_cast<Worker&>(worker_).runtime();
  return runtime->config->limits.idle_timeout_ms;
}

bool ClientConnection::holdIfFenced() {
  if (decision_.route == nullptr || isSafe(method_)) return false;
  RouteHold* hold = runtime_->holds[static_cast<size_t>(decision_.route_index)];
  // One atomic load decides; a request that is not held only counts itself in a slot of the
  // hold that no other worker writes (GET /routes/NAME/hold sums them: in_flight_unsafe).
  if (!hold->flagged() || !hold->activeAt(worker_.now())) {
    unsafe_hold_ = hold;
    hold->beginUnsafe(worker_.index());
    return false;
  }
  parked_on_ = hold;
  parked_epoch_ = hold->epoch();
  parked_since_ = worker_.now();
  parked_until_ = parked_since_ + std::chrono::milliseconds(runtime_->config->cutover.hold_ms);
  hold->onParked();
  worker_.park(this);
  return true;
}

void ClientConnection::admitUnsafe() {
  if (decision_.route == nullptr || isSafe(method_)) return;
  unsafe_hold_ = runtime_->holds[static_cast<size_t>(decision_.route_index)];
  unsafe_hold_->beginUnsafe(worker_.index());
}

void ClientConnection::endUnsafe() {
  if (unsafe_hold_ == nullptr) return;
  unsafe_hold_->endUnsafe(worker_.index());
  unsafe_hold_ = nullptr;
}

void ClientConnection::checkHold(Worker::Clock::time_point now) {
  if (closed || parked_on_ == nullptr) return;
  if (parked_on_->epoch() != parked_epoch_ || !parked_on_->activeAt(now)) {
    releaseParked();
  } else if (now >= parked_until_ || worker_.stopping()) {
    refuseParked(worker_.stopping());
  }
}

void ClientConnection::releaseParked() {
  RouteHold* hold = parked_on_;
  parked_on_ = nullptr;
  worker_.unpark(this);
  hold->onUnparked(worker_.now() - parked_since_, false);
  // Routed with the config in force now, not the one the request arrived under: a cutover
  // switches the route's stage while the hold is on, and held writes go to the new owner.
  runtime_ = worker_.runtime();
  if (target_ok_) {
    decision_ = runtime_->router->decide(RequestView{method_, normalized_path_, &headers_},
                                         worker_.random());
  }
  admitUnsafe();
  expectBody();
  if (read_paused_) {
    read_paused_ = false;
    readAll();
  }
  if (!closed) processInput();
}

void ClientConnection::refuseParked(bool stopping) {
  RouteHold* hold = parked_on_;
  parked_on_ = nullptr;
  worker_.unpark(this);
  hold->onUnparked(worker_.now() - parked_since_, !stopping);
  // The body was never read and the connection closes after the answer.
  drainReceived(fd, 64);
  respondError(503, "route_held",
               "route '" + hold->name() + "' is held for a cutover; retry in a moment",
               "Retry-After: 1\r\n");
}

void ClientConnection::onClosed() {
  if (stream_ != nullptr) {
    H2Stream* stream = stream_;
    stream_ = nullptr;
    stream->session->clientClosed(*stream);
  }
  h2_.reset();  // its streams' requests end with the connection
  endUnsafe();
  if (parked_on_ != nullptr) {
    parked_on_->onUnparked(worker_.now() - parked_since_, false);
    parked_on_ = nullptr;
    worker_.unpark(this);
  }
}

void ClientConnection::startTls(const std::shared_ptr<const TlsServerContext>& context) {
  tls_ = std::make_unique<TlsStream>(*context, fd);
  // The handshake is part of the first request's head: it gets limits.header_timeout_ms.
  deadline_ = worker_.now() +
              std::chrono::milliseconds(worker_.runtime()->config->limits.header_timeout_ms);
}

bool ClientConnection::handshake() {
  switch (tls_->handshake()) {
    case TlsStream::Handshake::kDone:
      worker_.shared().metrics.recordClientEvent(worker_.index(), "tls_handshake");
      return true;
    case TlsStream::Handshake::kPending:
      if (hangup) worker_.closeClient(this);
      return false;
    case TlsStream::Handshake::kFailed:
      break;
  }
  worker_.shared().metrics.recordClientEvent(worker_.index(), "tls_handshake_failed");
  // Not a request, so not in the access log: a line to stderr, at most one per worker every
  // 10 s (a scanner must not flood the log; the counter has them all).
  thread_local Worker::Clock::time_point last_logged;
  if (last_logged == Worker::Clock::time_point{} ||
      worker_.now() - last_logged >= std::chrono::seconds(10)) {
    last_logged = worker_.now();
    std::fprintf(stderr, "strangler-proxy: TLS handshake with %s failed: %s\n", peer_.c_str(),
                 tls_->error().c_str());
  }
  worker_.closeClient(this);
  return false;
}

ssize_t ClientConnection::receive(char* buffer, size_t size) {
  if (stream_client_) {
    if (stream_ != nullptr) return stream_->session->readRequest(*stream_, buffer, size);
    errno = ECONNRESET;
    return -1;
  }
  if (tls_) return tls_->read(buffer, size);
  return ::recv(fd, buffer, size, 0);
}

ssize_t ClientConnection::transmit(const char* data, size_t size) {
  if (stream_client_) {
    if (stream_ != nullptr) return stream_->session->writeResponse(*stream_, data, size);
    errno = ECONNRESET;
    return -1;
  }
  if (tls_) return tls_->write(data, size);
  return ::send(fd, data, size, MSG_NOSIGNAL);
}

void ClientConnection::startH2(std::string_view already_read) {
  worker_.shared().metrics.recordClientEvent(worker_.index(), "h2_connection");
  h2_ = std::make_unique<H2Session>(*this, worker_, peer_, tls_ != nullptr);
  h2_->start(already_read);  // a bad start queues GOAWAY (counted when sent), then the close
  std::string().swap(in_);
  in_pos_ = 0;
  deadline_ = worker_.now() + std::chrono::milliseconds(idleTimeoutMs());
  h2_->wake();
  if (closed) return;
  if (peer_closed_) {  // the HTTP/1.1 reader already saw the client's end
    onH2PeerClosed();
    return;
  }
  flushH2();
}

void ClientConnection::onH2PeerClosed() {
  // The client sent all it will: the streams it finished are answered, one still waiting for
  // more of its request ends now, and no new one can come.
  h2_peer_closed_ = true;
  h2_->peerClosed();
  if (closed) return;
  flushH2();
}

void ClientConnection::onH2Events(uint32_t events) {
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) {
    char buffer[kReadChunk];
    for (;;) {
      const ssize_t n = receive(buffer, sizeof buffer);
      if (n > 0) {
        deadline_ = worker_.now() + std::chrono::milliseconds(idleTimeoutMs());
        if (!h2_->feed(buffer, static_cast<size_t>(n))) break;  // GOAWAY queued: sent below
        h2_->wake();
        if (closed) return;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (n == 0) {
        onH2PeerClosed();
        return;
      }
      worker_.closeClient(this);  // reset: its streams end with it
      return;
    }
  }
  flushH2();
}

void ClientConnection::flushH2() {
  for (;;) {
    if (h2_out_pos_ == h2_out_.size()) {
      h2_out_.clear();
      h2_out_pos_ = 0;
      h2_->takeOutput(h2_out_, 64 * 1024);
      h2_->wake();  // a stream whose answer drained may hand over more
      if (closed) return;
      if (h2_out_.empty()) break;
    }
    const ssize_t n = transmit(h2_out_.data() + h2_out_pos_, h2_out_.size() - h2_out_pos_);
    if (n > 0) {
      h2_out_pos_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    worker_.closeClient(this);
    return;
  }
  if (h2_->finished() || (h2_peer_closed_ && h2_->idle())) worker_.closeClient(this);
}

void ClientConnection::onEvents(uint32_t events) {
  if (closed) return;
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) hangup = true;
  if (state_ == State::kTunnel) {
    pumpTunnel();
    return;
  }
  if (h2_) {
    onH2Events(events);
    return;
  }
  if (tls_ && !tls_->established()) {
    if (!handshake()) return;
    if (tls_->negotiatedH2()) {
      startH2({});
      if (!closed) onH2Events(EPOLLIN);  // frames may have come with the handshake's end
      return;
    }
    // The request may have come with the handshake's last flight: read whatever is there.
    events |= EPOLLIN;
  }
  if (events & EPOLLOUT) flush();
  if (closed) return;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) {
    readAll();
    if (closed) return;
    if (state_ == State::kClosing && linger_ && peer_closed_ && out_pos_ >= out_.size()) {
      worker_.closeClient(this);
      return;
    }
    processInput();
  }
}

void ClientConnection::onUpstreamWritable() {
  if (closed || !streamed_ || body_done_ || state_ != State::kProxying) return;
  if (read_paused_) {
    read_paused_ = false;
    readAll();
    if (closed) return;
  }
  processInput();
}

void ClientConnection::readAll() {
  char buffer[kReadChunk];
  while (!closed && !peer_closed_) {
    if (parked_on_ != nullptr) {
      read_paused_ = true;  // a parked request's body waits in the kernel: resumed on release
      return;
    }
    if (in_.size() - in_pos_ > kMaxPipelinedInput) {
      read_paused_ = true;  // resumed once parsed, or once the request in flight is done
      return;
    }
    const ssize_t n = receive(buffer, sizeof buffer);
    if (n > 0 && state_ == State::kClosing) continue;  // a body nobody will read: dropped
    if (n > 0) {
      in_.append(buffer, static_cast<size_t>(n));
      // A body may take long to upload; what must not happen is a long silence.
      if (reading_body_) deadline_ = worker_.now() + std::chrono::milliseconds(idleTimeoutMs());
      // Drained (edge-triggered). TLS hands out one record at a time: read on until EAGAIN.
      if (!tls_ && static_cast<size_t>(n) < sizeof buffer && !hangup) return;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0) {
      worker_.closeClient(this);
      return;
    }
    peer_closed_ = true;  // may be a half-close after the request: still answer it
  }
}

void ClientConnection::processInput() {
  if (in_process_input_) return;  // the outer call's loop picks up the next request
  in_process_input_ = true;
  processLoop();
  in_process_input_ = false;
}

void ClientConnection::processLoop() {
  // A parked request's body is not parsed, whatever of it is buffered, until checkHold() lets
  // the request go.
  while (!closed && parked_on_ == nullptr) {
    if (first_request_ && !stream_client_ && in_pos_ < in_.size()) {
      // HTTP/2 with prior knowledge: the connection opens with the client preface.
      static constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
      const std::string_view start(in_.data() + in_pos_,
                                   std::min(in_.size() - in_pos_, kPreface.size()));
      if (kPreface.substr(0, start.size()) == start) {
        if (start.size() < kPreface.size()) return;  // the rest of the preface is on its way
        startH2(std::string_view(in_).substr(in_pos_));
        return;
      }
      first_request_ = false;
    }
    if (head_ready_) {  // a body too large to keep: the request goes on, the rest streams
      head_ready_ = false;
      startProxy();
      body_kept_ = false;
      std::string().swap(body_);
      continue;
    }
    const bool streaming = state_ == State::kProxying && streamed_ && !body_done_;
    if (state_ != State::kReading && !streaming) return;
    // Back-pressure: the body is read no faster than the upstream takes it
    // (onUpstreamWritable() goes on).
    if (streaming && upstream != nullptr && upstream->pendingOutput() >= kStreamWindow) return;
    if (in_pos_ < in_.size()) {
      if (!scan_done_ && !streaming) scanHead(in_.data() + in_pos_, in_.size() - in_pos_);
      size_t length = in_.size() - in_pos_;
      if (streaming) length = std::min(length, kStreamWindow / 4);
      const size_t parsed =
          http_parser_execute(&parser_, &settings(), in_.data() + in_pos_, length);
      in_pos_ += parsed;
      const auto error = HTTP_PARSER_ERRNO(&parser_);
      if (streaming) pushBody();
      if (closed) return;
      if (error == HPE_PAUSED) {
        http_parser_pause(&parser_, 0);
        if (parked_on_ != nullptr) return;
        if (head_ready_) continue;
      } else if (error != HPE_OK) {
        if (streaming) {
          failStream();
        } else if (fold_seen_) {
          worker_.shared().metrics.recordClientEvent(worker_.index(), "obs_fold");
          respondError(400, "bad_request",
                       "malformed request: a header line continued on the next line (obs-fold)");
        } else if (error_status_ == 400) {
          respondError(400, "bad_request", "malformed request: " + error_reason_);
        } else if (error_status_ == 501) {
          respondError(501, "not_implemented", "malformed request: " + error_reason_);
        } else if (error_status_ == 413) {
          respondError(413, "body_too_large", "request body exceeds limits.max_body_bytes");
        } else if (error_status_ == 431 || error == HPE_HEADER_OVERFLOW) {
          respondError(431, "headers_too_large", "request header fields are too large");
        } else {
          respondError(400, "bad_request",
                       std::string("malformed request: ") + http_errno_description(error));
        }
        return;
      }
    }
    if (in_pos_ == in_.size()) {
      in_.clear();
      in_pos_ = 0;
    }
    if (message_done_) {
      if (dispatched_) {
        finishBody();
      } else {
        startProxy();
      }
      continue;
    }
    if (streaming && in_pos_ < in_.size()) continue;
    if (read_paused_ && (state_ == State::kReading || streaming)) {  // the buffer is parsed now
      read_paused_ = false;
      readAll();
      if (closed) return;
      if (in_pos_ < in_.size()) continue;
    }
    if (peer_closed_) {
      if (streaming) {
        failStream();
      } else if (message_started_) {
        respondError(400, "bad_request", "connection closed in the middle of a request");
      } else {
        worker_.closeClient(this);
      }
      return;
    }
    if (out_pos_ < out_.size()) flush();  // an interim "100 Continue" the client waits for
    return;
  }
}

void ClientConnection::pushBody() {
  // A streamed body was not kept, so nothing sends it again: a failed send ends the exchange.
  if (upstream != nullptr && !pending_body_.empty()) upstream->sendMore(pending_body_);
  pending_body_.clear();
}

void ClientConnection::finishBody() {
  message_done_ = false;
  message_started_ = false;
  reading_body_ = false;
  if (chunked_in_) pending_body_ += "0\r\n\r\n";  // trailers are not forwarded
  pushBody();
  if (upstream != nullptr) upstream->requestDone();
}

void ClientConnection::failStream() {
  dropUpstream();
  const bool too_large = error_status_ == 413;
  if (response_started_) {
    worker_.closeClient(this);  // part of the answer is out: only the cut can tell
  } else if (too_large) {
    respondError(413, "body_too_large", "request body exceeds max_body_bytes");
  } else if (peer_closed_) {
    respondError(400, "bad_request", "connection closed in the middle of a request");
  } else {
    respondError(400, "bad_request",
                 std::string("malformed request body: ") +
                     http_errno_description(HTTP_PARSER_ERRNO(&parser_)));
  }
}

void ClientConnection::dropUpstream() {
  if (upstream == nullptr) return;
  UpstreamConnection* connection = upstream;
  upstream = nullptr;
  connection->client = nullptr;
  worker_.closeUpstream(connection);
}

bool ClientConnection::checkDeadline(Worker::Clock::time_point now) {
  if (!closed && h2_) {  // idle: no stream open and nothing read for limits.idle_timeout_ms
    h2_->checkDeadlines(now);
    if (!h2_->idle() || now < deadline_) return false;
    h2_->goAway();
    flushH2();
    if (!closed) worker_.closeClient(this);
    return true;
  }
  if (!closed && state_ == State::kTunnel) {
    if (now < tunnel_deadline_) return false;
    endTunnel("idle_timeout");
    return true;
  }
  if (!closed && state_ == State::kClosing && linger_ && now >= deadline_) {
    worker_.closeClient(this);
    return true;
  }
  if (closed || parked_on_ != nullptr || state_ != State::kReading || now < deadline_) return false;
  if (message_started_ && !message_done_) {
    respondError(408, "request_timeout", "the request did not arrive in time");
  } else {
    worker_.closeClient(this);
  }
  return true;
}

void ClientConnection::onStop() {
  if (closed) return;
  if (h2_) {  // GOAWAY: the open streams finish, the connection closes after the last
    h2_->goAway();
    flushH2();
    if (!closed && h2_->idle()) worker_.closeClient(this);
    return;
  }
  if (state_ == State::kTunnel) {  // no request boundary to wait for: the peers reconnect
    endTunnel("stop");
    return;
  }
  if (parked_on_ != nullptr) {
    refuseParked(true);
    return;
  }
  if (state_ == State::kReading && !message_started_) worker_.closeClient(this);
}

void ClientConnection::respondError(int status, const std::string& code, const std::string& message,
                                    std::string_view extra_headers) {
  const bool in_exchange = state_ == State::kProxying;
  if (!in_exchange) {
    // A request that could not be read: the stream cannot be trusted past this point.
    close_after_ = true;
    worker_.shared().active_requests.fetch_add(1, std::memory_order_relaxed);
    state_ = State::kProxying;
  }
  if (status == 400 || status == 408 || status == 413 || status == 431) close_after_ = true;
  if (worker_.stopping()) close_after_ = true;
  const std::string body = jsonError(code, message);
  error_code_ = code;
  error_message_ = message;
  std::string head = "HTTP/1.1 " + std::to_string(status) + " " + reasonPhrase(status) + "\r\n";
  head +=
      "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  head += extra_headers;
  if (runtime_ && runtime_->config->debug_headers && in_exchange) {
    head += "X-Strangler-Route: ";
    head += decision_.route != nullptr ? decision_.route->name : "-";
    head += "\r\nX-Strangler-Upstream: ";
    head += upstream_name_.empty() ? "-" : upstream_name_;
    head += "\r\n";
  }
  if (close_after_) head += "Connection: close\r\n";
  head += "\r\n";
  queue(head);
  if (method_ != "HEAD" || !in_exchange) queue(body);
  status_ = status;
  response_started_ = true;
  finishExchange(status);
}

Metrics::Protocol ClientConnection::protocol() const {
  if (stream_client_) return Metrics::Protocol::kHttp2;
  return http_minor_ == 0 ? Metrics::Protocol::kHttp10 : Metrics::Protocol::kHttp11;
}

void ClientConnection::finishExchange(int status) {
  if (streamed_ && !body_done_) {
    // Answered before the body was all read: the connection ends here (the rest of the body
    // is read and dropped for a moment, so the close does not reset the answer away).
    dropUpstream();
    close_after_ = true;
    linger_ = true;
  }
  auto& shared = worker_.shared();
  shared.active_requests.fetch_sub(1, std::memory_order_relaxed);
  const double seconds = std::chrono::duration<double>(worker_.now() - started_).count();
  const std::string route = decision_.route != nullptr ? decision_.route->name : "";
  const std::string& upstream_name = upstream_name_.empty() ? std::string("-") : upstream_name_;
  if (runtime_)
    shared.metrics.recordRequest(worker_.index(), route, upstream_name, status, seconds,
                                 protocol());
  logAccess(status, route, seconds);
  // A copy still here was never offered: the monolith's answer did not complete.
  if (shadow_) shared.shadow->unanswered(shadow_->route->name);
  shadow_.reset();
  endUnsafe();
  error_code_.clear();
  error_message_.clear();
  // The decision points into the snapshot released here.
  decision_.route = nullptr;
  decision_.route_index = -1;
  runtime_.reset();
  reading_body_ = false;
  upstream_name_.clear();
  upstream_path_.clear();
  body_.clear();
  // An HTTP/2 stream carries one request: its client ends with the answer.
  if (close_after_ || stream_client_ || worker_.stopping() ||
      (peer_closed_ && in_pos_ >= in_.size())) {
    state_ = State::kClosing;
    flush();
    return;
  }
  state_ = State::kReading;
  deadline_ = worker_.now() + std::chrono::milliseconds(idleTimeoutMs());
  flush();
  if (closed) return;
  if (read_paused_) {
    read_paused_ = false;
    readAll();
  }
  // Pipelined requests already buffered are handled by the caller's loop (processInput) or here.
  if (!closed && in_pos_ < in_.size()) processInput();
}

void ClientConnection::logAccess(int status, const std::string& route, double seconds,
                                 const nlohmann::json& extra) {
  auto& shared = worker_.shared();
  if (!shared.access_log) return;
  nlohmann::json line = {
      {"time_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count()},
      {"client", peer_},
      {"method", method_},
      {"target", url_},
      {"protocol", Metrics::kProtocolNames[static_cast<size_t>(protocol())]},
      {"status", status},
      {"route", route.empty() ? nlohmann::json(nullptr) : nlohmann::json(route)},
      {"upstream", upstream_name_.empty() ? std::string("-") : upstream_name_},
      {"fallback", fell_back_},
      {"error", error_code_.empty() ? nlohmann::json(nullptr) : nlohmann::json(error_code_)},
      {"bytes", response_bytes_},
      {"duration_ms", seconds * 1000.0}};
  if (!error_message_.empty()) line["reason"] = error_message_;
  if (extra.is_object()) line.update(extra);
  shared.access_log->write(line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

void ClientConnection::queue(std::string_view bytes) {
  out_.append(bytes);
}

void ClientConnection::flush() {
  while (out_pos_ < out_.size()) {
    const ssize_t n = transmit(out_.data() + out_pos_, out_.size() - out_pos_);
    if (n > 0) {
      out_pos_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    worker_.closeClient(this);
    return;
  }
  out_.clear();
  out_pos_ = 0;
  if (state_ == State::kClosing) {
    if (stream_client_) {  // the answer is whole: the stream ends (and the request with it)
      worker_.closeClient(this);
      return;
    }
    if (tls_) tls_->shutdown();
    ::shutdown(fd, SHUT_WR);
    if (linger_ && !peer_closed_) {
      deadline_ = worker_.now() + std::chrono::seconds(2);
      return;  // onEvents() closes at the client's end, checkDeadline() at the deadline
    }
    worker_.closeClient(this);
    return;
  }
  if (upstream != nullptr) upstream->resumeReading();
}

}  // namespace strangler::proxy
