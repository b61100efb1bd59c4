#include "client_connection.h"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "forwarded_headers.h"
#include "http_util.h"
#include "strangler/proxy/path_normalizer.h"

namespace strangler::proxy {
namespace {

constexpr size_t kMaxPendingOutput = 1024 * 1024;  // stop reading the upstream beyond this
constexpr size_t kMaxPipelinedInput = 256 * 1024;  // stop reading the client beyond this

}  // namespace

const http_parser_settings& ClientConnection::settings() {
  static const http_parser_settings kSettings = [] {
    http_parser_settings s{};
    s.on_message_begin = &ClientConnection::onMessageBegin;
    s.on_url = &ClientConnection::onUrl;
    s.on_header_field = &ClientConnection::onHeaderField;
    s.on_header_value = &ClientConnection::onHeaderValue;
    s.on_headers_complete = &ClientConnection::onHeadersComplete;
    s.on_body = &ClientConnection::onBody;
    s.on_message_complete = &ClientConnection::onMessageComplete;
    return s;
  }();
  return kSettings;
}

int ClientConnection::idleTimeoutMs() const {
  auto runtime = const_cast<Worker&>(worker_).runtime();
  return runtime->config->limits.idle_timeout_ms;
}

int ClientConnection::onMessageBegin(http_parser* parser) {
  auto* self = static_cast<ClientConnection*>(parser->data);
  self->message_started_ = true;
  self->message_done_ = false;
  self->reading_body_ = false;
  self->header_value_last_ = false;
  self->header_bytes_ = 0;
  self->error_status_ = 0;
  self->method_.clear();
  self->url_.clear();
  self->headers_.clear();
  self->body_.clear();
  self->had_body_framing_ = false;
  self->head_complete_ = false;
  self->trailers_seen_ = false;
  self->head_ready_ = false;
  self->dispatched_ = false;
  self->streamed_ = false;
  self->body_done_ = false;
  self->body_kept_ = true;
  self->chunked_in_ = false;
  self->declared_length_ = 0;
  self->body_bytes_ = 0;
  self->pending_body_.clear();
  self->absolute_form_ = false;
  self->absolute_host_.clear();
  self->decision_ = Decision{};
  self->target_ok_ = false;
  self->started_ = self->worker_.now();
  self->runtime_ = self->worker_.runtime();
  self->deadline_ =
      self->started_ + std::chrono::milliseconds(self->runtime_->config->limits.header_timeout_ms);
  return 0;
}

int ClientConnection::onUrl(http_parser* parser, const char* at, size_t length) {
  auto* self = static_cast<ClientConnection*>(parser->data);
  self->url_.append(at, length);
  self->header_bytes_ += length;
  if (self->header_bytes_ > static_cast<size_t>(self->runtime_->config->limits.max_header_bytes)) {
    self->error_status_ = 431;
    return 1;
  }
  return 0;
}

int ClientConnection::onHeaderField(http_parser* parser, const char* at, size_t length) {
  auto* self = static_cast<ClientConnection*>(parser->data);
  if (self->head_complete_) {
    // A chunked body's trailer: never merged into the head (the upstream would take it for
    // a header nothing inspected) and not forwarded, as the body goes on with its length.
    self->trailers_seen_ = true;
    self->header_bytes_ += length;
    return self->header_bytes_ >
                   static_cast<size_t>(self->runtime_->config->limits.max_header_bytes)
               ? 1
               : 0;
  }
  if (self->headers_.empty() || self->header_value_last_) self->headers_.emplace_back();
  self->header_value_last_ = false;
  self->headers_.back().first.append(at, length);
  self->header_bytes_ += length + 4;
  if (self->header_bytes_ > static_cast<size_t>(self->runtime_->config->limits.max_header_bytes)) {
    self->error_status_ = 431;
    return 1;
  }
  return 0;
}

int ClientConnection::onHeaderValue(http_parser* parser, const char* at, size_t length) {
  auto* self = static_cast<ClientConnection*>(parser->data);
  if (self->head_complete_) {
    self->header_bytes_ += length;
    return self->header_bytes_ >
                   static_cast<size_t>(self->runtime_->config->limits.max_header_bytes)
               ? 1
               : 0;
  }
  if (self->headers_.empty()) return 1;
  self->header_value_last_ = true;
  self->headers_.back().second.append(at, length);
  self->header_bytes_ += length;
  if (self->header_bytes_ > static_cast<size_t>(self->runtime_->config->limits.max_header_bytes)) {
    self->error_status_ = 431;
    return 1;
  }
  return 0;
}

int ClientConnection::onHeadersComplete(http_parser* parser) {
  auto* self = static_cast<ClientConnection*>(parser->data);
  self->head_complete_ = true;
  if (self->fold_seen_) {
    self->error_status_ = 400;
    return -1;
  }
  // The parser may be built lenient about field names; a name that is not an RFC 9110 token
  // ("Transfer-Encoding :", "Bad Header") could be read differently upstream, so refuse it.
  for (const auto& [name, value] : self->headers_) {
    if (!isToken(name)) {
      self->error_status_ = 400;
      self->error_reason_ = "invalid header field name";
      return -1;  // not 1: that would mean "no body", not "error"
    }
  }
  if (parser->flags & F_CHUNKED) {
    // Forwarded as received, so checked whole: every coding a token, `chunked` once and last
    // ("chunked, chunked" would be framed differently by the next hop).
    self->te_codings_.clear();
    int chunked = 0;
    bool valid = true;
    for (const auto& [name, value] : self->headers_) {
      if (!iequals(name, "transfer-encoding")) continue;
      size_t start = 0;
      while (start <= value.size()) {
        size_t end = value.find(',', start);
        if (end == std::string::npos) end = value.size();
        std::string_view coding(value.data() + start, end - start);
        while (!coding.empty() && (coding.front() == ' ' || coding.front() == '\t'))
          coding.remove_prefix(1);
        while (!coding.empty() && (coding.back() == ' ' || coding.back() == '\t'))
          coding.remove_suffix(1);
        if (!coding.empty()) {
          valid = valid && isToken(coding) && chunked == 0;  // nothing after chunked
          if (iequals(coding, "chunked")) ++chunked;
          if (!self->te_codings_.empty()) self->te_codings_ += ", ";
          self->te_codings_.append(coding);
        }
        start = end + 1;
      }
    }
    if (!valid || chunked != 1) {
      self->error_status_ = 400;
      self->error_reason_ = "Transfer-Encoding must name chunked once, last";
      return -1;
    }
  }
  if ((parser->flags & F_CHUNKED) && parser->http_major == 1 && parser->http_minor == 0) {
    // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing (a 1.0 hop
    // behind us may not know it).
    self->error_status_ = 400;
    self->error_reason_ = "Transfer-Encoding in an HTTP/1.0 request";
    return -1;
  }
  self->method_ = http_method_str(static_cast<http_method>(parser->method));
  self->http_minor_ = parser->http_major == 1 ? parser->http_minor : 0;
  self->had_body_framing_ = (parser->flags & (F_CHUNKED | F_CONTENTLENGTH)) != 0;
  self->chunked_in_ = (parser->flags & F_CHUNKED) != 0;
  self->declared_length_ = (parser->flags & F_CONTENTLENGTH) ? parser->content_length : 0;
  self->streamed_ = self->chunked_in_ || self->declared_length_ > 0;
  self->keep_alive_ = http_should_keep_alive(parser) != 0;  // a streamed request is proxied now
  self->routeRequest();
  const int64_t limit = self->bodyLimit();
  if (limit > 0 && self->declared_length_ > static_cast<uint64_t>(limit)) {
    self->error_status_ = 413;
    return -1;  // not 1: that would mean "no body", not "error"
  }
  if (self->holdIfFenced()) {
    // Parked right after the head: the body stays unread (and unasked for, no 100 Continue)
    // until the hold is over. The parser stops here and resumes from the same byte.
    http_parser_pause(parser, 1);
    return 0;
  }
  self->expectBody();
  return 0;
}

size_t ClientConnection::keepLimit() const {
  const auto* route = decision_.route;
  if (route != nullptr && route->shadow) return static_cast<size_t>(route->shadow->max_body_bytes);
  return kShadowCaptureBytes;
}

int64_t ClientConnection::bodyLimit() const {
  if (decision_.route != nullptr && decision_.route->max_body_bytes)
    return *decision_.route->max_body_bytes;
  return runtime_->config->limits.max_body_bytes;
}

void ClientConnection::expectBody() {
  // Body reads get the idle timeout between reads rather than the head's deadline.
  reading_body_ = true;
  deadline_ = worker_.now() + std::chrono::milliseconds(runtime_->config->limits.idle_timeout_ms);
  if (had_body_framing_ && (parser_.content_length > 0 || (parser_.flags & F_CHUNKED))) {
    if (auto expect = findHeader(headers_, "expect"); expect && iequals(*expect, "100-continue")) {
      queue("HTTP/1.1 100 Continue\r\n\r\n");
    }
  }
}

void ClientConnection::routeRequest() {
  std::string_view target(url_);
  std::string rooted;
  if (startsWithIgnoreCase(target, "http://") || startsWithIgnoreCase(target, "https://")) {
    // absolute-form: route on its path; its authority is the host (RFC 9112 §3.2.2: the Host
    // header the client sent is replaced by it).
    const size_t authority = target.find("//") + 2;
    const size_t end = target.find_first_of("/?", authority);
    absolute_form_ = true;
    absolute_host_ = std::string(target.substr(authority, end - authority));
    if (end == std::string_view::npos) {
      target = "/";
    } else if (target[end] == '?') {
      rooted = "/" + std::string(target.substr(end));  // "http://host?q" asks for "/?q"
      target = rooted;
    } else {
      target = target.substr(end);
    }
  }
  auto normalized = normalizeTarget(target);
  if (!normalized) {
    target_ok_ = false;
    target_error_ = normalized.error().message;
    return;
  }
  target_ok_ = true;
  normalized_path_ = std::move(normalized->path);
  query_ = std::move(normalized->query);
  has_query_ = normalized->has_query;
  decision_ =
      runtime_->router->decide(RequestView{method_, normalized_path_, &headers_}, worker_.random());
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
  // The body was never read and the connection closes after the answer; reading what already
  // arrived lets the close be a FIN, not a reset that could destroy the answer in flight.
  char buffer[kReadChunk];
  for (int i = 0; i < 64 && ::recv(fd, buffer, sizeof buffer, 0) > 0; ++i) {
  }
  respondError(503, "route_held",
               "route '" + hold->name() + "' is held for a cutover; retry in a moment",
               "Retry-After: 1\r\n");
}

void ClientConnection::onClosed() {
  endUnsafe();
  if (parked_on_ != nullptr) {
    parked_on_->onUnparked(worker_.now() - parked_since_, false);
    parked_on_ = nullptr;
    worker_.unpark(this);
  }
}

int ClientConnection::onBody(http_parser* parser, const char* at, size_t length) {
  auto* self = static_cast<ClientConnection*>(parser->data);
  const int64_t limit = self->bodyLimit();
  self->body_bytes_ += length;
  if (limit > 0 && self->body_bytes_ > static_cast<uint64_t>(limit)) {
    self->error_status_ = 413;
    return 1;
  }
  if (!self->dispatched_) {
    // Read before the request goes on, up to keepLimit(): a body within that is sent
    // whole (and kept for a retry, a fallback or a shadow copy); past it, the request goes on
    // with what was read and the rest streams after it (none of those then).
    self->body_.append(at, length);
    if (self->body_.size() > self->keepLimit() && !self->head_ready_) {
      self->head_ready_ = true;
      http_parser_pause(parser, 1);
    }
    return 0;
  }
  // Framed here, sent by pushBody() once the parser returns (never from inside it).
  if (self->chunked_in_) {
    char size_line[24];
    const int n = std::snprintf(size_line, sizeof size_line, "%zx\r\n", length);
    self->pending_body_.append(size_line, static_cast<size_t>(n));
    self->pending_body_.append(at, length);
    self->pending_body_ += "\r\n";
  } else {
    self->pending_body_.append(at, length);
  }
  return 0;
}

int ClientConnection::onMessageComplete(http_parser* parser) {
  auto* self = static_cast<ClientConnection*>(parser->data);
  self->message_done_ = true;
  if (self->streamed_) self->body_done_ = true;
  self->keep_alive_ = http_should_keep_alive(parser) != 0;
  if (self->trailers_seen_)
    self->worker_.shared().metrics.recordClientEvent(self->worker_.index(), "trailers_dropped");
  http_parser_pause(parser, 1);
  return 0;
}

void ClientConnection::onEvents(uint32_t events) {
  if (closed) return;
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) hangup = true;
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
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n > 0 && state_ == State::kClosing) continue;  // a body nobody will read: dropped
    if (n > 0) {
      in_.append(buffer, static_cast<size_t>(n));
      // A body may take long to upload; what must not happen is a long silence.
      if (reading_body_) deadline_ = worker_.now() + std::chrono::milliseconds(idleTimeoutMs());
      if (static_cast<size_t>(n) < sizeof buffer && !hangup) return;  // drained (edge-triggered)
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
  if (pending_body_.empty()) return;
  std::string bytes;
  bytes.swap(pending_body_);  // a retry from inside sendMore() rebuilds from body_, not these
  if (upstream != nullptr) upstream->sendMore(bytes);
  if (bytes.capacity() > kStreamWindow) return;
  bytes.clear();
  pending_body_.swap(bytes);  // the buffer is used again
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

void ClientConnection::scanHead(const char* data, size_t length) {
  for (size_t i = 0; i < length && !scan_done_; ++i) {
    const char c = data[i];
    if (!scan_started_) {
      if (c == '\r' || c == '\n') continue;  // empty lines before a request line are allowed
      scan_started_ = true;
    }
    if (scan_after_lf_) {
      if (c == ' ' || c == '\t') {
        fold_seen_ = true;  // reported once the parser reaches the end of the head
        scan_done_ = true;
        return;
      }
      if (c == '\r') continue;
      if (c == '\n') {
        scan_done_ = true;  // the empty line: the head ends here
        return;
      }
      scan_after_lf_ = false;
    }
    if (c == '\n') scan_after_lf_ = true;
  }
}

bool ClientConnection::peerTrusted() const {
  const auto& trusted = runtime_->config->trusted_proxies;
  if (trusted.empty()) return false;
  const auto address = parseIp(peer_);
  if (!address) return false;
  for (const auto& cidr : trusted)
    if (cidr.contains(*address)) return true;
  return false;
}

bool ClientConnection::checkDeadline(Worker::Clock::time_point now) {
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
  if (parked_on_ != nullptr) {
    refuseParked(true);
    return;
  }
  if (state_ == State::kReading && !message_started_) worker_.closeClient(this);
}

// ClientConnection: proxying

void ClientConnection::startProxy() {
  state_ = State::kProxying;
  scan_started_ = scan_after_lf_ = scan_done_ = fold_seen_ = false;  // for the next head
  dispatched_ = true;
  if (!streamed_ || body_done_) {  // else finishBody() ends the message
    message_started_ = false;
    message_done_ = false;
  }
  worker_.shared().active_requests.fetch_add(1, std::memory_order_relaxed);
  fell_back_ = false;
  retried_stale_ = false;
  response_started_ = false;
  chunked_out_ = false;
  close_after_ = !keep_alive_ || worker_.stopping();
  status_ = 0;
  response_bytes_ = 0;
  tried_.clear();

  if (parser_.upgrade) {
    // Upgrades (WebSocket, CONNECT) are not proxied; the parser stopped at this message.
    close_after_ = true;
    if (method_ == "CONNECT") {
      decision_ = Decision{};
      respondError(405, "method_not_allowed", "CONNECT is not supported");
      return;
    }
  }
  // The parser takes any digits for a version ("HTTP/9.9", HTTP/0.9 without one); forwarding
  // those as HTTP/1.1 would answer for a protocol the client did not speak.
  if (parser_.http_major != 1) {
    close_after_ = true;
    decision_ = Decision{};
    respondError(505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are served");
    return;
  }
  size_t hosts = 0;
  std::string host;
  for (const auto& [name, value] : headers_) {
    if (iequals(name, "host")) {
      ++hosts;
      host = value;
    }
  }
  if (hosts > 1 || (hosts == 0 && http_minor_ >= 1)) {
    decision_ = Decision{};
    respondError(400, "bad_request", "a request needs exactly one Host header");
    return;
  }
  if (absolute_form_) {
    if (absolute_host_.empty() || !validHost(absolute_host_)) {
      decision_ = Decision{};
      respondError(400, "bad_request", "the request target's authority is empty or malformed");
      return;
    }
    host = absolute_host_;
  }
  if (!validHost(host)) {
    decision_ = Decision{};
    respondError(400, "bad_request", "the Host header is malformed");
    return;
  }
  if (!target_ok_) {  // routeRequest() could not normalize the target
    respondError(400, "bad_path", target_error_);
    return;
  }
  host_ = host;  // empty (HTTP/1.0 without one): buildRequest() names the upstream instead

  // Headers for the upstream: end-to-end ones as received, then the proxy's own.
  forwarded_headers_ = forwardedHeaders(
      ForwardInput{&headers_, peer_, peerTrusted(), host, std::string_view("http")});
  if (streamed_ && chunked_in_) {
    // Re-chunked by the proxy; codings before `chunked` ("gzip, chunked") pass on as they are.
    addHeader("Transfer-Encoding", te_codings_);
  } else if (streamed_) {
    addHeader("Content-Length", std::to_string(declared_length_));
  } else if (had_body_framing_ || method_ == "POST" || method_ == "PUT" || method_ == "PATCH") {
    addHeader("Content-Length", "0");
  }

  shadow_.reset();
  if (decision_.shadow && decision_.route != nullptr) {
    const double sample = decision_.route->shadow ? decision_.route->shadow->sample : 1.0;
    // 53 random bits → [0, 1).
    const double draw = static_cast<double>(worker_.random() >> 11) * 0x1.0p-53;
    if (draw < sample) {
      shadow_ = std::make_unique<ShadowRequest>();
      shadow_->runtime = runtime_;
      shadow_->route = decision_.route;
      shadow_->method = method_;
      shadow_->target_path = decision_.shadow_path;
      shadow_->query = query_;
      shadow_->has_query = has_query_;
      shadow_->headers = headers_;  // the body (if kept) is added once it was all read
    }
  }

  std::string chosen = decision_.upstream;
  std::string path = decision_.path;
  if (decision_.to_target) {
    const auto* target_upstream = runtime_->upstream(chosen);
    if (target_upstream != nullptr && target_upstream->breaker &&
        !target_upstream->breaker->allow(worker_.now())) {
      // In a canary both sides serve the route, and nothing was sent yet: any request may go
      // to the monolith. Once extracted, only requests allowed to fall back may.
      const bool canary = decision_.route->stage == Stage::kCanary;
      if (decision_.fallback_upstream.empty() && !canary) {
        upstream_name_ = chosen;
        respondError(503, "circuit_open",
                     "upstream '" + chosen + "' is failing; its circuit is open");
        return;
      }
      fell_back_ = true;
      worker_.shared().metrics.recordFallback(worker_.index(), decision_.route->name,
                                              "circuit_open");
      chosen = runtime_->config->default_upstream;
      path = normalized_path_;
    }
  }
  dispatch(chosen, path, true);
}

void ClientConnection::addHeader(std::string_view name, std::string_view value) {
  forwarded_headers_.append(name);
  forwarded_headers_ += ": ";
  forwarded_headers_.append(value);
  forwarded_headers_ += "\r\n";
}

std::string ClientConnection::buildRequest(const std::string& path) const {
  std::string request;
  request.reserve(method_.size() + path.size() + query_.size() + forwarded_headers_.size() +
                  body_.size() + 32);
  request += method_;
  request += ' ';
  request += path;
  if (has_query_) {
    request += '?';
    request += query_;
  }
  request += " HTTP/1.1\r\n";
  request += forwarded_headers_;
  if (host_.empty()) {
    // HTTP/1.1 needs a Host: an HTTP/1.0 client that sent none gets the upstream's address.
    const RuntimeUpstream* to = runtime_->upstream(upstream_name_);
    request += "Host: ";
    request += to != nullptr && !to->endpoints.empty() ? to->endpoints.front()->key : "localhost";
    request += "\r\n";
  }
  request += "\r\n";
  // A streamed body: what was kept of it so far (the rest follows through sendMore()).
  if (streamed_ && chunked_in_) {
    if (!body_.empty()) {
      char size_line[24];
      const int n = std::snprintf(size_line, sizeof size_line, "%zx\r\n", body_.size());
      request.append(size_line, static_cast<size_t>(n));
      request += body_;
      request += "\r\n";
    }
    if (body_done_) request += "0\r\n\r\n";
  } else {
    request += body_;
  }
  return request;
}

bool ClientConnection::sentToTarget() const {
  return decision_.to_target && !fell_back_ && upstream_name_ == decision_.upstream;
}

void ClientConnection::dispatch(const std::string& upstream_name, const std::string& path,
                                bool reset_tries) {
  const RuntimeUpstream* target = runtime_->upstream(upstream_name);
  if (target == nullptr || target->endpoints.empty()) {
    respondError(502, "no_upstream", "upstream '" + upstream_name + "' is not defined");
    return;
  }
  if (reset_tries) tried_.clear();
  if (upstream_name != upstream_name_ || path != upstream_path_ || request_bytes_.empty() ||
      streamed_) {
    upstream_name_ = upstream_name;
    upstream_path_ = path;
    request_bytes_ = buildRequest(path);
  }
  // Round robin, skipping ejected endpoints and ones this request already failed on.
  const auto now_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(worker_.now().time_since_epoch())
          .count();
  const size_t count = target->endpoints.size();
  const uint64_t start = target->round_robin->fetch_add(1, std::memory_order_relaxed);
  std::shared_ptr<EndpointState> chosen;
  std::shared_ptr<EndpointState> ejected_choice;
  for (size_t i = 0; i < count; ++i) {
    const auto& endpoint = target->endpoints[(start + i) % count];
    if (std::find(tried_.begin(), tried_.end(), endpoint.get()) != tried_.end()) continue;
    if (endpoint->ejected_until_ns.load(std::memory_order_relaxed) > now_ns) {
      if (!ejected_choice) ejected_choice = endpoint;
      continue;
    }
    chosen = endpoint;
    break;
  }
  if (!chosen) chosen = ejected_choice;  // all ejected: try one anyway rather than fail blind
  if (!chosen) {
    onUpstreamFailure(nullptr, "connect");
    return;
  }
  tried_.push_back(chosen.get());
  bool reused = false;
  UpstreamConnection* connection =
      worker_.acquire(chosen, target->config->max_idle_connections, reused);
  if (connection == nullptr) {
    onUpstreamFailure(nullptr, "connect");
    return;
  }
  upstream = connection;
  connection->begin(this, request_bytes_, std::chrono::milliseconds(target->config->timeout_ms),
                    std::chrono::milliseconds(target->config->connect_timeout_ms),
                    method_ == "HEAD", !streamed_ || body_done_);
}

ClientConnection::HeadVerdict ClientConnection::onResponseHead(UpstreamConnection& from) {
  const RuntimeUpstream* current = runtime_->upstream(upstream_name_);
  const bool to_target = sentToTarget();
  if (to_target && current != nullptr && current->breaker) {
    if (from.status >= 500) {
      current->breaker->onFailure(worker_.now());
    } else {
      current->breaker->onSuccess();
    }
  }
  if (from.status >= 500)
    worker_.shared().metrics.recordUpstreamError(worker_.index(), upstream_name_, "5xx");
  if (to_target && from.status >= 500 && !decision_.fallback_upstream.empty()) {
    if (replayable()) return HeadVerdict::kAbandon;
    worker_.shared().metrics.recordClientEvent(worker_.index(), "body_not_kept");
  }

  status_ = from.status;
  response_started_ = true;
  if (shadow_) {
    shadow_->monolith_upstream = upstream_name_;
    shadow_->monolith_path = upstream_path_;
    shadow_->monolith.status = from.status;
    shadow_->monolith.headers = from.headers;
  }
  const bool no_body = method_ == "HEAD" || from.status == 204 || from.status == 304;
  const bool delimited_by_close = !from.chunked && !from.has_content_length && !no_body;
  chunked_out_ = false;
  if ((from.chunked || delimited_by_close) && !no_body) {
    if (http_minor_ >= 1) {
      chunked_out_ = true;
    } else {
      close_after_ = true;  // an HTTP/1.0 client reads to the close
    }
  }
  if (worker_.stopping()) close_after_ = true;

  std::string head;
  head.reserve(512);
  head += "HTTP/1.1 ";
  head += std::to_string(from.status);
  head += ' ';
  head += from.reason.empty() ? reasonPhrase(from.status) : from.reason;
  head += "\r\n";
  for (const auto& [name, value] : from.headers) {
    if (iequals(name, "content-length")) {
      if (from.chunked || chunked_out_) continue;
    } else if (isHopByHop(name) || namedByConnection(from.headers, name)) {
      continue;
    }
    if (iequals(name, "x-strangler-route") || iequals(name, "x-strangler-upstream")) continue;
    head += name;
    head += ": ";
    head += value;
    head += "\r\n";
  }
  if (chunked_out_) head += "Transfer-Encoding: chunked\r\n";
  if (runtime_->config->debug_headers) {
    head += "X-Strangler-Route: ";
    head += decision_.route != nullptr ? decision_.route->name : "-";
    head += "\r\nX-Strangler-Upstream: ";
    head += upstream_name_;
    head += "\r\n";
  }
  if (close_after_) {
    head += "Connection: close\r\n";
  } else if (http_minor_ == 0) {
    head += "Connection: keep-alive\r\n";
  }
  head += "\r\n";
  queue(head);  // sent with the first body bytes, after this read is parsed (relayed())
  return no_body ? HeadVerdict::kRelayNoBody : HeadVerdict::kRelay;
}

void ClientConnection::onResponseBody(const char* data, size_t length) {
  if (closed || length == 0) return;
  response_bytes_ += length;
  if (shadow_) {
    if (shadow_->monolith.body.size() + length > kShadowCaptureBytes) {
      worker_.shared().shadow->tooLarge(shadow_->route->name);
      shadow_.reset();
    } else {
      shadow_->monolith.body.append(data, length);
    }
  }
  if (chunked_out_) {
    char size_line[24];
    const int n = std::snprintf(size_line, sizeof size_line, "%zx\r\n", length);
    queue(std::string_view(size_line, static_cast<size_t>(n)));
    queue(std::string_view(data, length));
    queue("\r\n");
  } else {
    queue(std::string_view(data, length));
  }
}

void ClientConnection::relayed() {
  if (closed || out_pos_ >= out_.size()) return;
  flush();
  if (!closed && upstream != nullptr && out_.size() - out_pos_ > kMaxPendingOutput) {
    upstream->pauseReading();
  }
}

void ClientConnection::onResponseComplete(UpstreamConnection&) {
  upstream = nullptr;
  if (closed) return;
  if (chunked_out_) queue("0\r\n\r\n");
  if (shadow_ && streamed_) {
    if (body_kept_ && body_done_) {
      shadow_->body = body_;
    } else {
      worker_.shared().shadow->tooLarge(shadow_->route->name);
      shadow_.reset();
    }
  }
  // The client has its answer: only now is the copy offered, so the shadow side can never
  // delay or fail it.
  if (shadow_) worker_.shared().shadow->offer(std::move(*shadow_));
  shadow_.reset();
  finishExchange(status_);
}

void ClientConnection::onAbandoned(UpstreamConnection&) {
  upstream = nullptr;
  if (closed) return;
  fell_back_ = true;
  worker_.shared().metrics.recordFallback(
      worker_.index(), decision_.route != nullptr ? decision_.route->name : "-", "5xx");
  dispatch(decision_.fallback_upstream, decision_.fallback_path, true);
}

void ClientConnection::onUpstreamFailure(UpstreamConnection* from, const char* kind) {
  upstream = nullptr;
  if (closed) return;
  const std::string_view what(kind);
  worker_.shared().metrics.recordUpstreamError(worker_.index(), upstream_name_, what);
  if (response_started_) {
    // Part of the response is already with the client: the only honest signal left is to
    // cut the connection.
    status_ = 502;
    close_after_ = true;
    worker_.closeClient(this);
    return;
  }
  // A body too large to keep went (partly) to this upstream: it cannot be sent again.
  const bool replay = replayable();
  const bool connect_failed = what == "connect" || what == "connect_timeout";
  if (connect_failed && from != nullptr) {
    const RuntimeUpstream* current = runtime_->upstream(upstream_name_);
    const int eject_ms = current != nullptr ? current->config->eject_ms : 0;
    if (eject_ms > 0) {
      const auto until = worker_.now() + std::chrono::milliseconds(eject_ms);
      from->endpoint->ejected_until_ns.store(
          std::chrono::duration_cast<std::chrono::nanoseconds>(until.time_since_epoch()).count(),
          std::memory_order_relaxed);
    }
  }
  // Nothing was sent, or a kept-alive connection was closed under us before answering:
  // another endpoint (or a fresh connection) can take the request safely.
  const RuntimeUpstream* current = runtime_->upstream(upstream_name_);
  if (replay && connect_failed && current != nullptr && tried_.size() < current->endpoints.size()) {
    dispatch(upstream_name_, upstream_path_, false);
    return;
  }
  const bool stale = from != nullptr && from->bytes_received == 0 &&
                     (what == "closed" || what == "reset" || what == "send");
  // A failed write means the upstream never got the whole request, so even a non-idempotent
  // one can be sent again.
  if (replay && stale && !retried_stale_ && (isIdempotent(method_) || what == "send")) {
    retried_stale_ = true;
    tried_.clear();
    dispatch(upstream_name_, upstream_path_, false);
    return;
  }
  if (sentToTarget() && current != nullptr && current->breaker)
    current->breaker->onFailure(worker_.now());
  if (sentToTarget() && !decision_.fallback_upstream.empty() && !replay)
    worker_.shared().metrics.recordClientEvent(worker_.index(), "body_not_kept");
  if (sentToTarget() && !decision_.fallback_upstream.empty() && replay) {
    fell_back_ = true;
    worker_.shared().metrics.recordFallback(worker_.index(), decision_.route->name, kind);
    dispatch(decision_.fallback_upstream, decision_.fallback_path, true);
    return;
  }
  const bool timed_out = what == "timeout" || what == "connect_timeout";
  respondError(timed_out ? 504 : 502, timed_out ? "upstream_timeout" : "upstream_unavailable",
               "upstream '" + upstream_name_ + "' " +
                   (timed_out ? std::string("did not answer in time")
                              : "failed (" + std::string(kind) + ")"));
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
    shared.metrics.recordRequest(worker_.index(), route, upstream_name, status, seconds);
  if (shared.access_log) {
    nlohmann::json line = {
        {"time_ms", std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::system_clock::now().time_since_epoch())
                        .count()},
        {"client", peer_},
        {"method", method_},
        {"target", url_},
        {"status", status},
        {"route", route.empty() ? nlohmann::json(nullptr) : nlohmann::json(route)},
        {"upstream", upstream_name},
        {"fallback", fell_back_},
        {"error", error_code_.empty() ? nlohmann::json(nullptr) : nlohmann::json(error_code_)},
        {"bytes", response_bytes_},
        {"duration_ms", seconds * 1000.0}};
    if (!error_message_.empty()) line["reason"] = error_message_;
    shared.access_log->write(line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
  }
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
  request_bytes_.clear();
  body_.clear();
  if (close_after_ || worker_.stopping() || (peer_closed_ && in_pos_ >= in_.size())) {
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

void ClientConnection::queue(std::string_view bytes) {
  out_.append(bytes);
}

void ClientConnection::flush() {
  while (out_pos_ < out_.size()) {
    const ssize_t n = ::send(fd, out_.data() + out_pos_, out_.size() - out_pos_, MSG_NOSIGNAL);
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
