#include "upstream_connection.h"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>

#include "client_connection.h"
#include "http_util.h"
#include "upstream_h2.h"

namespace strangler::proxy {
namespace {

constexpr size_t kMaxResponseHeaderBytes = 64 * 1024;
constexpr auto kUpstreamIdleTimeout = std::chrono::seconds(4);

}  // namespace

UpstreamConnection::UpstreamConnection(Worker& worker, std::shared_ptr<EndpointState> to)
    : worker_(worker), endpoint(std::move(to)) {}

UpstreamConnection::~UpstreamConnection() = default;

void UpstreamConnection::startH2(H2Carrier& carrier) {
  carrier_ = &carrier;
}

size_t UpstreamConnection::pendingOutput() const {
  if (call_) return call_->pendingBody() + (out_.size() - out_pos_);
  return out_.size() - out_pos_;
}

void UpstreamConnection::detachCarrier() {
  if (carrier_ != nullptr && call_) carrier_->detach(*call_);
  carrier_ = nullptr;
}

void UpstreamConnection::onCarrierFailed() {
  carrier_ = nullptr;  // closed already, deleted soon: never touched again
  if (!closed) fail(call_ && call_->failure() != nullptr ? call_->failure() : "reset");
}

void UpstreamConnection::onH2Answer() {
  if (closed || !call_ || read_paused_) return;
  if (call_->takeTrailersDropped())
    worker_.shared().metrics.recordClientEvent(worker_.index(), "trailers_dropped");
  if (call_->hasAnswer()) {
    const std::string answer = call_->takeAnswer();
    bytes_received += answer.size();
    feed(answer.data(), answer.size());
    if (closed || state != State::kBusy) return;
  }
  if (call_->failure() != nullptr) fail(call_->failure());
}

const http_parser_settings& UpstreamConnection::settings() {
  static const http_parser_settings kSettings = [] {
    http_parser_settings s{};
    s.on_message_begin = &UpstreamConnection::onMessageBegin;
    s.on_status = &UpstreamConnection::onStatus;
    s.on_header_field = &UpstreamConnection::onHeaderField;
    s.on_header_value = &UpstreamConnection::onHeaderValue;
    s.on_headers_complete = &UpstreamConnection::onHeadersComplete;
    s.on_body = &UpstreamConnection::onBody;
    s.on_message_complete = &UpstreamConnection::onMessageComplete;
    return s;
  }();
  return kSettings;
}

void UpstreamConnection::begin(ClientConnection* owner, std::string request,
                               std::chrono::milliseconds exchange_timeout,
                               std::chrono::milliseconds connect_timeout, bool head_request,
                               bool request_complete, bool upgrade) {
  client = owner;
  request_done_ = request_complete;
  // HTTP/2 has no Upgrade: the upstream's ordinary answer goes back (and the client's
  // connection closes after it, as after any refused upgrade).
  upgrade_request_ = upgrade && carrier_ == nullptr;
  if (carrier_ != nullptr) {
    // (A new exchange: acquireStream() made it for this request.)
    call_ = std::make_unique<H2Call>(*carrier_, *this, head_request);
    carrier_->attach(*call_);
  }
  http_parser_init(&parser_, HTTP_RESPONSE);
  parser_.data = this;
  out_ = std::move(request);
  out_pos_ = 0;
  read_paused_ = false;
  head_request_ = head_request;
  interim_ = false;
  done_ = false;
  abandoned_ = false;
  bad_head_ = false;
  head_done = false;
  bytes_received = 0;
  header_bytes_ = 0;
  status = 0;
  reason.clear();
  headers.clear();
  trailers.clear();
  timeout = exchange_timeout;
  if (state == State::kConnecting) {
    deadline = worker_.now() + connect_timeout;
    return;  // flushed once connected
  }
  state = State::kBusy;
  deadline = worker_.now() + timeout;
  flush();
}

void UpstreamConnection::startTls(const TlsClientContext& context, const std::string& name,
                                  std::string upstream) {
  tls_ = std::make_unique<TlsStream>(context, fd, name);
  tls_name_ = name;
  upstream_name_ = std::move(upstream);
}

bool UpstreamConnection::secured() {
  if (!tls_ || tls_->established()) return true;
  switch (tls_->handshake()) {
    case TlsStream::Handshake::kDone:
      return true;
    case TlsStream::Handshake::kPending:
      return false;
    case TlsStream::Handshake::kFailed:
      break;
  }
  // Never a silent downgrade: the request fails (502) and says why, every time.
  std::fprintf(stderr, "strangler-proxy: TLS to upstream '%s' at %s (name %s) failed: %s\n",
               upstream_name_.c_str(), endpoint->key.c_str(), tls_name_.c_str(),
               tls_->error().c_str());
  fail("tls");
  return false;
}

ssize_t UpstreamConnection::receive(char* buffer, size_t size) {
  if (tls_) return tls_->read(buffer, size);
  return ::recv(fd, buffer, size, 0);
}

ssize_t UpstreamConnection::transmit(const char* data, size_t size) {
  if (tls_) return tls_->write(data, size);
  return ::send(fd, data, size, MSG_NOSIGNAL);
}

void UpstreamConnection::shutdownWrite() {
  if (tls_) tls_->shutdown();
  ::shutdown(fd, SHUT_WR);
}

void UpstreamConnection::onEvents(uint32_t events) {
  if (closed) return;
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) hangup = true;
  if (tunnel) {  // the client moves the bytes both ways
    if (client == nullptr) {
      worker_.closeUpstream(this);
    } else {
      client->pumpTunnel();
    }
    return;
  }
  if (state == State::kConnecting) {
    if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return;
    int error = 0;
    socklen_t length = sizeof error;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
    if (error != 0) {
      fail("connect");
      return;
    }
    state = State::kBusy;
    deadline = worker_.now() + timeout;
    flush();
    if (closed) return;
  }
  if (state == State::kIdle) {
    // An idle pooled connection that becomes readable was closed (or misbehaves): drop it.
    // Over TLS it may only be a record for TLS itself (a session ticket): read, and keep it
    // when no data came.
    if (tls_ && (events & (EPOLLRDHUP | EPOLLERR | EPOLLHUP)) == 0 && (events & EPOLLIN)) {
      char byte;
      if (tls_->read(&byte, 1) < 0 && errno == EAGAIN) return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) worker_.closeUpstream(this);
    return;
  }
  if (events & EPOLLOUT) flush();
  if (closed) return;
  // A streamed request body waits while the socket is full: room again lets the client go on.
  if (!request_done_ && client != nullptr && pendingOutput() < kStreamWindow / 2)
    client->onUpstreamWritable();
  if (closed) return;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) readAll();
}

