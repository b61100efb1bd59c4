// ClientConnection, the exchange with the upstream: the request as forwarded (headers,
// body framing), choosing an endpoint, relaying the answer, and retries and fallbacks when
// an upstream fails.
#include "client_connection.h"

#include <algorithm>
#include <cstdio>

#include "forwarded_headers.h"
#include "http_util.h"

namespace strangler::proxy {
namespace {

constexpr size_t kMaxPendingOutput = 1024 * 1024;  // stop reading the upstream beyond this

}  // namespace

void ClientConnection::startProxy() {
  state_ = State::kProxying;
  scan_started_ = scan_after_lf_ = scan_done_ = fold_seen_ = false;  // for the next head
  dispatched_ = true;
  if (!streamed_ || body_done_) {  // else finishBody() ends the message
    message_started_ = false;
    message_done_ = false;
  }
  worker_.shared().active_requests.fetch_add(1, std::memory_order_relaxed);
  fell_back_ = false;
  retried_stale_ = false;
  response_started_ = false;
  chunked_out_ = false;
  close_after_ = !keep_alive_ || worker_.stopping();
  status_ = 0;
  response_bytes_ = 0;
  tried_.clear();

  upgrade_.clear();
  if (parser_.upgrade) {
    // The parser stopped at this message: what follows is another protocol (or a CONNECT
    // tunnel), so the connection ends with this exchange whatever the answer.
    close_after_ = true;
    if (method_ == "CONNECT") {
      decision_ = Decision{};
      respondError(405, "method_not_allowed", "CONNECT is not supported");
      return;
    }
    // Tunnelled after a 101 (WebSocket and the like). Not h2c: HTTP/2 is spoken to the proxy,
    // not through it. Not a request with a body: there is no upgrade with one to honour.
    upgrade_ = upgradeProtocols(headers_);
    if (iequals(upgrade_, "h2c") || had_body_framing_) upgrade_.clear();
  }
  // The parser takes any digits for a version ("HTTP/9.9", HTTP/0.9 without one); forwarding
  // those as HTTP/1.1 would answer for a protocol the client did not speak.
  if (parser_.http_major != 1) {
    close_after_ = true;
    decision_ = Decision{};
    respondError(505, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are served");
    return;
  }
  size_t hosts = 0;
  std::string host;
  for (const auto& [name, value] : headers_) {
    if (iequals(name, "host")) {
      ++hosts;
      host = value;
    }
  }
  if (hosts > 1 || (hosts == 0 && http_minor_ >= 1)) {
    decision_ = Decision{};
    respondError(400, "bad_request", "a request needs exactly one Host header");
    return;
  }
  if (absolute_form_) {
    if (absolute_host_.empty() || !validHost(absolute_host_)) {
      decision_ = Decision{};
      respondError(400, "bad_request", "the request target's authority is empty or malformed");
      return;
    }
    host = absolute_host_;
  }
  if (!validHost(host)) {
    decision_ = Decision{};
    respondError(400, "bad_request", "the Host header is malformed");
    return;
  }
  if (!target_ok_) {  // routeRequest() could not normalize the target
    respondError(400, "bad_path", target_error_);
    return;
  }
  host_ = host;  // empty (HTTP/1.0 without one): buildRequest() names the upstream instead

  // Headers for the upstream: end-to-end ones as received, then the proxy's own.
  forwarded_headers_.clear();
  appendForwardedHeaders(ForwardInput{&headers_, peer_, peerTrusted(), host,
                                      std::string_view(secure() ? "https" : "http")},
                         forwarded_headers_);
  if (streamed_ && chunked_in_) {
    // Re-chunked by the proxy; codings before `chunked` ("gzip, chunked") pass on as they are.
    appendHeader(forwarded_headers_, "Transfer-Encoding", te_codings_);
  } else if (streamed_) {
    appendHeader(forwarded_headers_, "Content-Length", std::to_string(declared_length_));
  } else if (had_body_framing_ || method_ == "POST" || method_ == "PUT" || method_ == "PATCH") {
    appendHeader(forwarded_headers_, "Content-Length", "0");
  }
  if (!upgrade_.empty()) {  // hop-by-hop, so dropped above: asked again of the next hop
    appendHeader(forwarded_headers_, "Connection", "Upgrade");
    appendHeader(forwarded_headers_, "Upgrade", upgrade_);
  }

  shadow_.reset();
  // Never a tunnel, never a gRPC call (its messages are not kept, and its answer is not JSON).
  if (decision_.shadow && decision_.route != nullptr && upgrade_.empty() && !grpc_) {
    worker_.shared().metrics.recordShadowEligible(worker_.index(), decision_.route->name);
    const double sample = decision_.route->shadow ? decision_.route->shadow->sample : 1.0;
    // 53 random bits → [0, 1).
    const double draw = static_cast<double>(worker_.random() >> 11) * 0x1.0p-53;
    if (draw < sample) {
      shadow_ = std::make_unique<ShadowRequest>();
      shadow_->runtime = runtime_;
      shadow_->route = decision_.route;
      shadow_->method = method_;
      shadow_->target_path = decision_.shadow_path;
      shadow_->query = query_;
      shadow_->has_query = has_query_;
      shadow_->headers = headers_;  // the body (if kept) is added once it was all read
    }
  }

  std::string chosen = decision_.upstream;
  std::string path = decision_.path;
  if (decision_.to_target) {
    const auto* target_upstream = runtime_->upstream(chosen);
    if (target_upstream != nullptr && target_upstream->breaker &&
        !target_upstream->breaker->allow(worker_.now())) {
      // In a canary both sides serve the route, and nothing was sent yet: any request may go
      // to the monolith. Once extracted, only requests allowed to fall back may.
      const bool canary = decision_.route->stage == Stage::kCanary;
      if (decision_.fallback_upstream.empty() && !canary) {
        upstream_name_ = chosen;
        respondError(503, "circuit_open",
                     "upstream '" + chosen + "' is failing; its circuit is open");
        return;
      }
      fell_back_ = true;
      worker_.shared().metrics.recordFallback(worker_.index(), decision_.route->name,
                                              "circuit_open");
      chosen = runtime_->config->default_upstream;
      path = normalized_path_;
    }
  }
  dispatch(chosen, path, true);
}

std::string ClientConnection::buildRequest(const std::string& path) const {
  std::string request;
  request.reserve(method_.size() + path.size() + query_.size() + forwarded_headers_.size() +
                  body_.size() + 32);
  request += method_;
  request += ' ';
  request += path;
  if (has_query_) {
    request += '?';
    request += query_;
  }
  request += " HTTP/1.1\r\n";
  request += forwarded_headers_;
  if (host_.empty()) {
    // HTTP/1.1 needs a Host: an HTTP/1.0 client that sent none gets the upstream's address.
    const RuntimeUpstream* to = runtime_->upstream(upstream_name_);
    request += "Host: ";
    request += to != nullptr && !to->endpoints.empty() ? to->endpoints.front()->key : "localhost";
    request += "\r\n";
  }
  request += "\r\n";
  // A streamed body: what was kept of it so far (the rest follows through sendMore()).
  if (streamed_ && chunked_in_) {
    appendChunk(request, body_);
    if (body_done_) request += "0\r\n\r\n";
  } else {
    request += body_;
  }
  return request;
}

bool ClientConnection::sentToTarget() const {
  return decision_.to_target && !fell_back_ && upstream_name_ == decision_.upstream;
}

void ClientConnection::dispatch(const std::string& upstream_name, const std::string& path,
                                bool reset_tries) {
  const RuntimeUpstream* target = runtime_->upstream(upstream_name);
  if (target == nullptr || target->endpoints.empty()) {
    respondError(502, "no_upstream", "upstream '" + upstream_name + "' is not defined");
    return;
  }
  if (reset_tries) tried_.clear();
  upstream_name_ = upstream_name;
  upstream_path_ = path;
  // Round robin, skipping ejected endpoints and ones this request already failed on.
  const auto now_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(worker_.now().time_since_epoch())
          .count();
  const size_t count = target->endpoints.size();
  const uint64_t start = target->round_robin->fetch_add(1, std::memory_order_relaxed);
  std::shared_ptr<EndpointState> chosen;
  std::shared_ptr<EndpointState> ejected_choice;
  for (size_t i = 0; i < count; ++i) {
    const auto& endpoint = target->endpoints[(start + i) % count];
    if (std::find(tried_.begin(), tried_.end(), endpoint.get()) != tried_.end()) continue;
    if (endpoint->ejected_until_ns.load(std::memory_order_relaxed) > now_ns) {
      if (!ejected_choice) ejected_choice = endpoint;
      continue;
    }
    chosen = endpoint;
    break;
  }
  if (!chosen) chosen = ejected_choice;  // all ejected: try one anyway rather than fail blind
  if (!chosen) {
    onUpstreamFailure(nullptr, "connect");
    return;
  }
  tried_.push_back(chosen.get());
  bool reused = false;
  UpstreamConnection* connection = worker_.acquire(chosen, *target, reused);
  if (connection == nullptr) {
    onUpstreamFailure(nullptr, "connect");
    return;
  }
  upstream = connection;
  // Built for each try (from the kept body) and moved into the connection: one copy of a body.
  connection->begin(this, buildRequest(path), std::chrono::milliseconds(target->config->timeout_ms),
                    std::chrono::milliseconds(target->config->connect_timeout_ms),
                    method_ == "HEAD", !streamed_ || body_done_, !upgrade_.empty());
}

ClientConnection::HeadVerdict ClientConnection::onResponseHead(UpstreamConnection& from) {
  const RuntimeUpstream* current = runtime_->upstream(upstream_name_);
  const bool to_target = sentToTarget();
  if (to_target && current != nullptr && current->breaker) {
    if (from.status >= 500) {
      current->breaker->onFailure(worker_.now());
    } else {
      current->breaker->onSuccess();
    }
  }
  if (from.status >= 500)
    worker_.shared().metrics.recordUpstreamError(worker_.index(), upstream_name_, "5xx");
  if (to_target && from.status >= 500 && !decision_.fallback_upstream.empty()) {
    if (replayable()) return HeadVerdict::kAbandon;
    worker_.shared().metrics.recordClientEvent(worker_.index(), "body_not_kept");
  }

  status_ = from.status;
  response_started_ = true;
  if (from.status == 101) {
    // The switch (only ever for an upgrade request): relayed with the fields that make it one.
    std::string head = "HTTP/1.1 101 Switching Protocols\r\n";
    for (const auto& [name, value] : from.headers) {
      if (isHopByHop(name) || namedByConnection(from.headers, name)) continue;
      if (iequals(name, "x-strangler-route") || iequals(name, "x-strangler-upstream")) continue;
      appendHeader(head, name, value);
    }
    appendHeader(head, "Connection", "Upgrade");
    appendHeader(head, "Upgrade", upgradeProtocols(from.headers));
    head += "\r\n";
    queue(head);
    return HeadVerdict::kRelayNoBody;
  }
  if (shadow_) {
    shadow_->monolith_upstream = upstream_name_;
    shadow_->monolith_path = upstream_path_;
    shadow_->monolith.status = from.status;
    shadow_->monolith.headers = from.headers;
  }
  const bool no_body = method_ == "HEAD" || from.status == 204 || from.status == 304;
  const bool delimited_by_close = !from.chunked && !from.has_content_length && !no_body;
  chunked_out_ = false;
  if ((from.chunked || delimited_by_close) && !no_body) {
    if (http_minor_ >= 1) {
      chunked_out_ = true;
    } else {
      close_after_ = true;  // an HTTP/1.0 client reads to the close
    }
  }
  if (worker_.stopping()) close_after_ = true;

  std::string head;
  head.reserve(512);
  head += "HTTP/1.1 ";
  head += std::to_string(from.status);
  head += ' ';
  head += from.reason.empty() ? reasonPhrase(from.status) : from.reason;
  head += "\r\n";
  for (const auto& [name, value] : from.headers) {
    if (iequals(name, "content-length")) {
      // 204 and 304 have no body whatever their fields say, but a client parser may read one
      // Content-Length says is there (http_parser does; RFC 9110 §8.6 forbids it on a 204):
      // such a client would take the next answer's bytes as this one's body.
      if (from.chunked || chunked_out_ || from.status == 204 || from.status == 304) continue;
    } else if (isHopByHop(name) || namedByConnection(from.headers, name)) {
      continue;
    }
    if (iequals(name, "x-strangler-route") || iequals(name, "x-strangler-upstream")) continue;
    head += name;
    head += ": ";
    head += value;
    head += "\r\n";
  }
  if (chunked_out_) head += "Transfer-Encoding: chunked\r\n";
  if (runtime_->config->debug_headers) {
    head += "X-Strangler-Route: ";
    head += decision_.route != nullptr ? decision_.route->name : "-";
    head += "\r\nX-Strangler-Upstream: ";
    head += upstream_name_;
    head += "\r\n";
  }
  if (close_after_) {
    head += "Connection: close\r\n";
  } else if (http_minor_ == 0) {
    head += "Connection: keep-alive\r\n";
  }
  head += "\r\n";
  queue(head);  // sent with the first body bytes, after this read is parsed (relayed())
  return no_body ? HeadVerdict::kRelayNoBody : HeadVerdict::kRelay;
}

void ClientConnection::onResponseBody(const char* data, size_t length) {
  if (closed || length == 0) return;
  response_bytes_ += length;
  if (shadow_) {
    if (shadow_->monolith.body.size() + length > kShadowCaptureBytes) {
      worker_.shared().shadow->tooLarge(shadow_->route->name);
      shadow_.reset();
    } else {
      shadow_->monolith.body.append(data, length);
    }
  }
  if (chunked_out_) {
    appendChunk(out_, std::string_view(data, length));
  } else {
    queue(std::string_view(data, length));
  }
}

void ClientConnection::relayed() {
  if (closed || out_pos_ >= out_.size()) return;
  flush();
  if (!closed && upstream != nullptr && out_.size() - out_pos_ > kMaxPendingOutput) {
    upstream->pauseReading();
  }
}

void ClientConnection::onResponseComplete(UpstreamConnection& from) {
  upstream = nullptr;
  if (closed) return;
  if (chunked_out_) {
    // The last chunk, with the answer's trailers (gRPC's grpc-status among them): end-to-end
    // fields only, never framing, routing or connection ones (RFC 9110 §6.5.1).
    std::string last = "0\r\n";
    for (const auto& [name, value] : from.trailers) {
      if (!isToken(name) || !isFieldValue(value) || isHopByHop(name) || iequals(name, "host") ||
          namedByConnection(from.headers, name) || startsWithIgnoreCase(name, "x-strangler-"))
        continue;
      appendHeader(last, name, value);
    }
    last += "\r\n";
    queue(last);
  }
  if (shadow_ && streamed_) {
    if (body_kept_ && body_done_) {
      shadow_->body = body_;
    } else {
      worker_.shared().shadow->tooLarge(shadow_->route->name);
      shadow_.reset();
    }
  }
  // The client has its answer: only now is the copy offered, so the shadow side can never
  // delay or fail it.
  if (shadow_) worker_.shared().shadow->offer(std::move(*shadow_));
  shadow_.reset();
  finishExchange(status_);
}

void ClientConnection::onAbandoned(UpstreamConnection&) {
  upstream = nullptr;
  if (closed) return;
  fell_back_ = true;
  worker_.shared().metrics.recordFallback(
      worker_.index(), decision_.route != nullptr ? decision_.route->name : "-", "5xx");
  dispatch(decision_.fallback_upstream, decision_.fallback_path, true);
}

void ClientConnection::onUpstreamFailure(UpstreamConnection* from, const char* kind) {
  upstream = nullptr;
  if (closed) return;
  const std::string_view what(kind);
  worker_.shared().metrics.recordUpstreamError(worker_.index(), upstream_name_, what);
  if (response_started_) {
    // Part of the response is already with the client: the only honest signal left is to
    // cut the connection.
    status_ = 502;
    close_after_ = true;
    worker_.closeClient(this);
    return;
  }
  // A body too large to keep went (partly) to this upstream: it cannot be sent again.
  const bool replay = replayable();
  const bool connect_failed = what == "connect" || what == "connect_timeout";
  if (connect_failed && from != nullptr) {
    const RuntimeUpstream* current = runtime_->upstream(upstream_name_);
    const int eject_ms = current != nullptr ? current->config->eject_ms : 0;
    if (eject_ms > 0) {
      const auto until = worker_.now() + std::chrono::milliseconds(eject_ms);
      from->endpoint->ejected_until_ns.store(
          std::chrono::duration_cast<std::chrono::nanoseconds>(until.time_since_epoch()).count(),
          std::memory_order_relaxed);
    }
  }
  // Nothing was sent, or a kept-alive connection was closed under us before answering:
  // another endpoint (or a fresh connection) can take the request safely.
  const RuntimeUpstream* current = runtime_->upstream(upstream_name_);
  if (replay && connect_failed && current != nullptr && tried_.size() < current->endpoints.size()) {
    dispatch(upstream_name_, upstream_path_, false);
    return;
  }
  const bool stale = from != nullptr && from->bytes_received == 0 &&
                     (what == "closed" || what == "reset" || what == "send");
  // A failed write means the upstream never got the whole request, so even a non-idempotent
  // one can be sent again.
  if (replay && stale && !retried_stale_ && (isIdempotent(method_) || what == "send")) {
    retried_stale_ = true;
    tried_.clear();
    dispatch(upstream_name_, upstream_path_, false);
    return;
  }
  if (sentToTarget() && current != nullptr && current->breaker)
    current->breaker->onFailure(worker_.now());
  if (sentToTarget() && !decision_.fallback_upstream.empty()) {
    if (replay) {
      fell_back_ = true;
      worker_.shared().metrics.recordFallback(worker_.index(), decision_.route->name, kind);
      dispatch(decision_.fallback_upstream, decision_.fallback_path, true);
      return;
    }
    worker_.shared().metrics.recordClientEvent(worker_.index(), "body_not_kept");
  }
  const bool timed_out = what == "timeout" || what == "connect_timeout";
  respondError(timed_out ? 504 : 502, timed_out ? "upstream_timeout" : "upstream_unavailable",
               "upstream '" + upstream_name_ + "' " +
                   (timed_out ? std::string("did not answer in time")
                              : "failed (" + std::string(kind) + ")"));
}

}  // namespace strangler::proxy
