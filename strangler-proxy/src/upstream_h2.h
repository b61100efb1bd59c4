#pragma once

#include <http_parser.h>
#include <nghttp2/nghttp2.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "http_util.h"
#include "tls.h"
#include "worker.h"

namespace strangler::proxy {

class H2Carrier;
class UpstreamConnection;

/// HTTP/2 to an upstream with "protocol": "h2" (nghttp2, client side). The request path speaks
/// HTTP/1.1 to every upstream; for this one, an exchange (an UpstreamConnection without a
/// socket of its own) hands its request's HTTP/1.1 bytes to an H2Call, which sends them as
/// HEADERS and DATA on a stream of a shared H2Carrier connection and gives the answer back as
/// HTTP/1.1 bytes for the exchange's response parser: chunked unless it has a length (and
/// announces no trailers), its trailers after the last chunk — which is how gRPC's `grpc-status`
/// reaches the client, over HTTP/1.1 as over HTTP/2.
///
/// Many calls share one connection (up to the upstream's SETTINGS_MAX_CONCURRENT_STREAMS, at
/// most kMaxStreams), as gRPC servers expect: a new carrier is opened only when every open one is
/// full. Memory per call is bounded by flow control: the stream's window (kStreamWindow) is given
/// back only as the exchange takes the answer, so a slow client slows its own stream's sender;
/// the request body waits for the upstream's window in at most kStreamWindow (the exchange's
/// pendingOutput()). A failed carrier fails its calls; a reset stream fails only its own.
class H2Call {
 public:
  H2Call(H2Carrier& carrier, UpstreamConnection& exchange, bool head_request);
  ~H2Call();
  H2Call(const H2Call&) = delete;
  H2Call& operator=(const H2Call&) = delete;

  /// The request's HTTP/1.1 bytes, head and body, as the request path writes them (any split).
  /// False: they do not parse or cannot be sent (never expected: the proxy wrote them).
  bool request(std::string_view bytes);
  /// Request body bytes not yet taken by nghttp2 (the upstream's window is closed).
  size_t pendingBody() const { return body_.size() - body_pos_; }
  /// The answer's HTTP/1.1 bytes received so far and not yet taken; taking them gives their
  /// flow-control window back.
  std::string takeAnswer();
  bool hasAnswer() const { return !answer_.empty(); }
  /// Set when the stream ended without a whole answer: "reset" (RST_STREAM), "closed" (refused
  /// or past a GOAWAY: never processed), or the carrier's failure. nullptr otherwise.
  const char* failure() const { return failure_; }
  /// True once after an answer's trailers were dropped (a length, and no trailers announced).
  bool takeTrailersDropped() {
    const bool dropped = trailers_dropped_;
    trailers_dropped_ = false;
    return dropped;
  }
  UpstreamConnection& exchange() { return exchange_; }
  /// DATA bytes received whose window was not given back (the exchange ends without them).
  size_t takeUnconsumed() {
    const size_t left = unconsumed_;
    unconsumed_ = 0;
    return left;
  }
  int32_t streamId() const { return stream_id_; }
  /// The stream was closed (on either side's word): nothing to reset.
  bool closedByUpstream() const { return closed_; }

  // From the carrier's nghttp2 callbacks.
  void onHeader(std::string_view name, std::string_view value);
  void onHeadersFrame(bool end_stream);
  void onData(std::string_view bytes);
  void onDataEnd();
  void onClosed(uint32_t error_code);
  void fail(const char* kind);
  ssize_t readBody(uint8_t* buffer, size_t length, uint32_t* flags);

 private:
  static int onUrl(http_parser* parser, const char* at, size_t length);
  static int onHeaderField(http_parser* parser, const char* at, size_t length);
  static int onHeaderValue(http_parser* parser, const char* at, size_t length);
  static int onHeadersComplete(http_parser* parser);
  static int onBody(http_parser* parser, const char* at, size_t length);
  static int onMessageComplete(http_parser* parser);
  static const http_parser_settings& requestSettings();

  void submit();
  void answerHead(bool end_stream);
  void answerEnd();

