#include "h2_session.h"

#include <sys/epoll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "client_connection.h"
#include "h2_fields.h"

namespace strangler::proxy {
namespace {

constexpr int32_t kConnectionWindow = 1024 * 1024;

bool isPseudo(std::string_view name) {
  return !name.empty() && name.front() == ':';
}

// The stream client's answer, read with http_parser.
// After the head, fields are the trailers of a chunked answer.
HeaderList& responseFields(H2Stream& stream) {
  return stream.head_parsed ? stream.response_trailers : stream.response_headers;
}

int onResponseHeaderField(http_parser* parser, const char* at, size_t length) {
  auto* stream = static_cast<H2Stream*>(parser->data);
  HeaderList& fields = responseFields(*stream);
  if (fields.empty() || stream->field_last) fields.emplace_back();
  stream->field_last = false;
  fields.back().first.append(at, length);
  return 0;
}

int onResponseHeaderValue(http_parser* parser, const char* at, size_t length) {
  auto* stream = static_cast<H2Stream*>(parser->data);
  HeaderList& fields = responseFields(*stream);
  if (fields.empty()) return 1;
  stream->field_last = true;
  fields.back().second.append(at, length);
  return 0;
}

int onResponseHeadersComplete(http_parser* parser) {
  auto* stream = static_cast<H2Stream*>(parser->data);
  if (parser->status_code < 200) {  // "100 Continue" and the like: HTTP/1.1's business only
    stream->response_headers.clear();
    return 1;
  }
  stream->status = static_cast<int>(parser->status_code);
  stream->head_parsed = true;
  stream->field_last = false;
  return stream->head_request ? 1 : 0;
}

int onResponseBody(http_parser* parser, const char* at, size_t length) {
  static_cast<H2Stream*>(parser->data)->body.append(at, length);
  return 0;
}

int onResponseComplete(http_parser* parser) {
  auto* stream = static_cast<H2Stream*>(parser->data);
  if (stream->head_parsed) stream->body_done = true;
  return 0;
}

const http_parser_settings& responseSettings() {
  static const http_parser_settings kSettings = [] {
    http_parser_settings s{};
    s.on_header_field = onResponseHeaderField;
    s.on_header_value = onResponseHeaderValue;
    s.on_headers_complete = onResponseHeadersComplete;
    s.on_body = onResponseBody;
    s.on_message_complete = onResponseComplete;
    return s;
  }();
  return kSettings;
}

}  // namespace

H2Session::H2Session(ClientConnection& connection, Worker& worker, std::string peer, bool secure)
    : connection_(connection), worker_(worker), peer_(std::move(peer)), secure_(secure) {
  nghttp2_session_callbacks* callbacks = nullptr;
  nghttp2_session_callbacks_new(&callbacks);
  nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, &H2Session::onBeginHeaders);
  nghttp2_session_callbacks_set_on_header_callback(callbacks, &H2Session::onHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, &H2Session::onFrameReceived);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, &H2Session::onData);
  nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, &H2Session::onStreamClosed);
  nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, &H2Session::onFrameSent);
  nghttp2_option* options = nullptr;
  nghttp2_option_new(&options);
  // The window is given back as each request reads its body, not as bytes arrive: a slow
  // upstream slows its own stream's sender instead of filling the proxy's memory.
  nghttp2_option_set_no_auto_window_update(options, 1);
  nghttp2_session_server_new2(&session_, callbacks, this, options);
  nghttp2_option_del(options);
  nghttp2_session_callbacks_del(callbacks);
}

H2Session::~H2Session() {
  // The connection is going: each stream's request ends with it (its upstream is closed).
  for (auto& [id, stream] : streams_) {
    if (stream->client == nullptr) continue;
    ClientConnection* client = stream->client;
    stream->client = nullptr;
    client->detachStream();
    worker_.closeClient(client);
  }
  nghttp2_session_del(session_);
}

void H2Session::start(std::string_view already_read) {
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, kMaxStreams},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 65535},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
       static_cast<uint32_t>(worker_.runtime()->config->limits.max_header_bytes)}};
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings,
                          sizeof settings / sizeof settings[0]);
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
  if (!already_read.empty()) feed(already_read.data(), already_read.size());
}

bool H2Session::feed(const char* data, size_t length) {
  const ssize_t used =
      nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(data), length);
  if (used < 0) {
    // A connection error (bad preface, a frame too large, a flood): GOAWAY, then the close.
    nghttp2_session_terminate_session(
        session_, used == NGHTTP2_ERR_FLOODED ? NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_PROTOCOL_ERROR);
    return false;
  }
  return true;
}

