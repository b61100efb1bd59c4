// ClientConnection, reading a request: the parser's callbacks, the checks on the head
// (framing, Host, obs-fold, trailers), routing as soon as the head is read, and the body kept
// or framed for streaming. The loop that drives the parser is in client_connection.cpp.
#include "client_connection.h"

#include <algorithm>

#include "http_util.h"
#include "strangler/proxy/path_normalizer.h"

namespace strangler::proxy {

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

int ClientConnection::countHead(size_t length) {
  header_bytes_ += length;
  if (header_bytes_ <= static_cast<size_t>(runtime_->config->limits.max_header_bytes)) return 0;
  error_status_ = 431;
  return 1;
}

int ClientConnection::onUrl(http_parser* parser, const char* at, size_t length) {
  auto* self = static_cast<ClientConnection*>(parser->data);
  self->url_.append(at, length);
  return self->countHead(length);
}

// After the head, header fields are a chunked body's trailers: never merged into the head (the
// upstream would take them for headers nothing inspected) and not forwarded, as the body is
// re-chunked; they still count against max_header_bytes.
int ClientConnection::onHeaderField(http_parser* parser, const char* at, size_t length) {
  auto* self = static_cast<ClientConnection*>(parser->data);
  if (self->head_complete_) {
    self->trailers_seen_ = true;
  } else {
    if (self->headers_.empty() || self->header_value_last_) self->headers_.emplace_back();
    self->header_value_last_ = false;
    self->headers_.back().first.append(at, length);
  }
  return self->countHead(length + 4);
}

int ClientConnection::onHeaderValue(http_parser* parser, const char* at, size_t length) {
  auto* self = static_cast<ClientConnection*>(parser->data);
  if (!self->head_complete_) {
    if (self->headers_.empty()) return 1;
    self->header_value_last_ = true;
    self->headers_.back().second.append(at, length);
  }
  return self->countHead(length);
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
  // Values likewise: a control character (http_parser lets some through at a value's start)
  // would sit in the middle of a value once the proxy appends to it (Forwarded,
  // X-Forwarded-For), where the next hop's parser refuses it (found by the request path fuzzer).
  for (const auto& [name, value] : self->headers_) {
    if (!isToken(name)) {
      self->error_status_ = 400;
      self->error_reason_ = "invalid header field name";
      return -1;  // not 1: that would mean "no body", not "error"
    }
    if (!isFieldValue(value)) {
      self->error_status_ = 400;
      self->error_reason_ = "invalid character in a header field value";
      return -1;
    }
  }
  if (parser->flags & F_CHUNKED) {
    // Forwarded as received, so checked whole: every coding a token, `chunked` once and last
    // ("chunked, chunked" would be framed differently by the next hop).
    self->te_codings_.clear();
    int chunked = 0;
    bool valid = true;
    bool known = true;
    for (const auto& [name, value] : self->headers_) {
      if (!iequals(name, "transfer-encoding")) continue;
      size_t start = 0;
      while (start <= value.size()) {
        size_t end = value.find(',', start);
        if (end == std::string::npos) end = value.size();
        const std::string_view coding =
            trimSpace(std::string_view(value.data() + start, end - start));
        if (!coding.empty()) {
          valid = valid && isToken(coding) && chunked == 0;  // nothing after chunked
          if (iequals(coding, "chunked")) {
            ++chunked;
          } else {
            known = known && isKnownCoding(coding);
          }
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
    if (!known) {
      // RFC 9112 §6.1: a coding the proxy does not know is 501. Passing it on is no help: the
      // next hop cannot decode it either, and some parsers frame such lists wrongly
      // (http_parser 2.9.4 refuses "chun, chunked").
      self->error_status_ = 501;
      self->error_reason_ = "unknown transfer coding in Transfer-Encoding";
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
  const auto content_type = findHeader(self->headers_, "content-type");
  self->grpc_ = content_type && startsWithIgnoreCase(*content_type, "application/grpc");
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
  if (self->head_ready_) http_parser_pause(parser, 1);  // a gRPC call goes on now
  return 0;
}

size_t ClientConnection::keepLimit() const {
  const auto* route = decision_.route;
  return static_cast<size_t>(route != nullptr && route->shadow ? route->shadow->max_body_bytes
                                                               : kDefaultKeptBodyBytes);
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
  // A gRPC call is a stream of messages both ways (a bidi call's next message may wait for the
  // last answer): it goes on at its head, its body not kept — so it is never retried, replayed
  // to a fallback or copied to a shadow, as a body too large to keep.
  if (streamed_ && grpc_) head_ready_ = true;
  if (streamed_) {
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
    appendChunk(self->pending_body_, std::string_view(at, length));
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
  if (!peer_ip_) return false;
  for (const auto& cidr : runtime_->config->trusted_proxies)
    if (cidr.contains(*peer_ip_)) return true;
  return false;
}

}  // namespace strangler::proxy
