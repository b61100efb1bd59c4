#include "upstream_h2.h"

#include <algorithm>
#include <climits>
#include <cstring>
#include <vector>

namespace strangler::proxy {
namespace {

constexpr int32_t kAnswerWindow = 1024 * 1024;  // the answer's: the socket is what bounds it

/// Request fields HTTP/2 does not carry (RFC 9113 §8.2.2); Host becomes :authority.
bool notForH2(std::string_view name) {
  for (const char* dropped : {"connection", "keep-alive", "proxy-connection", "transfer-encoding",
                              "upgrade", "host", "http2-settings", "te"}) {
    if (iequals(name, dropped)) return true;
  }
  return false;
}

nghttp2_nv field(const std::string& name, const std::string& value) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(name.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(value.data())), name.size(),
                    value.size(), NGHTTP2_NV_FLAG_NONE};
}

}  // namespace

const http_parser_settings& H2Upstream::requestSettings() {
  static const http_parser_settings kSettings = [] {
    http_parser_settings s{};
    s.on_url = &H2Upstream::onUrl;
    s.on_header_field = &H2Upstream::onHeaderField;
    s.on_header_value = &H2Upstream::onHeaderValue;
    s.on_headers_complete = &H2Upstream::onHeadersComplete;
    s.on_body = &H2Upstream::onBody;
    s.on_message_complete = &H2Upstream::onMessageComplete;
    return s;
  }();
  return kSettings;
}

H2Upstream::H2Upstream(bool secure) : secure_(secure) {
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, &H2Upstream::onBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, &H2Upstream::onHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, &H2Upstream::onFrameReceived);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, &H2Upstream::onData);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, &H2Upstream::onStreamClosed);
  nghttp2_session_client_new(&session_, callbacks, this);
  nghttp2_session_callbacks_del(callbacks);
  const nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                             {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kAnswerWindow}};
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings,
                          sizeof settings / sizeof settings[0]);
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kAnswerWindow);
}

H2Upstream::~H2Upstream() {
  nghttp2_session_del(session_);
}

void H2Upstream::begin(bool head_request) {
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
  url_.clear();
  fields_.clear();
  value_last_ = false;
  head_request_ = head_request;
  has_body_ = false;
  request_ended_ = false;
  submit_failed_ = false;
  stream_id_ = -1;
  body_.clear();
  body_pos_ = 0;
  received_.clear();
  status_ = 0;
  head_sent_ = false;
  chunked_ = false;
  answered_ = false;
  clean_close_ = false;
  trailers_dropped_ = false;
  failure_ = nullptr;
}

bool H2Upstream::request(std::string_view bytes) {
  const size_t parsed =
      http_parser_execute(&parser_, &requestSettings(), bytes.data(), bytes.size());
  const auto error = HTTP_PARSER_ERRNO(&parser_);
  // An upgrade request stops the parser after its head: HTTP/2 carries no Upgrade (the client
  // gets the upstream's ordinary answer).
  if (error != HPE_OK || (parsed != bytes.size() && !parser_.upgrade)) return false;
  return !submit_failed_;
}

void H2Upstream::takeOutput(std::string& out, size_t budget) {
  while (out.size() < budget) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n <= 0) break;
    out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
}

bool H2Upstream::receive(const char* data, size_t length, std::string& answer) {
  answer_ = &answer;
  const ssize_t used =
      nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(data), length);
  answer_ = nullptr;
  if (used < 0) {
    nghttp2_session_terminate_session(session_, NGHTTP2_PROTOCOL_ERROR);
    goaway_ = true;
    if (!answered_ && failure_ == nullptr) failure_ = "protocol";
    return false;
  }
  return true;
}

bool H2Upstream::reusable() const {
  return !goaway_ && clean_close_ && failure_ == nullptr && nghttp2_session_want_read(session_);
}

int H2Upstream::onUrl(http_parser* parser, const char* at, size_t length) {
  static_cast<H2Upstream*>(parser->data)->url_.append(at, length);
  return 0;
}

