#pragma once

#include <http_parser.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "h2_session.h"
#include "strangler/proxy/cidr.h"
#include "strangler/proxy/shadow_sink.h"
#include "tls.h"
#include "upstream_connection.h"
#include "worker.h"

namespace strangler::proxy {

/// A client connection: parses requests (one at a time; pipelined ones wait), routes them and
/// relays the upstream's response.
class ClientConnection : public Pollable {
 public:
  /// kTunnel: an upgrade was answered 101; bytes pass both ways untouched (client_tunnel.cpp).
  enum class State { kReading, kProxying, kClosing, kTunnel };
  /// What the connection does with an upstream's response head.
  enum class HeadVerdict { kRelay, kRelayNoBody, kAbandon };

  ClientConnection(Worker& worker, int client_fd, std::string peer)
      : worker_(worker), peer_(std::move(peer)), peer_ip_(parseIp(peer_)) {
    fd = client_fd;
    http_parser_init(&parser_, HTTP_REQUEST);
    parser_.data = this;
    deadline_ = worker_.now() + std::chrono::milliseconds(idleTimeoutMs());
  }

  /// A stream client: one HTTP/2 stream's request (see H2Session), without a socket of its own.
  ClientConnection(Worker& worker, H2Stream& stream, std::string peer, bool secure)
      : ClientConnection(worker, -1, std::move(peer)) {
    stream_ = &stream;
    stream_client_ = true;
    secure_ = secure;
  }

  /// True for a stream client (not in the worker's connection set, no socket).
  bool isStream() const { return stream_client_; }
  /// The protocol the client speaks on this request.
  Metrics::Protocol protocol() const;
  /// Its stream is gone (reset, or the connection closed): reads and writes fail from now on.
  void detachStream() { stream_ = nullptr; }
  /// An HTTP/2 connection: writes the frames its streams queued (Worker::flushSoon).
  void flushPending() {
    if (h2_) flushH2();
  }

  /// An HTTPS connection: TLS with `context` before anything is read (the handshake runs in
  /// the loop like any other I/O; a failed one is counted and closes only this connection).
  void startTls(const std::shared_ptr<const TlsServerContext>& context);
  void onEvents(uint32_t events) override;
  bool checkDeadline(Worker::Clock::time_point now);
  /// The loop is stopping: closes the connection now unless a request is in flight (a parked
  /// request gets 503).
  void onStop();
  /// A parked request: routes it once its hold is over, answers 503 once it waited
  /// cutover.hold_ms.
  void checkHold(Worker::Clock::time_point now);
  /// The worker closed the connection: settles what the request counted in its route's hold.
  void onClosed();

  // Called by the upstream connection.
  HeadVerdict onResponseHead(UpstreamConnection& upstream);
  void onResponseBody(const char* data, size_t length);
  /// Sends what the last parsed upstream read produced (one send per read, not per piece).
  void relayed();
  void onResponseComplete(UpstreamConnection& upstream);
  void onUpstreamFailure(UpstreamConnection* upstream, const char* kind);
  void onAbandoned(UpstreamConnection& upstream);

  /// The upstream took a streamed body's bytes: reading the body goes on.
  void onUpstreamWritable();
  /// The upstream answered the upgrade 101 (its head is queued): the connection becomes a
  /// tunnel; `early` are bytes the upstream sent after the head.
  void onSwitched(std::string_view early);
  /// Moves a tunnel's bytes both ways as far as the sockets and the buffers allow; called on
  /// any event of either socket.
  void pumpTunnel();

  /// True while a request is being proxied or answered.
  bool inExchange() const { return state_ == State::kProxying; }

  UpstreamConnection* upstream = nullptr;

 private:
  static int onMessageBegin(http_parser* parser);
  static int onUrl(http_parser* parser, const char* at, size_t length);
  static int onHeaderField(http_parser* parser, const char* at, size_t length);
  static int onHeaderValue(http_parser* parser, const char* at, size_t length);
  static int onHeadersComplete(http_parser* parser);
  static int onBody(http_parser* parser, const char* at, size_t length);
  static int onMessageComplete(http_parser* parser);
  static const http_parser_settings& settings();

