#include "upstream_h2.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>

#include "h2_fields.h"
#include "upstream_connection.h"

namespace strangler::proxy {
namespace {

constexpr auto kIdleTimeout = std::chrono::seconds(4);  // as idle HTTP/1.1 upstream connections
constexpr size_t kWireBudget = 64 * 1024;               // frames taken from nghttp2 at a time

}  // namespace

// ---------------------------------------------------------------------------------------------
// H2Call: one exchange as one stream.

const http_parser_settings& H2Call::requestSettings() {
  static const http_parser_settings kSettings = [] {
    http_parser_settings s{};
    s.on_url = &H2Call::onUrl;
    s.on_header_field = &H2Call::onHeaderField;
    s.on_header_value = &H2Call::onHeaderValue;
    s.on_headers_complete = &H2Call::onHeadersComplete;
    s.on_body = &H2Call::onBody;
    s.on_message_complete = &H2Call::onMessageComplete;
    return s;
  }();
  return kSettings;
}

H2Call::H2Call(H2Carrier& carrier, UpstreamConnection& exchange, bool head_request)
    : carrier_(carrier), exchange_(exchange), head_request_(head_request) {
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
}

H2Call::~H2Call() = default;  // detached by its exchange before (the carrier may be gone)

bool H2Call::request(std::string_view bytes) {
  const size_t parsed =
      http_parser_execute(&parser_, &requestSettings(), bytes.data(), bytes.size());
  const auto error = HTTP_PARSER_ERRNO(&parser_);
  // An upgrade request stops the parser after its head: HTTP/2 carries no Upgrade (the client
  // gets the upstream's ordinary answer).
  if (error != HPE_OK || (parsed != bytes.size() && !parser_.upgrade)) return false;
  return !submit_failed_;
}

std::string H2Call::takeAnswer() {
  std::string out;
  out.swap(answer_);
  if (unconsumed_ > 0 && stream_id_ > 0) {
    carrier_.consume(stream_id_, unconsumed_);  // the sender may send as much again
    unconsumed_ = 0;
  }
  return out;
}

int H2Call::onUrl(http_parser* parser, const char* at, size_t length) {
  static_cast<H2Call*>(parser->data)->url_.append(at, length);
  return 0;
}

int H2Call::onHeaderField(http_parser* parser, const char* at, size_t length) {
  auto* self = static_cast<H2Call*>(parser->data);
  if (self->fields_.empty() || self->value_last_) self->fields_.emplace_back();
  self->value_last_ = false;
  self->fields_.back().first.append(at, length);
  return 0;
}

int H2Call::onHeaderValue(http_parser* parser, const char* at, size_t length) {
  auto* self = static_cast<H2Call*>(parser->data);
  if (self->fields_.empty()) return 1;
  self->value_last_ = true;
  self->fields_.back().second.append(at, length);
  return 0;
}

int H2Call::onHeadersComplete(http_parser* parser) {
  auto* self = static_cast<H2Call*>(parser->data);
  self->has_body_ = (parser->flags & F_CHUNKED) != 0 ||
                    (parser->content_length > 0 && parser->content_length != ULLONG_MAX);
  self->submit();
  return 0;
}

int H2Call::onBody(http_parser* parser, const char* at, size_t length) {
  auto* self = static_cast<H2Call*>(parser->data);
  if (self->body_pos_ > 0 && self->body_pos_ >= self->body_.size() / 2) {
    self->body_.erase(0, self->body_pos_);
    self->body_pos_ = 0;
  }
  self->body_.append(at, length);
  if (self->stream_id_ > 0) self->carrier_.resume(self->stream_id_);
  return 0;
}

int H2Call::onMessageComplete(http_parser* parser) {
  auto* self = static_cast<H2Call*>(parser->data);
  self->request_ended_ = true;
  if (self->stream_id_ > 0 && self->has_body_) self->carrier_.resume(self->stream_id_);
  return 0;
}

void H2Call::submit() {
  H2Fields fields;
  fields.reserve(fields_.size() + 5);
  fields.emplace_back(":method", http_method_str(static_cast<http_method>(parser_.method)));
  fields.emplace_back(":scheme", carrier_.secure() ? "https" : "http");
  std::string authority;
  for (const auto& [name, value] : fields_) {
    if (iequals(name, "host")) authority = value;
  }
  fields.emplace_back(":authority", authority);
  fields.emplace_back(":path", url_.empty() ? "/" : url_);
  appendH2Fields(fields_, fields_, fields);
  // The only TE HTTP/2 allows, and the one gRPC servers look for.
  if (acceptsTrailers(fields_)) fields.emplace_back("te", "trailers");
  stream_id_ = carrier_.submit(*this, nghttp2Fields(fields), has_body_);
  if (stream_id_ <= 0) submit_failed_ = true;
}

ssize_t H2Call::readBody(uint8_t* buffer, size_t length, uint32_t* flags) {
  const size_t n = std::min(body_.size() - body_pos_, length);
  std::memcpy(buffer, body_.data() + body_pos_, n);
  body_pos_ += n;
  if (body_pos_ == body_.size()) {
    body_.clear();
    body_pos_ = 0;
  }
  if (n == 0 && !request_ended_) return NGHTTP2_ERR_DEFERRED;
  if (request_ended_ && body_.empty()) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

void H2Call::onHeader(std::string_view name, std::string_view value) {
  if (name == ":status") {
    int status = 0;
    for (const char c : value)
      status = status * 10 + (c - '0');  // nghttp2 checked: three digits
    status_ = status;
  } else if (name.empty() || name.front() != ':') {
    received_.emplace_back(std::string(name), std::string(value));
  }
}

void H2Call::onHeadersFrame(bool end_stream) {
  if (!head_sent_) {
    if (status_ < 200 && !end_stream) {  // 1xx: the final answer follows
      received_.clear();
      return;
    }
    answerHead(end_stream);
  } else if (end_stream) {
    answerEnd();  // received_ holds the trailers
  }
}

void H2Call::onData(std::string_view bytes) {
  unconsumed_ += bytes.size();
  if (!head_sent_ || answered_) return;
  if (chunked_) {
    appendChunk(answer_, bytes);
  } else {
    answer_.append(bytes);
  }
}

void H2Call::onDataEnd() {
  if (!head_sent_) return;
  received_.clear();
  answerEnd();
}

void H2Call::onClosed(uint32_t error_code) {
  closed_ = true;
  if (answered_ || failure_ != nullptr) return;
  // Refused (REFUSED_STREAM, or past a GOAWAY's last stream): never processed, safe to send
  // again. Anything else: reset.
  failure_ = error_code == NGHTTP2_REFUSED_STREAM ? "closed" : "reset";
}

void H2Call::fail(const char* kind) {
  if (failure_ == nullptr && !answered_) failure_ = kind;
}

void H2Call::answerHead(bool end_stream) {
  head_sent_ = true;
  answer_ += "HTTP/1.1 ";
  answer_ += std::to_string(status_);
  answer_ += ' ';
  answer_ += reasonPhrase(status_);
  answer_ += "\r\n";
  // Trailers announced (a Trailer field, or a gRPC answer: its status comes last) are carried
  // after a chunked body's last chunk, so such an answer goes chunked even with a length.
  bool announced = false;
  for (const auto& [name, value] : received_) {
    announced = announced || name == "trailer" ||
                (name == "content-type" && startsWithIgnoreCase(value, "application/grpc"));
  }
  const bool no_body = head_request_ || status_ == 204 || status_ == 304;
  bool length = false;
  for (const auto& [name, value] : received_) {
    if (name == "content-length") {
      if (announced && !end_stream && !no_body) continue;
      length = true;
    }
    appendHeader(answer_, name, value);
  }
  if (end_stream) {
    if (!length && !no_body) appendHeader(answer_, "Content-Length", "0");
    answered_ = true;
  } else if (!length && !no_body) {
    // The body's end is END_STREAM, which HTTP/1.1 says with the last chunk — after which
    // the trailers go.
    chunked_ = true;
    appendHeader(answer_, "Transfer-Encoding", "chunked");
  }
  answer_ += "\r\n";
  received_.clear();
}

void H2Call::answerEnd() {
  if (answered_) return;
  answered_ = true;
  if (!chunked_) {
    trailers_dropped_ = !received_.empty();
    return;
  }
  answer_ += "0\r\n";
  for (const auto& [name, value] : received_) {
    if (isToken(name) && isFieldValue(value)) appendHeader(answer_, name, value);
  }
  answer_ += "\r\n";
}

// ---------------------------------------------------------------------------------------------
// H2Carrier: the connection.

H2Carrier::H2Carrier(Worker& worker, std::shared_ptr<EndpointState> endpoint, std::string pool_key,
                     std::string upstream_name)
    : worker_(worker),
      endpoint_(std::move(endpoint)),
      pool_key_(std::move(pool_key)),
      upstream_name_(std::move(upstream_name)) {
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, &H2Carrier::onHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, &H2Carrier::onFrameReceived);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, &H2Carrier::onData);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, &H2Carrier::onStreamClosed);
  nghttp2_option* options = nullptr;
  nghttp2_option_new(&options);
  // The window is given back as each exchange takes its answer (H2Call::takeAnswer).
  nghttp2_option_set_no_auto_window_update(options, 1);
  nghttp2_session_client_new2(&session_, callbacks, this, options);
  nghttp2_option_del(options);
  nghttp2_session_callbacks_del(callbacks);
  const nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                             {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow}};
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings,
                          sizeof settings / sizeof settings[0]);
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  idle_since_ = worker_.now();
}