  H2Carrier& carrier_;
  UpstreamConnection& exchange_;

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
  std::string answer_;     ///< HTTP/1.1 bytes not yet taken by the exchange
  size_t unconsumed_ = 0;  ///< DATA bytes in answer_ whose window is not given back yet
  HeaderList received_;    ///< the fields of the HEADERS frame being read
  int status_ = 0;
  bool head_sent_ = false;
  bool chunked_ = false;
  bool answered_ = false;  ///< the whole answer is in answer_
  bool trailers_dropped_ = false;
  bool closed_ = false;
  const char* failure_ = nullptr;
};

/// One HTTP/2 connection to an upstream endpoint, carrying the streams of many calls.
class H2Carrier : public Pollable {
 public:
  static constexpr uint32_t kMaxStreams = 100;
  static constexpr int32_t kStreamWindow = 256 * 1024;
  static constexpr int32_t kConnectionWindow = 16 * 1024 * 1024;

  H2Carrier(Worker& worker, std::shared_ptr<EndpointState> endpoint, std::string pool_key,
            std::string upstream_name);
  ~H2Carrier() override;

  /// Over TLS: ALPN offers "h2" alone; a server that does not choose it fails the calls.
  void startTls(const TlsClientContext& context, const std::string& name);
  /// Creates the socket and starts connecting; false when no socket could be had.
  bool connect(std::chrono::milliseconds connect_timeout);
  void onEvents(uint32_t events) override;
  /// Can take another call (connected or connecting, no GOAWAY, under its stream limit).
  bool usable() const;
  bool established() const { return established_; }
  /// Over TLS: the :scheme of its requests is https.
  bool secure() const { return tls_ != nullptr; }
  void attach(H2Call& call);
  /// The call's exchange is over: its stream is reset if still open.
  void detach(H2Call& call);
  /// Submits a call's request; the stream id, or a negative nghttp2 error.
  int32_t submit(H2Call& call, const std::vector<nghttp2_nv>& nva, bool has_body);
  void resume(int32_t stream_id);
  void consume(int32_t stream_id, size_t bytes);
  /// Writes what nghttp2 has to send (as far as the socket takes it).
  void flush();
  /// Connect timeout, and the close of a connection idle past kIdleTimeout (or asked to stop).
  void checkDeadline(Worker::Clock::time_point now);
  /// Ends the connection and fails every call on it.
  void fail(const char* kind);
  const std::string& poolKey() const { return pool_key_; }

 private:
  static int onHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
                      size_t name_length, const uint8_t* value, size_t value_length, uint8_t flags,
                      void* user);
  static int onFrameReceived(nghttp2_session*, const nghttp2_frame* frame, void* user);
  static int onData(nghttp2_session*, uint8_t flags, int32_t stream_id, const uint8_t* data,
                    size_t length, void* user);
  static int onStreamClosed(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user);
  static ssize_t readBody(nghttp2_session*, int32_t stream_id, uint8_t* buffer, size_t length,
                          uint32_t* flags, nghttp2_data_source* source, void* user);

  H2Call* call(int32_t stream_id);
  void touch(H2Call* call);
  bool secured();
  void readAll();
  /// Hands the answers that arrived to their exchanges (which may end, and detach, meanwhile).
  void deliver();

  Worker& worker_;
  std::shared_ptr<EndpointState> endpoint_;
  std::string pool_key_;
  std::string upstream_name_;
  std::unique_ptr<TlsStream> tls_;
  std::string tls_name_;
  nghttp2_session* session_ = nullptr;
  bool connecting_ = true;
  bool established_ = false;  ///< connected (and TLS done): the first flush was made
  bool goaway_ = false;
  Worker::Clock::time_point connect_deadline_;
  Worker::Clock::time_point idle_since_;
  std::vector<H2Call*> calls_;
  /// The call of each stream, by id. Its own map, not nghttp2's stream user data: a call can end
  /// while its HEADERS still waits in nghttp2's queue (no stream yet whose data could be cleared),
  /// and nghttp2 would then open the stream with a pointer to a call that is gone.
  std::unordered_map<int32_t, H2Call*> by_stream_;
  std::vector<H2Call*> touched_;  ///< calls with news from the last read
  std::string wire_;              ///< frames not yet taken by the socket
  size_t wire_pos_ = 0;
};

}  // namespace strangler::proxy