  int idleTimeoutMs() const;
  /// The connection speaks HTTP/2 from now on; `already_read` are its first bytes.
  void startH2(std::string_view already_read);
  void onH2Events(uint32_t events);
  void onH2PeerClosed();
  /// Writes what the HTTP/2 session has to send; closes the connection once it is finished.
  void flushH2();
  /// The request came over TLS (itself, or the HTTP/2 connection it is a stream of).
  bool secure() const { return tls_ != nullptr || secure_; }
  /// Drives the TLS handshake on; true once it is done (the connection may be closed when not).
  bool handshake();
  /// recv()/send() on the socket, through TLS on an HTTPS connection.
  ssize_t receive(char* buffer, size_t size);
  ssize_t transmit(const char* data, size_t size);
  void readAll();
  void processInput();
  void processLoop();
  /// Normalizes the request target and decides the route, as soon as the head is read.
  void routeRequest();
  /// Parks the request when its route's write hold is on and it is unsafe; otherwise counts
  /// an unsafe request in flight on its route. True when parked.
  bool holdIfFenced();
  void admitUnsafe();
  void endUnsafe();
  void releaseParked();
  void refuseParked(bool stopping);
  /// The head is read and the request goes on: the body (if any) may come now.
  void expectBody();
  void startProxy();
  void dispatch(const std::string& upstream_name, const std::string& path, bool reset_tries);
  std::string buildRequest(const std::string& path) const;
  void respondError(int status, const std::string& code, const std::string& message,
                    std::string_view extra_headers = {});
  void finishExchange(int status);
  /// The access log's line for the request (`extra` adds fields).
  void logAccess(int status, const std::string& route, double seconds,
                 const nlohmann::json& extra = {});
  /// Ends a tunnel (both connections close): counted and logged with `reason`.
  void endTunnel(const char* reason);
  void flush();
  void queue(std::string_view bytes);
  bool sentToTarget() const;

  /// The body limit in force: the route's max_body_bytes, else the global one (0: none).
  int64_t bodyLimit() const;
  /// How much of a request body is kept (read whole first): the route's shadow.max_body_bytes,
  /// else kDefaultKeptBodyBytes (1 MiB).
  size_t keepLimit() const;
  /// Hands the body bytes the parser framed to the upstream.
  void pushBody();
  /// The whole body was read: its end goes to the upstream.
  void finishBody();
  /// The body could not be read to its end (malformed, too large, the client went away).
  void failStream();
  /// Whether the request can be sent again (a retry, a fallback): all of its body was kept.
  bool replayable() const { return !streamed_ || body_kept_; }
  /// Closes the exchange's upstream connection (it holds part of a request).
  void dropUpstream();
  /// Scans head bytes for an obs-fold (see fold_seen_); stops at the end of the head.
  void scanHead(const char* data, size_t length);
  bool peerTrusted() const;
  /// Counts head (or trailer) bytes against limits.max_header_bytes: 0, or 1 past it (431).
  int countHead(size_t length);

  Worker& worker_;
  std::unique_ptr<TlsStream> tls_;  ///< HTTPS connections only
  // HTTP/2: the session on a connection that speaks it; on each stream's own client, its stream.
  std::unique_ptr<H2Session> h2_;
  std::string h2_out_;
  size_t h2_out_pos_ = 0;
  H2Stream* stream_ = nullptr;
  bool stream_client_ = false;
  bool secure_ = false;
  bool first_request_ = true;  ///< nothing parsed yet (the HTTP/2 preface may come)
  bool h2_peer_closed_ = false;
  std::string peer_;
  std::optional<IpBytes> peer_ip_;  ///< peer_ parsed once, for trusted_proxies
  http_parser parser_{};
  std::string in_;
  size_t in_pos_ = 0;
  bool read_paused_ = false;
  bool peer_closed_ = false;
  bool in_process_input_ = false;
  std::string out_;
  size_t out_pos_ = 0;
  State state_ = State::kReading;
  Worker::Clock::time_point deadline_;