H2Carrier::~H2Carrier() {
  nghttp2_session_del(session_);
}

void H2Carrier::startTls(const TlsClientContext& context, const std::string& name) {
  tls_ = std::make_unique<TlsStream>(context, fd, name, true);
  tls_name_ = name;
}

bool H2Carrier::connect(std::chrono::milliseconds connect_timeout) {
  const int rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&endpoint_->sockaddr),
                           endpoint_->sockaddr_len);
  if (rc != 0 && errno != EINPROGRESS) return false;
  connect_deadline_ = worker_.now() + connect_timeout;
  return true;
}

bool H2Carrier::usable() const {
  if (closed || goaway_) return false;
  const uint32_t remote =
      nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  return calls_.size() < std::min(remote, kMaxStreams);
}

void H2Carrier::attach(H2Call& call) {
  calls_.push_back(&call);
}

void H2Carrier::detach(H2Call& call) {
  calls_.erase(std::remove(calls_.begin(), calls_.end(), &call), calls_.end());
  touched_.erase(std::remove(touched_.begin(), touched_.end(), &call), touched_.end());
  if (calls_.empty()) idle_since_ = worker_.now();
  if (closed) return;
  const int32_t id = call.streamId();
  if (id <= 0) return;
  by_stream_.erase(id);
  if (const size_t left = call.takeUnconsumed(); left > 0) consume(id, left);
  // Not closed yet (the client went away, the exchange timed out): the upstream can stop. (A
  // stream whose HEADERS is still queued is reset as soon as it opens.)
  if (!call.closedByUpstream())
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  worker_.flushSoon(this);
}

