#pragma once

// Frames a byte stream into HTTP/1.1 messages with http_parser, as a peer would: what a client
// sent, what an upstream received, what a client received. Used by the request_path fuzzer and
// the next-hop conformance test (tests/strangler-proxy/llhttp_conformance_test.cpp).

#include <http_parser.h>

#include <cctype>
#include <string>
#include <string_view>
#include <vector>

namespace strangler::fuzz {

inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

/// One request as http_parser framed it.
struct Message {
  std::string method;
  std::string body;
  int hosts = 0;
  bool trailer = false;  ///< a header field after the head (a chunked trailer)
  bool operator==(const Message& other) const {
    return method == other.method && body == other.body;
  }
};

/// Frames a byte stream into requests (or responses) with http_parser, as a peer would.
class Framer {
 public:
  explicit Framer(http_parser_type type) {
    http_parser_init(&parser_, type);
    parser_.data = this;
    http_parser_settings_init(&settings_);
    settings_.on_message_begin = [](http_parser* p) {
      auto* self = static_cast<Framer*>(p->data);
      self->current_ = Message{};
      self->in_head_ = true;
      self->value_last_ = true;
      self->field_.clear();
      return 0;
    };
    settings_.on_header_field = [](http_parser* p, const char* at, size_t length) {
      auto* self = static_cast<Framer*>(p->data);
      if (!self->in_head_) self->current_.trailer = true;
      if (self->value_last_) self->field_.clear();  // a name may come in pieces
      self->value_last_ = false;
      self->field_.append(at, length);
      return 0;
    };
    settings_.on_header_value = [](http_parser* p, const char*, size_t) {
      auto* self = static_cast<Framer*>(p->data);
      if (!self->value_last_ && self->in_head_ && iequals(self->field_, "host"))
        ++self->current_.hosts;
      self->value_last_ = true;
      return 0;
    };
    settings_.on_headers_complete = [](http_parser* p) {
      auto* self = static_cast<Framer*>(p->data);
      self->in_head_ = false;
      if (p->type == HTTP_REQUEST) {
        self->current_.method = http_method_str(static_cast<http_method>(p->method));
      }
      // A response to HEAD carries no body; the framer cannot know which request it answers.
      return self->skip_bodies_ ? 1 : 0;
    };
    settings_.on_body = [](http_parser* p, const char* at, size_t length) {
      static_cast<Framer*>(p->data)->current_.body.append(at, length);
      return 0;
    };
    settings_.on_message_complete = [](http_parser* p) {
      auto* self = static_cast<Framer*>(p->data);
      self->messages.push_back(std::move(self->current_));
      self->current_ = Message{};
      return 0;
    };
  }

  /// Frames `bytes`; false once the stream is malformed (what follows is not framed).
  /// After an upgrade (a request asking for one, a 101 granting it) the bytes are another
  /// protocol's: taken as they are, not framed, as a peer that switched would.
  bool feed(std::string_view bytes) {
    if (failed_) return false;
    if (upgraded_) return true;
    const size_t parsed = http_parser_execute(&parser_, &settings_, bytes.data(), bytes.size());
    if (HTTP_PARSER_ERRNO(&parser_) == HPE_OK && parser_.upgrade) {
      upgraded_ = true;
      return true;
    }
    if (HTTP_PARSER_ERRNO(&parser_) != HPE_OK || parsed != bytes.size()) failed_ = true;
    return !failed_;
  }
  /// The peer closed: an EOF-delimited message ends here.
  void finish() {
    if (!failed_) http_parser_execute(&parser_, &settings_, nullptr, 0);
  }
  bool failed() const { return failed_; }
  const char* error() const { return http_errno_name(HTTP_PARSER_ERRNO(&parser_)); }
  void skipBodies() { skip_bodies_ = true; }

  std::vector<Message> messages;

 private:
  http_parser parser_{};
  http_parser_settings settings_{};
  Message current_;
  bool in_head_ = false;
  bool value_last_ = true;  ///< the last callback was a value (or none yet): a new field next
  std::string field_;
  bool failed_ = false;
  bool upgraded_ = false;
  bool skip_bodies_ = false;
};

/// The first of `received` (what an upstream framed, in order) that is not, in order, one of
/// `sent` (what the client's bytes frame as); nullptr when there is none. A request may come
/// again right after itself (a retry, a fallback); the client's requests the proxy refused are
/// skipped. A request the client did not send is what request smuggling looks like.
inline const Message* unsentRequest(const std::vector<Message>& received,
                                    const std::vector<Message>& sent) {
  size_t next = 0;
  const Message* last = nullptr;
  for (const Message& message : received) {
    if (last != nullptr && message == *last) continue;
    while (next < sent.size() && !(sent[next] == message))
      ++next;
    if (next == sent.size()) return &message;
    last = &sent[next++];
  }
  return nullptr;
}

}  // namespace strangler::fuzz