void H2Session::takeOutput(std::string& out, size_t budget) {
  while (out.size() < budget) {
    const uint8_t* data = nullptr;
    const ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n <= 0) break;
    out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
}

bool H2Session::finished() const {
  return nghttp2_session_want_read(session_) == 0 && nghttp2_session_want_write(session_) == 0;
}

bool H2Session::idle() const {
  return std::none_of(streams_.begin(), streams_.end(), [](const auto& entry) {
    const H2Stream& s = *entry.second;
    return s.client != nullptr || (s.submitted && !s.sent_all);
  });
}

void H2Session::goAway() {
  nghttp2_submit_shutdown_notice(session_);
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE,
                        nghttp2_session_get_last_proc_stream_id(session_), NGHTTP2_NO_ERROR,
                        nullptr, 0);
}

void H2Session::peerClosed() {
  std::vector<ClientConnection*> stalled;
  for (auto& [id, stream] : streams_) {
    if (stream->input_done || stream->client == nullptr) continue;
    stalled.push_back(stream->client);
    stream->client->detachStream();
    stream->client = nullptr;
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  }
  for (auto* client : stalled)
    worker_.closeClient(client);
  goAway();
}

void H2Session::checkDeadlines(Worker::Clock::time_point now) {
  // A stream's request has the timeouts of an HTTP/1.1 one (a body that stops coming: 408).
  std::vector<ClientConnection*> clients;
  for (const auto& [id, stream] : streams_) {
    if (stream->client != nullptr) clients.push_back(stream->client);
  }
  for (auto* client : clients) {
    if (!client->closed) client->checkDeadline(now);
  }
}

void H2Session::markAwake(H2Stream& stream) {
  awake_.push_back(stream.id);
}

void H2Session::wake() {
  // A stream client may close (and its stream with it) while being woken: ids, looked up again.
  while (!awake_.empty()) {
    std::vector<int32_t> ids;
    ids.swap(awake_);
    for (const int32_t id : ids) {
      H2Stream* s = stream(id);
      if (s == nullptr || s->client == nullptr) continue;
      if (!s->started) {
        beginRequest(*s);
        if (s->client == nullptr) continue;
      }
      s->client->onEvents(EPOLLIN | EPOLLOUT);
    }
  }
  closed_.clear();
}

H2Stream* H2Session::stream(int32_t id) {
  const auto found = streams_.find(id);
  return found == streams_.end() ? nullptr : found->second.get();
}

int H2Session::onBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<H2Session*>(user);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  auto stream = std::make_unique<H2Stream>();
  stream->session = self;
  stream->id = frame->hd.stream_id;
  self->streams_[stream->id] = std::move(stream);
  return 0;
}

int H2Session::onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                        size_t name_length, const uint8_t* value, size_t value_length, uint8_t,
                        void* user) {
  auto* self = static_cast<H2Session*>(user);
  H2Stream* s = self->stream(frame->hd.stream_id);
  if (s == nullptr || s->started) return 0;  // trailers: dropped, as for HTTP/1.1
  const std::string_view key(reinterpret_cast<const char*>(name), name_length);
  const std::string_view text(reinterpret_cast<const char*>(value), value_length);
  if (key == ":method") {
    s->method = text;
  } else if (key == ":path") {
    s->path = text;
  } else if (key == ":authority") {
    s->authority = text;
  } else if (key == ":scheme") {
    s->scheme = text;
  } else if (key == "cookie") {
    if (!s->cookies.empty()) s->cookies += "; ";
    s->cookies += text;
  } else if (!isPseudo(key)) {
    s->headers.emplace_back(std::string(key), std::string(text));
  }
  return 0;
}

int H2Session::onFrameReceived(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  auto* self = static_cast<H2Session*>(user);
  H2Stream* s = self->stream(frame->hd.stream_id);
  if (s == nullptr) return 0;
  const bool end = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (frame->hd.type == NGHTTP2_HEADERS && (frame->hd.flags & NGHTTP2_FLAG_END_HEADERS) &&
      s->client == nullptr && !s->started) {
    s->input_done = end;
    s->client = new ClientConnection(self->worker_, *s, self->peer_, self->secure_);
    self->markAwake(*s);
    return 0;
  }
  if (end && (frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS)) {
    self->endInput(*s);
    self->markAwake(*s);
  }
  return 0;
}