int32_t H2Carrier::submit(H2Call& call, const std::vector<nghttp2_nv>& nva, bool has_body) {
  nghttp2_data_provider provider{};
  provider.read_callback = &H2Carrier::readBody;
  const int32_t id = nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(),
                                            has_body ? &provider : nullptr, nullptr);
  if (id > 0) by_stream_[id] = &call;
  return id;
}

void H2Carrier::resume(int32_t stream_id) {
  nghttp2_session_resume_data(session_, stream_id);
}

void H2Carrier::consume(int32_t stream_id, size_t bytes) {
  if (nghttp2_session_consume(session_, stream_id, bytes) != 0)
    nghttp2_session_consume_connection(session_, bytes);  // the stream is gone
  worker_.flushSoon(this);                                // the WINDOW_UPDATE
}

H2Call* H2Carrier::call(int32_t stream_id) {
  const auto found = by_stream_.find(stream_id);
  return found == by_stream_.end() ? nullptr : found->second;
}

void H2Carrier::touch(H2Call* call) {
  if (std::find(touched_.begin(), touched_.end(), call) == touched_.end()) touched_.push_back(call);
}

bool H2Carrier::secured() {
  if (!tls_ || tls_->established()) return true;
  switch (tls_->handshake()) {
    case TlsStream::Handshake::kDone:
      if (tls_->negotiatedH2()) return true;
      // "protocol": "h2" is a promise about the upstream: HTTP/1.1 bytes are not sent instead.
      std::fprintf(stderr,
                   "strangler-proxy: upstream '%s' at %s did not agree to HTTP/2 (ALPN h2); "
                   "its \"protocol\" is \"h2\"\n",
                   upstream_name_.c_str(), endpoint_->key.c_str());
      fail("alpn");
      return false;
    case TlsStream::Handshake::kPending:
      return false;
    case TlsStream::Handshake::kFailed:
      break;
  }
  std::fprintf(stderr, "strangler-proxy: TLS to upstream '%s' at %s (name %s) failed: %s\n",
               upstream_name_.c_str(), endpoint_->key.c_str(), tls_name_.c_str(),
               tls_->error().c_str());
  fail("tls");
  return false;
}

