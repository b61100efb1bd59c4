#pragma once

#include <http_parser.h>
#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "http_util.h"
#include "worker.h"

namespace strangler::proxy {

class ClientConnection;
class H2Session;

/// One HTTP/2 stream: the request it carries, written as HTTP/1.1 bytes for its stream client
/// to read, and the stream client's HTTP/1.1 answer, framed back into HEADERS and DATA.
struct H2Stream {
  H2Session* session = nullptr;
  int32_t id = 0;
  ClientConnection* client = nullptr;  ///< the request's own ClientConnection (no socket)

  // The request.
  std::string method, path, authority, scheme;
  HeaderList headers;
  std::string cookies;      ///< cookie fields, joined with "; " (RFC 9113 §8.2.3)
  bool started = false;     ///< the head was handed to the client
  bool chunked = false;     ///< a body without content-length: handed on chunked
  bool input_done = false;  ///< END_STREAM seen
  std::string input;        ///< HTTP/1.1 bytes not yet read by the client
  size_t input_pos = 0;
  size_t unconsumed = 0;  ///< DATA bytes received, not yet given back to the flow-control window

  // The answer.
  http_parser parser{};
  bool head_request = false;
  int status = 0;
  HeaderList response_headers;
  HeaderList response_trailers;  ///< after a chunked answer's last chunk: sent as trailers
  bool field_last = false;
  bool head_parsed = false;
  bool submitted = false;
  bool body_done = false;
  bool blocked = false;   ///< the client was told "would block": woken when the body drains
  bool sent_all = false;  ///< the answer's end went to nghttp2
  std::string body;       ///< DATA not yet taken by nghttp2
  size_t body_pos = 0;
};

/// HTTP/2 on one client connection (nghttp2, server side): over TLS when ALPN chose "h2", in clear
/// text when the connection opened with the HTTP/2 preface (prior knowledge). Each stream is a
/// request to the same request path as HTTP/1.1 — a ClientConnection without a socket is given the
/// request as HTTP/1.1 bytes and answers in HTTP/1.1 — so routing, canary, shadow, fallback, the
/// write hold, limits, metrics and the access log are the same code for both protocols.
/// Memory is bounded: at most kMaxStreams streams, each with a flow-control window of 64 KiB
/// given back only as its request reads the body, and at most kStreamBuffer of answer per stream
/// (past it the stream client stops reading its upstream).
class H2Session {
 public:
  static constexpr uint32_t kMaxStreams = 100;
  static constexpr size_t kStreamBuffer = 256 * 1024;

  H2Session(ClientConnection& connection, Worker& worker, std::string peer, bool secure);
  ~H2Session();
  H2Session(const H2Session&) = delete;
  H2Session& operator=(const H2Session&) = delete;

  /// Sends the server's SETTINGS and takes `already_read` (the bytes read before HTTP/2 was
  /// known: the preface and what followed).
  void start(std::string_view already_read);
  /// Bytes read from the socket. False: a connection error (GOAWAY is queued; flush, then close).
  bool feed(const char* data, size_t length);
  /// What nghttp2 has to send, as far as `budget` bytes.
  void takeOutput(std::string& out, size_t budget);
  /// Nothing more to read or write: the connection can close.
  bool finished() const;
  /// No request in progress: no stream with a request being served or an answer being sent (a
  /// stream whose HEADERS never ended counts for nothing: it cannot hold a connection open).
  bool idle() const;
  /// Graceful end: GOAWAY with the last stream id; open streams finish.
  void goAway();
  /// The client closed its side: streams still waiting for request bytes end (reset), the
  /// others finish; GOAWAY.
  void peerClosed();
  /// Applies the request timeouts to each stream's request.
  void checkDeadlines(Worker::Clock::time_point now);
  /// Wakes the stream clients that have input or room for output (after feed()/takeOutput()).
  void wake();

  // For the stream clients.
  ssize_t readRequest(H2Stream& stream, char* buffer, size_t size);
  ssize_t writeResponse(H2Stream& stream, const char* data, size_t size);
  void clientClosed(H2Stream& stream);

 private:
  static int onBeginHeaders(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      size_t name_length, const uint8_t* value, size_t value_length, uint8_t flags,
                      void* user);
  static int onFrameReceived(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int onData(nghttp2_session*, uint8_t flags, int32_t stream_id, const uint8_t* data,
                    size_t length, void* user);
  static int onFrameSent(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int onStreamClosed(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user);
  static ssize_t readBody(nghttp2_session*, int32_t stream_id, uint8_t* buffer, size_t length,
                          uint32_t* flags, nghttp2_data_source* source, void* user);

  H2Stream* stream(int32_t id);
  void beginRequest(H2Stream& stream);
  void endInput(H2Stream& stream);
  void submitResponse(H2Stream& stream);
  void markAwake(H2Stream& stream);

  ClientConnection& connection_;
  Worker& worker_;
  std::string peer_;
  bool secure_ = false;
  nghttp2_session* session_ = nullptr;
  std::map<int32_t, std::unique_ptr<H2Stream>> streams_;
  std::vector<std::unique_ptr<H2Stream>> closed_;  ///< freed once no callback is running
  std::vector<int32_t> awake_;                     ///< streams to wake after the current call
};

}  // namespace strangler::proxy