void UpstreamConnection::sendMore(std::string_view bytes) {
  if (closed || bytes.empty()) return;
  if (out_pos_ > 0 && out_pos_ >= out_.size() / 2) {  // keep the buffer from growing
    out_.erase(0, out_pos_);
    out_pos_ = 0;
  }
  out_.append(bytes);
  if (state == State::kBusy) flush();  // connecting: flushed once connected
}

void UpstreamConnection::flush() {
  if (!secured()) return;
  if (call_) {
    // HTTP/2: the bytes go to the stream at once, and out as the upstream's window allows.
    if (out_pos_ < out_.size()) {
      if (!call_->request(std::string_view(out_).substr(out_pos_))) {
        fail("send");  // never expected: the request path wrote these bytes
        return;
      }
      out_.clear();
      out_pos_ = 0;
    }
    if (carrier_ != nullptr) worker_.flushSoon(carrier_);  // with the other streams' frames
    return;
  }
  while (out_pos_ < out_.size()) {
    const ssize_t n =
        tls_ ? tls_->write(out_.data() + out_pos_, out_.size() - out_pos_)
             : ::send(fd, out_.data() + out_pos_, out_.size() - out_pos_, MSG_NOSIGNAL);
    if (n > 0) {
      out_pos_ += static_cast<size_t>(n);
      // A long upload is progress, not an upstream that does not answer.
      if (!request_done_) deadline = worker_.now() + timeout;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    fail("send");  // the request was not (fully) written
    return;
  }
  if (!out_.empty()) {
    out_.clear();
    out_pos_ = 0;
  }
}

void UpstreamConnection::resumeReading() {
  if (!read_paused_ || closed) return;
  read_paused_ = false;
  if (call_) {
    onH2Answer();  // what arrived meanwhile (its window was not given back)
    return;
  }
  readAll();  // edge-triggered: data may be waiting without a new event
}

void UpstreamConnection::onH2Writable() {
  // A streamed request body waits while the upstream's window is closed: room again lets the
  // client go on.
  if (!closed && !request_done_ && client != nullptr && pendingOutput() < kStreamWindow / 2)
    client->onUpstreamWritable();
}

void UpstreamConnection::readAll() {
  if (tls_ && !tls_->established()) {
    if (!secured()) return;
    flush();  // the request waited for the handshake
    if (closed) return;
  }
  char buffer[kReadChunk];
  // Not once it became a tunnel: what follows the 101 is the tunnel's (pumpTunnel() reads it).
  while (!closed && !read_paused_ && state == State::kBusy && !tunnel) {
    const ssize_t n = receive(buffer, sizeof buffer);
    if (n > 0) {
      bytes_received += static_cast<size_t>(n);
      feed(buffer, static_cast<size_t>(n));
      // A short read drained the socket; with edge triggering, more data brings a new event
      // (unless the peer's FIN is already known: then read on to see the end).
      // (TLS hands out one record at a time: read on until EAGAIN.)
      if (!tls_ && static_cast<size_t>(n) < sizeof buffer && !hangup) return;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n == 0 && head_done) {
      // End of a close-delimited body (or a premature close, which the parser reports).
      feed(nullptr, 0);
      if (!closed && state == State::kBusy) fail("reset");
      return;
    }
    fail(n == 0 ? "closed" : "reset");
    return;
  }
}

void UpstreamConnection::feed(const char* data, size_t length) {
  deadline = worker_.now() + timeout;
  const size_t parsed = http_parser_execute(&parser_, &settings(), data, length);
  const auto error = HTTP_PARSER_ERRNO(&parser_);
  if (closed) return;  // the client went away while the response was being relayed
  if (!done_ && !abandoned_ && client != nullptr) {
    client->relayed();
    if (closed) return;
  }
  if (abandoned_) {
    ClientConnection* owner = client;
    client = nullptr;
    worker_.closeUpstream(this);
    if (owner != nullptr) owner->onAbandoned(*this);
    return;
  }
  if (done_ && tunnel) {
    // 101: what followed the head is the protocol the two ends switched to.
    if (client == nullptr) {
      worker_.closeUpstream(this);
      return;
    }
    client->onSwitched(std::string_view(data + parsed, length - parsed));
    return;
  }
  if (done_) {
    ClientConnection* owner = client;
    client = nullptr;
    // Bytes after the response, or a response that ends the connection: do not reuse.
    const bool reusable = error == HPE_PAUSED && parsed == length && request_done_ &&
                          http_should_keep_alive(&parser_) && !worker_.stopping() &&
                          call_ == nullptr;  // an HTTP/2 exchange is one stream, once
    if (reusable) {
      http_parser_pause(&parser_, 0);
      worker_.release(this);
    } else {
      worker_.closeUpstream(this);
    }
    if (owner != nullptr) owner->onResponseComplete(*this);
    return;
  }
  if (error != HPE_OK && error != HPE_PAUSED) {
    fail(bad_head_ ? "bad_header" : "protocol");
    return;
  }
  if (error == HPE_PAUSED) http_parser_pause(&parser_, 0);
}

void UpstreamConnection::fail(const char* kind) {
  if (closed) return;
  ClientConnection* owner = client;
  client = nullptr;
  worker_.closeUpstream(this);
  if (owner != nullptr) owner->onUpstreamFailure(this, kind);
}

bool UpstreamConnection::checkDeadline(Worker::Clock::time_point now) {
  if (closed || tunnel) return false;  // a tunnel's idle timeout is its client's
  if (state == State::kIdle) {
    if (now - idle_since > kUpstreamIdleTimeout) worker_.closeUpstream(this);
    return false;
  }
  if (now < deadline) return false;
  fail(state == State::kConnecting ? "connect_timeout" : "timeout");
  return true;
}

int UpstreamConnection::onMessageBegin(http_parser* parser) {
  auto* self = static_cast<UpstreamConnection*>(parser->data);
  self->headers.clear();
  self->reason.clear();
  self->header_value_last_ = false;
  self->trailer_value_last_ = false;
  self->header_bytes_ = 0;
  self->trailers.clear();
  return 0;
}

int UpstreamConnection::onStatus(http_parser* parser, const char* at, size_t length) {
  static_cast<UpstreamConnection*>(parser->data)->reason.append(at, length);
  return 0;
}

int UpstreamConnection::onHeaderField(http_parser* parser, const char* at, size_t length) {
  auto* self = static_cast<UpstreamConnection*>(parser->data);
  if (self->head_done) {  // after a chunked body: its trailers
    if (self->trailers.empty() || self->trailer_value_last_) self->trailers.emplace_back();
    self->trailer_value_last_ = false;
    self->trailers.back().first.append(at, length);
    self->header_bytes_ += length;
    return self->header_bytes_ > kMaxResponseHeaderBytes ? 1 : 0;
  }
  if (self->headers.empty() || self->header_value_last_) self->headers.emplace_back();
  self->header_value_last_ = false;
  self->headers.back().first.append(at, length);
  self->header_bytes_ += length;
  return self->header_bytes_ > kMaxResponseHeaderBytes ? 1 : 0;
}

int UpstreamConnection::onHeaderValue(http_parser* parser, const char* at, size_t length) {
  auto* self = static_cast<UpstreamConnection*>(parser->data);
  if (self->head_done) {
    if (self->trailers.empty()) return 1;
    self->trailer_value_last_ = true;
    self->trailers.back().second.append(at, length);
    self->header_bytes_ += length;
    return self->header_bytes_ > kMaxResponseHeaderBytes ? 1 : 0;
  }
  if (self->headers.empty()) return 1;
  self->header_value_last_ = true;
  self->headers.back().second.append(at, length);
  self->header_bytes_ += length;
  return self->header_bytes_ > kMaxResponseHeaderBytes ? 1 : 0;
}

int UpstreamConnection::onHeadersComplete(http_parser* parser) {
  auto* self = static_cast<UpstreamConnection*>(parser->data);
  self->status = static_cast<int>(parser->status_code);
  // A field the client could read differently from us (a name with a space, a value with a
  // control character) is not relayed: the answer becomes a 502.
  for (const auto& [name, value] : self->headers) {
    if (!isToken(name) || !isFieldValue(value)) {
      self->bad_head_ = true;
      return -1;  // not 1: that would mean "no body", not "error"
    }
  }
  if (self->status == 101 && self->upgrade_request_) {
    // The switch the client asked for. Without "Connection: upgrade" and an Upgrade that
    // names a protocol it is not one: a 502 rather than bytes of an unknown protocol.
    if (!parser->upgrade || upgradeProtocols(self->headers).empty()) {
      self->bad_head_ = true;
      return -1;
    }
    self->head_done = true;
    self->tunnel = true;
    if (self->client != nullptr) self->client->onResponseHead(*self);
    return 1;  // no body: the parser stops after the head, the rest is the tunnel's
  }
  if (self->status < 200) {
    // 1xx: dropped, the final response follows. An interim response has no body (RFC 9110
    // §15.2) whatever its fields say: http_parser would read one to the close when it has no
    // length, and those bytes must not reach the client as if they were an answer.
    self->interim_ = true;
    return 1;
  }
  self->head_done = true;
  self->chunked = (parser->flags & F_CHUNKED) != 0;
  self->has_content_length = (parser->flags & F_CONTENTLENGTH) != 0;
  if (self->client == nullptr) return 0;
  switch (self->client->onResponseHead(*self)) {
    case ClientConnection::HeadVerdict::kRelay:
      return self->head_request_ ? 1 : 0;
    case ClientConnection::HeadVerdict::kRelayNoBody:
      return 1;
    case ClientConnection::HeadVerdict::kAbandon:
      self->abandoned_ = true;
      http_parser_pause(parser, 1);
      return 0;
  }
  return 0;
}

int UpstreamConnection::onBody(http_parser* parser, const char* at, size_t length) {
  auto* self = static_cast<UpstreamConnection*>(parser->data);
  if (self->client != nullptr) self->client->onResponseBody(at, length);
  return 0;
}

int UpstreamConnection::onMessageComplete(http_parser* parser) {
  auto* self = static_cast<UpstreamConnection*>(parser->data);
  if (self->interim_) {
    self->interim_ = false;
    return 0;
  }
  self->done_ = true;
  http_parser_pause(parser, 1);
  return 0;
}

}  // namespace strangler::proxy