  // The request being read or proxied.
  bool message_started_ = false;
  bool message_done_ = false;
  bool reading_body_ = false;
  bool header_value_last_ = false;
  size_t header_bytes_ = 0;
  int error_status_ = 0;
  std::string error_reason_;  ///< for a 400 decided by a callback
  std::string method_;
  std::string url_;
  HeaderList headers_;
  std::string body_;
  bool had_body_framing_ = false;
  bool grpc_ = false;  ///< Content-Type application/grpc*: a call, streamed from its head
  bool keep_alive_ = true;
  int http_minor_ = 1;
  std::shared_ptr<const Runtime> runtime_;
  Decision decision_;
  bool target_ok_ = false;      ///< the target normalized (else target_error_ says why)
  bool absolute_form_ = false;  ///< "GET http://host/path": the authority is the host
  std::string absolute_host_;   ///< its authority
  std::string host_;            ///< forwarded as Host ("" : the upstream's address)
  bool head_complete_ = false;  ///< header fields after this are trailers: dropped
  // A request body is read whole before the request goes on when it is within
  // keepLimit() (kept for a retry, a fallback or a shadow copy); a larger one goes on
  // once that much was read and the rest streams to the upstream as it arrives, never held.
  bool head_ready_ = false;       ///< a body past the keep cap: processLoop() starts the proxying
  bool dispatched_ = false;       ///< the request went to an upstream (its body may still stream)
  bool streamed_ = false;         ///< this request's body streams
  bool body_done_ = false;        ///< all of it was read
  bool body_kept_ = true;         ///< body_ holds all of it so far
  bool chunked_in_ = false;       ///< framed chunked by the client: forwarded chunked
  std::string te_codings_;        ///< its Transfer-Encoding, checked ("gzip, chunked")
  uint64_t declared_length_ = 0;  ///< its Content-Length
  uint64_t body_bytes_ = 0;       ///< read so far
  std::string pending_body_;      ///< framed body bytes for the upstream, from the last parse
  bool linger_ = false;           ///< closing with the body unread: read and drop it for a moment
  bool trailers_seen_ = false;
  // The raw head is scanned for obs-fold (a field line continued on the next) before it is
  // parsed: the parser would join the two halves without the space between.
  bool scan_started_ = false;
  bool scan_after_lf_ = false;
  bool scan_done_ = false;
  bool fold_seen_ = false;
  std::string target_error_;
  std::string normalized_path_;
  std::string query_;
  bool has_query_ = false;
  // The route's write hold (fenced cutover).
  RouteHold* unsafe_hold_ = nullptr;  ///< counts this request as an unsafe one in flight
  RouteHold* parked_on_ = nullptr;    ///< set while the request is parked by this hold
  uint64_t parked_epoch_ = 0;
  Worker::Clock::time_point parked_since_;
  Worker::Clock::time_point parked_until_;  ///< then 503
  std::string forwarded_headers_;
  Worker::Clock::time_point started_;

  // The exchange with the upstream.
  std::string upstream_name_;
  std::string upstream_path_;
  std::vector<EndpointState*> tried_;
  bool retried_stale_ = false;
  bool fell_back_ = false;
  bool response_started_ = false;
  bool chunked_out_ = false;
  bool close_after_ = false;
  int status_ = 0;
  std::string error_code_;  ///< the proxy's own answer: its code and reason, for the log
  std::string error_message_;
  uint64_t response_bytes_ = 0;
  std::unique_ptr<ShadowRequest> shadow_;  ///< the copy for the shadow stage, being filled

  // An upgrade (WebSocket): the request asks to switch, and after 101 the tunnel.
  std::string upgrade_;  ///< the Upgrade header sent on ("" : not an upgrade)
  std::string tunnel_route_;
  std::string tunnel_up_;  ///< client bytes the upstream has not taken yet
  size_t tunnel_up_pos_ = 0;
  uint64_t tunnel_up_bytes_ = 0;
  bool client_eof_ = false;  ///< the client ended its side (read 0)
  bool upstream_eof_ = false;
  bool client_shut_ = false;  ///< the upstream's end was passed on to the client (its FIN)
  bool upstream_shut_ = false;
  Worker::Clock::time_point tunnel_deadline_;
  std::chrono::milliseconds tunnel_idle_{0};
};

}  // namespace strangler::proxy