void H2Carrier::onEvents(uint32_t events) {
  if (closed) return;
  if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) hangup = true;
  if (connecting_) {
    if ((events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) == 0) return;
    int error = 0;
    socklen_t length = sizeof error;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length);
    if (error != 0) {
      fail("connect");
      return;
    }
    connecting_ = false;
  }
  if (!secured()) return;
  established_ = true;
  flush();
  if (closed) return;
  if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) readAll();
}

void H2Carrier::readAll() {
  char buffer[kReadChunk];
  for (;;) {
    ssize_t n = tls_ ? tls_->read(buffer, sizeof buffer) : ::recv(fd, buffer, sizeof buffer, 0);
    if (n > 0) {
      const ssize_t used =
          nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(buffer), n);
      if (used < 0) {
        nghttp2_session_terminate_session(session_, NGHTTP2_PROTOCOL_ERROR);
        flush();
        fail("protocol");
        return;
      }
      flush();  // acknowledgements, window updates, the rest of the bodies
      if (closed) return;
      deliver();
      if (closed) return;
      const std::vector<H2Call*> calls = calls_;  // bodies that waited for a window
      for (H2Call* c : calls) {
        if (std::find(calls_.begin(), calls_.end(), c) != calls_.end())
          c->exchange().onH2Writable();
        if (closed) return;
      }
      if (!tls_ && static_cast<size_t>(n) < sizeof buffer && !hangup) break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    fail(n == 0 ? "closed" : "reset");
    return;
  }
  // No stream left and nothing more to say: a GOAWAY'd connection ends here.
  if (goaway_ && calls_.empty()) worker_.closeCarrier(this);
}

void H2Carrier::deliver() {
  while (!touched_.empty()) {
    std::vector<H2Call*> calls;
    calls.swap(touched_);
    for (H2Call* c : calls) {
      // An exchange handed its answer may end, and detach itself or others: looked up again.
      if (std::find(calls_.begin(), calls_.end(), c) == calls_.end()) continue;
      c->exchange().onH2Answer();
      if (closed) return;
    }
  }
}