int H2Upstream::onHeaderField(http_parser* parser, const char* at, size_t length) {
  auto* self = static_cast<H2Upstream*>(parser->data);
  if (self->fields_.empty() || self->value_last_) self->fields_.emplace_back();
  self->value_last_ = false;
  self->fields_.back().first.append(at, length);
  return 0;
}

int H2Upstream::onHeaderValue(http_parser* parser, const char* at, size_t length) {
  auto* self = static_cast<H2Upstream*>(parser->data);
  if (self->fields_.empty()) return 1;
  self->value_last_ = true;
  self->fields_.back().second.append(at, length);
  return 0;
}

int H2Upstream::onHeadersComplete(http_parser* parser) {
  auto* self = static_cast<H2Upstream*>(parser->data);
  self->has_body_ = (parser->flags & F_CHUNKED) != 0 ||
                    (parser->content_length > 0 && parser->content_length != ULLONG_MAX);
  if (!self->submitRequest()) self->submit_failed_ = true;
  return 0;
}

int H2Upstream::onBody(http_parser* parser, const char* at, size_t length) {
  auto* self = static_cast<H2Upstream*>(parser->data);
  if (self->body_pos_ > 0 && self->body_pos_ >= self->body_.size() / 2) {
    self->body_.erase(0, self->body_pos_);
    self->body_pos_ = 0;
  }
  self->body_.append(at, length);
  if (self->stream_id_ > 0) nghttp2_session_resume_data(self->session_, self->stream_id_);
  return 0;
}

int H2Upstream::onMessageComplete(http_parser* parser) {
  auto* self = static_cast<H2Upstream*>(parser->data);
  self->request_ended_ = true;
  if (self->stream_id_ > 0 && self->has_body_)
    nghttp2_session_resume_data(self->session_, self->stream_id_);
  return 0;
}

bool H2Upstream::submitRequest() {
  std::vector<std::pair<std::string, std::string>> fields;
  fields.reserve(fields_.size() + 4);
  fields.emplace_back(":method", http_method_str(static_cast<http_method>(parser_.method)));
  fields.emplace_back(":scheme", secure_ ? "https" : "http");
  std::string authority;
  for (const auto& [name, value] : fields_) {
    if (iequals(name, "host")) authority = value;
  }
  fields.emplace_back(":authority", authority);
  fields.emplace_back(":path", url_.empty() ? "/" : url_);
  for (const auto& [name, value] : fields_) {
    if (notForH2(name) || namedByConnection(fields_, name)) continue;
    fields.emplace_back(toLower(name), value);
  }
  // The only TE HTTP/2 allows, and the one gRPC servers look for.
  if (acceptsTrailers(fields_)) fields.emplace_back("te", "trailers");
  std::vector<nghttp2_nv> nva;
  nva.reserve(fields.size());
  for (const auto& [name, value] : fields)
    nva.push_back(field(name, value));
  nghttp2_data_provider provider{};
  provider.read_callback = &H2Upstream::readBody;
  stream_id_ = nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(),
                                      has_body_ ? &provider : nullptr, this);
  return stream_id_ > 0;
}

ssize_t H2Upstream::readBody(nghttp2_session*, int32_t, uint8_t* buffer, size_t length,
                             uint32_t* flags, nghttp2_data_source*, void* user) {
  auto* self = static_cast<H2Upstream*>(user);
  const size_t n = std::min(self->body_.size() - self->body_pos_, length);
  std::memcpy(buffer, self->body_.data() + self->body_pos_, n);
  self->body_pos_ += n;
  if (self->body_pos_ == self->body_.size()) {
    self->body_.clear();
    self->body_pos_ = 0;
  }
  if (n == 0 && !self->request_ended_) return NGHTTP2_ERR_DEFERRED;
  if (self->request_ended_ && self->body_.empty()) *flags |= NGHTTP2_DATA_FLAG_EOF;
  return static_cast<ssize_t>(n);
}

