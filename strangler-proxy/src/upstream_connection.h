#pragma once

#include <http_parser.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "tls.h"
#include "worker.h"

namespace strangler::proxy {

class ClientConnection;
class H2Call;
class H2Carrier;

/// A connection to an upstream endpoint, busy with one exchange or idle in its pool.
class UpstreamConnection : public Pollable {
 public:
  enum class State { kConnecting, kBusy, kIdle };

  UpstreamConnection(Worker& worker, std::shared_ptr<EndpointState> to);
  ~UpstreamConnection() override;

  /// An upstream with "tls": the handshake runs before the first request byte is sent;
  /// `name` is the SNI and the name (or address) the certificate must carry.
  void startTls(const TlsClientContext& context, const std::string& name, std::string upstream);
  /// An upstream with "protocol": "h2": this exchange has no socket of its own and is one stream
  /// of `carrier` (see H2Call).
  void startH2(H2Carrier& carrier);
  /// HTTP/2: news for this exchange's stream (answer bytes, its end, or a failure).
  void onH2Answer();
  /// HTTP/2: the carrier failed (and is going): the exchange fails with it.
  void onCarrierFailed();
  /// HTTP/2: the carrier wrote; a body that waited for the upstream's window may go on.
  void onH2Writable();
  /// HTTP/2: the exchange is over; its stream leaves the carrier (reset if still open).
  void detachCarrier();
  void onEvents(uint32_t events) override;
  /// Starts an exchange: sends `request` and reports the response to `client`. When the
  /// request's body is still arriving (`request_complete` false), the client adds it with
  /// sendMore() and says requestDone() at its end.
  /// An `upgrade` request (WebSocket) may be answered 101: the connection then carries the
  /// client's tunnel (see ClientConnection::onSwitched) and is never reused.
  void begin(ClientConnection* client, std::string request, std::chrono::milliseconds timeout,
             std::chrono::milliseconds connect_timeout, bool head_request,
             bool request_complete = true, bool upgrade = false);
  /// More of the request (a streamed body); sent as the socket takes it.
  void sendMore(std::string_view bytes);
  void requestDone() { request_done_ = true; }
  /// Request bytes not yet taken by the socket (the client stops reading past a window).
  size_t pendingOutput() const;
  /// Stops reading (client's buffer is full) / resumes.
  void pauseReading() { read_paused_ = true; }
  void resumeReading();
  /// Fails the exchange when its deadline has passed; returns true when it did.
  bool checkDeadline(Worker::Clock::time_point now);
  /// The socket's bytes, through TLS when the upstream has "tls" (a tunnel reads and writes
  /// them directly). Like recv()/send(): -1 with errno EAGAIN when it would block.
  ssize_t receive(char* buffer, size_t size);
  ssize_t transmit(const char* data, size_t size);
  /// A tunnel's client closed its side: ends the writing half (close_notify first over TLS).
  void shutdownWrite();

  Worker& worker_;
  std::shared_ptr<EndpointState> endpoint;
  State state = State::kConnecting;
  ClientConnection* client = nullptr;
  Worker::Clock::time_point idle_since;
  Worker::Clock::time_point deadline;
  std::chrono::milliseconds timeout{0};
  size_t bytes_received = 0;
  bool head_done = false;
  bool tunnel = false;  ///< answered 101: its bytes are the client's tunnel now
  int max_idle = 64;
  std::string pool_key;  ///< its worker's idle pool (the endpoint's, per TLS context and name)

 private:
  static int onMessageBegin(http_parser* parser);
  static int onStatus(http_parser* parser, const char* at, size_t length);
  static int onHeaderField(http_parser* parser, const char* at, size_t length);
  static int onHeaderValue(http_parser* parser, const char* at, size_t length);
  static int onHeadersComplete(http_parser* parser);
  static int onBody(http_parser* parser, const char* at, size_t length);
  static int onMessageComplete(http_parser* parser);
  static const http_parser_settings& settings();

  /// True once TLS (if any) is established; drives the handshake on, fails the exchange when it
  /// fails.
  bool secured();
  void flush();
  void readAll();
  void feed(const char* data, size_t length);
  void fail(const char* kind);

  std::unique_ptr<TlsStream> tls_;
  H2Carrier* carrier_ = nullptr;  ///< HTTP/2: the connection this exchange is a stream of
  std::unique_ptr<H2Call> call_;
  std::string tls_name_;
  std::string upstream_name_;  ///< for the log line of a failed handshake
  http_parser parser_{};
  std::string out_;
  size_t out_pos_ = 0;
  bool read_paused_ = false;
  bool head_request_ = false;
  bool interim_ = false;
  bool done_ = false;
  bool abandoned_ = false;
  bool bad_head_ = false;         ///< a header field failed validation
  bool request_done_ = true;      ///< the whole request was handed over (else: not reusable)
  bool upgrade_request_ = false;  ///< a 101 answers it for good (not an interim response)
  bool header_value_last_ = false;
  bool trailer_value_last_ = false;
  size_t header_bytes_ = 0;

 public:
  int status = 0;
  std::string reason;
  HeaderList headers;
  HeaderList trailers;  ///< a chunked answer's, after its last chunk
  bool chunked = false;
  bool has_content_length = false;
};

}  // namespace strangler::proxy