void H2Carrier::flush() {
  if (closed || connecting_ || !established_) return;
  for (;;) {
    if (wire_pos_ == wire_.size()) {
      wire_.clear();
      wire_pos_ = 0;
      while (wire_.size() < kWireBudget) {
        const uint8_t* data = nullptr;
        const ssize_t n = nghttp2_session_mem_send(session_, &data);
        if (n <= 0) break;
        wire_.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
      }
      if (wire_.empty()) return;
    }
    const ssize_t n =
        tls_ ? tls_->write(wire_.data() + wire_pos_, wire_.size() - wire_pos_)
             : ::send(fd, wire_.data() + wire_pos_, wire_.size() - wire_pos_, MSG_NOSIGNAL);
    if (n > 0) {
      wire_pos_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    fail("send");
    return;
  }
}

void H2Carrier::checkDeadline(Worker::Clock::time_point now) {
  if (closed) return;
  if (!established_ && now >= connect_deadline_) {
    fail("connect_timeout");
    return;
  }
  if (calls_.empty() && (now - idle_since_ > kIdleTimeout || worker_.stopping())) {
    nghttp2_session_terminate_session(session_, NGHTTP2_NO_ERROR);
    flush();
    worker_.closeCarrier(this);
  }
}

void H2Carrier::fail(const char* kind) {
  if (closed) return;
  worker_.closeCarrier(this);  // first: a call sent again must not come back here
  const std::vector<H2Call*> calls = calls_;
  calls_.clear();
  by_stream_.clear();
  touched_.clear();
  for (H2Call* c : calls) {
    c->fail(kind);
    c->exchange().onCarrierFailed();
  }
}

int H2Carrier::onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                        size_t name_length, const uint8_t* value, size_t value_length, uint8_t,
                        void* user) {
  auto* self = static_cast<H2Carrier*>(user);
  H2Call* c = self->call(frame->hd.stream_id);
  if (c == nullptr) return 0;
  c->onHeader(std::string_view(reinterpret_cast<const char*>(name), name_length),
              std::string_view(reinterpret_cast<const char*>(value), value_length));
  return 0;
}

int H2Carrier::onFrameReceived(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<H2Carrier*>(user);
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    self->goaway_ = true;  // streams it did not process are closed (REFUSED_STREAM) by nghttp2
    return 0;
  }
  H2Call* c = self->call(frame->hd.stream_id);
  if (c == nullptr) return 0;
  const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_HEADERS) {
    c->onHeadersFrame(end);
    self->touch(c);
  } else if (frame->hd.type == NGHTTP2_DATA && end) {
    c->onDataEnd();
    self->touch(c);
  }
  return 0;
}

int H2Carrier::onData(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data,
                      size_t length, void* user) {
  auto* self = static_cast<H2Carrier*>(user);
  H2Call* c = self->call(stream_id);
  if (c == nullptr) {
    // Nobody will read it (the exchange is over): its window goes back at once.
    nghttp2_session_consume(self->session_, stream_id, length);
    return 0;
  }
  c->onData(std::string_view(reinterpret_cast<const char*>(data), length));
  self->touch(c);
  return 0;
}

int H2Carrier::onStreamClosed(nghttp2_session*, int32_t stream_id, uint32_t error_code,
                              void* user) {
  auto* self = static_cast<H2Carrier*>(user);
  H2Call* c = self->call(stream_id);
  if (c == nullptr) return 0;
  c->onClosed(error_code);
  self->touch(c);
  return 0;
}

ssize_t H2Carrier::readBody(nghttp2_session*, int32_t stream_id, uint8_t* buffer, size_t length,
                            uint32_t* flags, nghttp2_data_source*, void* user) {
  auto* self = static_cast<H2Carrier*>(user);
  H2Call* c = self->call(stream_id);
  if (c == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // detached: reset
  return c->readBody(buffer, length, flags);
}

}  // namespace strangler::proxy