int H2Upstream::onBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<H2Upstream*>(user);
  if (frame->hd.stream_id == self->stream_id_) self->received_.clear();
  return 0;
}

int H2Upstream::onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                         size_t name_length, const uint8_t* value, size_t value_length, uint8_t,
                         void* user) {
  auto* self = static_cast<H2Upstream*>(user);
  if (frame->hd.stream_id != self->stream_id_) return 0;
  const std::string_view key(reinterpret_cast<const char*>(name), name_length);
  const std::string_view text(reinterpret_cast<const char*>(value), value_length);
  if (key == ":status") {
    int status = 0;
    for (const char c : text)
      status = status * 10 + (c - '0');  // nghttp2 checked: three digits
    self->status_ = status;
  } else if (key.empty() || key.front() != ':') {
    self->received_.emplace_back(std::string(key), std::string(text));
  }
  return 0;
}

int H2Upstream::onFrameReceived(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<H2Upstream*>(user);
  if (frame->hd.type == NGHTTP2_GOAWAY) {
    self->goaway_ = true;  // streams it did not process are closed (REFUSED_STREAM) by nghttp2
    return 0;
  }
  if (frame->hd.stream_id != self->stream_id_ || self->answer_ == nullptr) return 0;
  const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_HEADERS) {
    if (!self->head_sent_) {
      if (self->status_ < 200 && !end) {  // 1xx: the final answer follows
        self->received_.clear();
        return 0;
      }
      self->answerHead(end);
    } else if (end) {
      self->answerEnd();  // received_ holds the trailers
    }
    return 0;
  }
  if (frame->hd.type == NGHTTP2_DATA && end && self->head_sent_) {
    self->received_.clear();
    self->answerEnd();
  }
  return 0;
}

int H2Upstream::onData(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data,
                       size_t length, void* user) {
  auto* self = static_cast<H2Upstream*>(user);
  if (stream_id != self->stream_id_ || !self->head_sent_ || self->answered_ ||
      self->answer_ == nullptr)
    return 0;
  const std::string_view bytes(reinterpret_cast<const char*>(data), length);
  if (self->chunked_) {
    appendChunk(*self->answer_, bytes);
  } else {
    self->answer_->append(bytes);
  }
  return 0;
}

int H2Upstream::onStreamClosed(nghttp2_session*, int32_t stream_id, uint32_t error_code,
                               void* user) {
  auto* self = static_cast<H2Upstream*>(user);
  if (stream_id != self->stream_id_) return 0;
  if (!self->answered_) {
    // Refused (past a GOAWAY's last stream, or REFUSED_STREAM): never processed.
    if (self->failure_ == nullptr)
      self->failure_ = error_code == NGHTTP2_REFUSED_STREAM ? "closed" : "reset";
  } else {
    self->clean_close_ = error_code == NGHTTP2_NO_ERROR;
  }
  return 0;
}

void H2Upstream::answerHead(bool end_stream) {
  head_sent_ = true;
  std::string& out = *answer_;
  out += "HTTP/1.1 ";
  out += std::to_string(status_);
  out += ' ';
  out += reasonPhrase(status_);
  out += "\r\n";
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
    appendHeader(out, name, value);
  }
  if (end_stream) {
    if (!length && !no_body) appendHeader(out, "Content-Length", "0");
    answered_ = true;
  } else if (!length && !no_body) {
    // The body's end is END_STREAM, which HTTP/1.1 says with the last chunk — after which
    // the trailers go.
    chunked_ = true;
    appendHeader(out, "Transfer-Encoding", "chunked");
  }
  out += "\r\n";
  received_.clear();
}

void H2Upstream::answerEnd() {
  if (answered_) return;
  answered_ = true;
  if (!chunked_) {
    trailers_dropped_ = !received_.empty();
    return;
  }
  std::string& out = *answer_;
  out += "0\r\n";
  for (const auto& [name, value] : received_) {
    if (isToken(name) && isFieldValue(value)) appendHeader(out, name, value);
  }
  out += "\r\n";
}

}  // namespace strangler::proxy