int H2Session::onData(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data,
                      size_t length, void* user) {
  auto* self = static_cast<H2Session*>(user);
  H2Stream* s = self->stream(stream_id);
  if (s == nullptr || s->client == nullptr) {
    // Nobody will read it (the stream was answered early, or is gone): its window goes back.
    if (s != nullptr) {
      nghttp2_session_consume(self->session_, stream_id, length);
    } else {
      nghttp2_session_consume_connection(self->session_, length);
    }
    return 0;
  }
  const std::string_view bytes(reinterpret_cast<const char*>(data), length);
  if (s->chunked) {
    appendChunk(s->input, bytes);
  } else {
    s->input.append(bytes);
  }
  s->unconsumed += length;
  self->markAwake(*s);
  return 0;
}

int H2Session::onFrameSent(nghttp2_session*, const nghttp2_frame* frame, void* user) {
  // What the peer did wrong, counted: a connection error (GOAWAY with an error), a stream reset
  // for a protocol error, a stream refused past the concurrency limit.
  auto* self = static_cast<H2Session*>(user);
  const char* kind = nullptr;
  if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR) {
    kind = "h2_error";
  } else if (frame->hd.type == NGHTTP2_RST_STREAM) {
    const uint32_t code = frame->rst_stream.error_code;
    if (code == NGHTTP2_REFUSED_STREAM) {
      kind = "h2_stream_refused";
    } else if (code != NGHTTP2_NO_ERROR && code != NGHTTP2_CANCEL &&
               code != NGHTTP2_INTERNAL_ERROR) {
      kind = "h2_stream_error";
    }
  }
  if (kind != nullptr)
    self->worker_.shared().metrics.recordClientEvent(self->worker_.index(), kind);
  return 0;
}

int H2Session::onStreamClosed(nghttp2_session*, int32_t stream_id, uint32_t, void* user) {
  auto* self = static_cast<H2Session*>(user);
  const auto found = self->streams_.find(stream_id);
  if (found == self->streams_.end()) return 0;
  std::unique_ptr<H2Stream> s = std::move(found->second);
  self->streams_.erase(found);
  // DATA received but never read: the connection's window must not shrink for good.
  if (s->unconsumed > 0) nghttp2_session_consume_connection(self->session_, s->unconsumed);
  if (s->client != nullptr) {
    // Reset by the client (or ended before the answer was whole): the request ends here.
    ClientConnection* client = s->client;
    s->client = nullptr;
    client->detachStream();
    self->worker_.closeClient(client);
  }
  self->closed_.push_back(std::move(s));  // a callback up the stack may still hold it
  return 0;
}

void H2Session::beginRequest(H2Stream& s) {
  s.started = true;
  std::string head;
  head.reserve(256);
  head += s.method.empty() ? "GET" : s.method;
  head += ' ';
  head += s.method == "CONNECT" ? s.authority : (s.path.empty() ? "/" : s.path);
  head += " HTTP/1.1\r\n";
  bool host = false;
  bool length = false;
  for (const auto& [name, value] : s.headers) {
    if (iequals(name, "host")) {
      if (!s.authority.empty()) continue;  // :authority wins (RFC 9113 §8.3.1)
      host = true;
    }
    if (iequals(name, "content-length")) length = true;
    appendHeader(head, name, value);
  }
  if (!s.authority.empty()) {
    appendHeader(head, "Host", s.authority);
    host = true;
  }
  if (!host) appendHeader(head, "Host", "");  // refused by the request path, as in HTTP/1.1
  if (!s.cookies.empty()) appendHeader(head, "Cookie", s.cookies);
  // DATA may have come with the HEADERS, before this: it goes after the head.
  std::string body = std::move(s.input);
  if (!length) {
    // Framed for HTTP/1.1 in every case: without a length the body would read as the next
    // request. All of it here already: its length; more to come: chunked.
    if (!s.input_done) {
      s.chunked = true;
      appendHeader(head, "Transfer-Encoding", "chunked");
    } else if (!body.empty()) {
      appendHeader(head, "Content-Length", std::to_string(body.size()));
    }
  }
  head += "\r\n";
  s.input = std::move(head);
  if (s.chunked) {
    appendChunk(s.input, body);
    if (s.input_done) s.input += "0\r\n\r\n";
  } else {
    s.input += body;
  }
  s.input_pos = 0;
  s.head_request = s.method == "HEAD";
  http_parser_init(&s.parser, HTTP_RESPONSE);
  s.parser.data = &s;
}

void H2Session::endInput(H2Stream& s) {
  if (s.input_done) return;
  s.input_done = true;
  if (s.started && s.chunked) s.input += "0\r\n\r\n";
}

