#pragma once

#include <http_parser.h>
#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "http_util.h"

namespace strangler::proxy {

/// HTTP/2 to an upstream with "protocol": "h2" (nghttp2, client side), for one upstream
/// connection. The request path speaks HTTP/1.1 to every upstream; for this one its connection
/// hands the request's HTTP/1.1 bytes to this bridge, which sends them as HEADERS and DATA on a
/// stream, and gives the answer back as HTTP/1.1 bytes for the connection's response parser:
/// chunked unless it has a length, its trailers after the last chunk — which is how gRPC's
/// `grpc-status` reaches the client, over HTTP/1.1 as over HTTP/2.
///
/// One stream at a time per connection, the connections pooled like HTTP/1.1 keep-alive ones:
/// a failure, a timeout or a client that goes away ends one connection and one request, and the
/// memory per request is bounded the same way (the socket is not read while the client's buffer
/// is full; the request body waits for the upstream's window in at most kStreamWindow). The cost
/// is a connection per concurrent request; multiplexing several requests on one connection is
/// the step to take if an upstream limits its connections.
class H2Upstream {
 public:
  /// `secure`: the :scheme is https (the connection is TLS).
  explicit H2Upstream(bool secure);
  ~H2Upstream();
  H2Upstream(const H2Upstream&) = delete;
  H2Upstream& operator=(const H2Upstream&) = delete;

  /// A new exchange on this connection.
  void begin(bool head_request);
  /// The request's HTTP/1.1 bytes, head and body, as the request path writes them (any split).
  /// False: they do not parse or cannot be sent (never expected: the proxy wrote them).
  bool request(std::string_view bytes);
  /// Appends the frames nghttp2 has to send to `out`, while `out` is under `budget` bytes.
  void takeOutput(std::string& out, size_t budget);
  /// Bytes read from the socket; the answer's HTTP/1.1 bytes they complete are appended to
  /// `answer`. False: a connection error (GOAWAY is queued; the connection ends).
  bool receive(const char* data, size_t length, std::string& answer);
  /// Request body bytes not yet taken by nghttp2 (the upstream's window is closed).
  size_t pendingBody() const { return body_.size() - body_pos_; }
  /// Set when the stream ended without a whole answer: "reset" (RST_STREAM), "closed" (GOAWAY
  /// before it was processed). nullptr otherwise.
  const char* failure() const { return failure_; }
  /// True while it can carry another exchange (no GOAWAY, the last stream closed cleanly).
  bool reusable() const;
  /// True once after an answer's trailers were dropped: it had a Content-Length and announced
  /// none (HTTP/1.1 carries trailers only after a chunked body).
  bool takeTrailersDropped() {
    const bool dropped = trailers_dropped_;
    trailers_dropped_ = false;
    return dropped;
  }

 private:
  static int onUrl(http_parser* parser, const char* at, size_t length);
  static int onHeaderField(http_parser* parser, const char* at, size_t length);
  static int onHeaderValue(http_parser* parser, const char* at, size_t length);
  static int onHeadersComplete(http_parser* parser);
  static int onBody(http_parser* parser, const char* at, size_t length);
  static int onMessageComplete(http_parser* parser);
  static const http_parser_settings& requestSettings();

  static int onBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      size_t name_length, const uint8_t* value, size_t value_length, uint8_t flags,
                      void* user);
  static int onFrameReceived(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int onData(nghttp2_session*, uint8_t flags, int32_t stream_id, const uint8_t* data,
                    size_t length, void* user);
  static int onStreamClosed(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user);
  static ssize_t readBody(nghttp2_session*, int32_t stream_id, uint8_t* buffer, size_t length,
                          uint32_t* flags, nghttp2_data_source* source, void* user);

  bool submitRequest();
  void answerHead(bool end_stream);
  void answerEnd();

  bool secure_ = false;
  nghttp2_session* session_ = nullptr;

  // The request, parsed from its HTTP/1.1 bytes.
  http_parser parser_{};
  std::string url_;
  HeaderList fields_;
  bool value_last_ = false;
  bool head_request_ = false;
  bool has_body_ = false;
  bool request_ended_ = false;
  bool submit_failed_ = false;
  int32_t stream_id_ = -1;
  std::string body_;  ///< request body not yet taken by nghttp2
  size_t body_pos_ = 0;

  // The answer.
  std::string* answer_ = nullptr;  ///< where receive() puts the HTTP/1.1 bytes
  HeaderList received_;            ///< the fields of the HEADERS frame being read
  int status_ = 0;
  bool head_sent_ = false;
  bool chunked_ = false;
  bool answered_ = false;  ///< the whole answer was handed over
  bool clean_close_ = false;
  bool goaway_ = false;
  bool trailers_dropped_ = false;
  const char* failure_ = nullptr;
};

}  // namespace strangler::proxy
