#pragma once

#include <http_parser.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "strangler/proxy/proxy_server.h"

namespace strangler::proxy {

class ClientConnection;
class H2Carrier;
class UpstreamConnection;

/// Something registered with the loop's epoll set.
class Pollable {
 public:
  virtual ~Pollable() = default;
  /// Handles the events epoll reported for this fd.
  virtual void onEvents(uint32_t events) = 0;

  int fd = -1;
  bool closed = false;
  bool hangup = false;  ///< the peer closed or reset (seen in an event): read to the end
};

/// One event loop thread: accepts on its own SO_REUSEPORT listeners (plain and, when configured,
/// HTTPS), serves client connections
/// and keeps per-endpoint pools of idle upstream connections. Everything it owns is touched
/// only by its thread; other threads only call requestStop().
class Worker {
 public:
  using Clock = std::chrono::steady_clock;

  Worker(size_t index, int listen_fd, std::shared_ptr<ProxyShared> shared, int tls_listen_fd = -1);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  /// The loop; returns after requestStop() once connections are drained or the grace ran out.
  void run();
  /// Asks the loop to stop accepting and finish what is in flight within `grace`.
  void requestStop(std::chrono::milliseconds grace);

  // Used by the connections.
  Clock::time_point now() const { return now_; }
  size_t index() const { return index_; }
  bool stopping() const { return stopping_; }
  ProxyShared& shared() { return *shared_; }
  std::shared_ptr<const Runtime> runtime();
  uint64_t random();
  bool add(Pollable* pollable);
  /// An idle connection to `endpoint` of `upstream`, or a new one (connecting; over TLS when the
  /// upstream has "tls"); nullptr when no socket could be created. `reused` tells which.
  UpstreamConnection* acquire(const std::shared_ptr<EndpointState>& endpoint,
                              const RuntimeUpstream& upstream, bool& reused);
  /// An exchange on an HTTP/2 upstream connection (acquire() for "protocol": "h2").
  UpstreamConnection* acquireStream(const std::shared_ptr<EndpointState>& endpoint,
                                    const RuntimeUpstream& upstream, const std::string& pool_key,
                                    bool& reused);
  /// Gives a connection back to its endpoint's idle pool (or closes it).
  void release(UpstreamConnection* connection);
  void closeClient(ClientConnection* client);
  void closeUpstream(UpstreamConnection* upstream);
  /// Takes an HTTP/2 upstream connection out of its pool and closes it (its calls are failed
  /// by the carrier itself).
  void closeCarrier(H2Carrier* carrier);
  /// Keeps track of a client whose request a route's write hold parked / let go.
  void park(ClientConnection* client) { parked_.insert(client); }
  void unpark(ClientConnection* client) { parked_.erase(client); }
  /// An HTTP/2 connection whose streams queued frames: written once this batch of events is
  /// handled (never from inside a stream's own call, which the write could end).
  void flushSoon(ClientConnection* connection) { flush_soon_.push_back(connection); }
  /// The same for an HTTP/2 upstream connection: the frames of all the streams that had
  /// something to send in this batch go out together.
  void flushSoon(H2Carrier* carrier) { carriers_to_flush_.push_back(carrier); }

 private:
  /// Accepts what waits on `listen_fd` (the HTTPS one: `tls`).
  void acceptAll(int listen_fd, bool tls);
  void pauseAccepting();
  void resumeAccepting();
  /// Answers 503 on a connection past limits.max_connections and closes it (lingering).
  void refuseConnection(int fd);
  /// Closes the refused connections whose client closed or whose second passed (all: every one).
  void closeLingering(bool all);
  void onTick();
  /// Lets parked requests go whose hold is over, answers those that waited too long.
  void checkParked();
  void flushPending();
  void beginStop();
  /// Takes a connection's fd out of the epoll set and closes it.
  void forget(int fd);
  void reap();

  size_t index_;
  int epoll_fd_ = -1;
  int listen_fd_ = -1;
  int tls_listen_fd_ = -1;
  int wake_fd_ = -1;
  std::shared_ptr<ProxyShared> shared_;
  std::shared_ptr<const Runtime> runtime_;
  uint64_t generation_ = 0;
  uint64_t random_state_;
  Clock::time_point now_;
  Clock::time_point last_tick_;
  std::unordered_set<ClientConnection*> clients_;
  std::unordered_set<ClientConnection*> parked_;
  std::vector<ClientConnection*> flush_soon_;
  std::vector<H2Carrier*> carriers_to_flush_;
  std::unordered_set<UpstreamConnection*> upstreams_;
  std::unordered_map<std::string, std::vector<UpstreamConnection*>> idle_;
  /// HTTP/2 upstream connections, each carrying many exchanges' streams, by pool key.
  std::unordered_map<std::string, std::vector<H2Carrier*>> carriers_;
  std::vector<Pollable*> graveyard_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<int64_t> grace_ms_{0};
  bool stopping_ = false;
  Clock::time_point stop_deadline_;
  struct Lingering {
    int fd;
    Clock::time_point until;
  };
  static constexpr size_t kMaxLingering = 256;
  std::vector<Lingering> lingering_;  ///< refused connections, answered, waiting to close
  bool accept_paused_ = false;
  Clock::time_point accept_paused_until_;
};

}  // namespace strangler::proxy