ssize_t H2Session::readRequest(H2Stream& s, char* buffer, size_t size) {
  const size_t left = s.input.size() - s.input_pos;
  if (left == 0) {
    errno = EAGAIN;  // the end of the request is in its own framing, never a close
    return -1;
  }
  const size_t n = std::min(left, size);
  std::memcpy(buffer, s.input.data() + s.input_pos, n);
  s.input_pos += n;
  if (s.input_pos == s.input.size()) {
    s.input.clear();
    s.input_pos = 0;
  }
  // The body was read: the sender may send as much again.
  const size_t credit = std::min(n, s.unconsumed);
  if (credit > 0) {
    s.unconsumed -= credit;
    nghttp2_session_consume(session_, s.id, credit);
    worker_.flushSoon(&connection_);  // WINDOW_UPDATE
  }
  return static_cast<ssize_t>(n);
}

ssize_t H2Session::writeResponse(H2Stream& s, const char* data, size_t size) {
  if (s.body.size() - s.body_pos >= kStreamBuffer) {
    s.blocked = true;
    errno = EAGAIN;
    return -1;
  }
  const size_t parsed = http_parser_execute(&s.parser, &responseSettings(), data, size);
  if (HTTP_PARSER_ERRNO(&s.parser) != HPE_OK || parsed != size) {
    // Our own HTTP/1.1 answer did not parse: never expected; the stream is reset.
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s.id, NGHTTP2_INTERNAL_ERROR);
    errno = EPIPE;
    return -1;
  }
  if (s.head_parsed && !s.submitted) {
    submitResponse(s);
  } else if (s.submitted) {
    nghttp2_session_resume_data(session_, s.id);
  }
  worker_.flushSoon(&connection_);
  return static_cast<ssize_t>(size);
}

void H2Session::submitResponse(H2Stream& s) {
  s.submitted = true;
  H2Fields fields{{":status", std::to_string(s.status)}};
  appendH2Fields(s.response_headers, s.response_headers, fields);
  const auto nva = nghttp2Fields(fields);
  // Trailers go after the body (even an empty one: a gRPC status after no message).
  const bool no_body = s.body_done && s.body.empty() && s.response_trailers.empty();
  nghttp2_data_provider provider{};
  provider.read_callback = &H2Session::readBody;
  s.sent_all = no_body;
  nghttp2_submit_response(session_, s.id, nva.data(), nva.size(), no_body ? nullptr : &provider);
}

ssize_t H2Session::readBody(nghttp2_session*, int32_t stream_id, uint8_t* buffer, size_t length,
                            uint32_t* flags, nghttp2_data_source*, void* user) {
  auto* self = static_cast<H2Session*>(user);
  H2Stream* s = self->stream(stream_id);
  if (s == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  const size_t left = s->body.size() - s->body_pos;
  const size_t n = std::min(left, length);
  std::memcpy(buffer, s->body.data() + s->body_pos, n);
  s->body_pos += n;
  if (s->body_pos == s->body.size()) {
    s->body.clear();
    s->body_pos = 0;
  }
  if (s->blocked && s->body.size() - s->body_pos < kStreamBuffer / 2) {
    s->blocked = false;
    self->markAwake(*s);  // the stream client has more to hand over
  }
  if (n == 0 && !s->body_done) return NGHTTP2_ERR_DEFERRED;
  if (s->body_done && s->body_pos == s->body.size()) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    s->sent_all = true;
    if (!s->response_trailers.empty()) {
      // END_STREAM goes with the trailers' HEADERS instead.
      H2Fields fields;
      appendH2Fields(s->response_trailers, s->response_headers, fields);
      const auto nva = nghttp2Fields(fields);
      if (nghttp2_submit_trailer(self->session_, stream_id, nva.data(), nva.size()) == 0)
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    }
  }
  return static_cast<ssize_t>(n);
}

void H2Session::clientClosed(H2Stream& s) {
  // The stream client is done (its answer is whole, or it failed): a stream whose answer is not
  // complete is reset, so the client knows it was cut.
  s.client = nullptr;
  if (s.unconsumed > 0) {  // the rest of a body nobody reads now
    nghttp2_session_consume(session_, s.id, s.unconsumed);
    s.unconsumed = 0;
  }
  if (!s.body_done) {
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, s.id, NGHTTP2_INTERNAL_ERROR);
  } else if (s.submitted) {
    nghttp2_session_resume_data(session_, s.id);
  }
  worker_.flushSoon(&connection_);
}

}  // namespace strangler::proxy
