#include "worker.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "client_connection.h"
#include "http_util.h"
#include "upstream_connection.h"
#include "upstream_h2.h"

namespace strangler::proxy {
namespace {

constexpr auto kTick = std::chrono::milliseconds(20);
// epoll tags for the two fds that are not connections (real pointers are never this small).
constexpr uint64_t kListenTag = 1;
constexpr uint64_t kWakeTag = 2;
constexpr uint64_t kTlsListenTag = 3;

void setNoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

std::string peerAddress(const sockaddr_storage& address) {
  char text[INET6_ADDRSTRLEN] = {0};
  if (address.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(address).sin_addr, text, sizeof text);
  } else if (address.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(address).sin6_addr, text,
              sizeof text);
  }
  return text;
}

}  // namespace

Worker::Worker(size_t index, int listen_fd, std::shared_ptr<ProxyShared> shared, int tls_listen_fd)
    : index_(index),
      listen_fd_(listen_fd),
      tls_listen_fd_(tls_listen_fd),
      shared_(std::move(shared)) {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  random_state_ = 0x9e3779b97f4a7c15ULL ^ (static_cast<uint64_t>(index) << 32) ^
                  static_cast<uint64_t>(Clock::now().time_since_epoch().count());
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = kListenTag;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, listen_fd_, &event);
  if (tls_listen_fd_ >= 0) {
    event.data.u64 = kTlsListenTag;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, tls_listen_fd_, &event);
  }
  event.data.u64 = kWakeTag;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &event);
  shared_->holds->addWaker(wake_fd_);  // a released hold wakes the loop to let requests go
  now_ = Clock::now();
  last_tick_ = now_;
}

Worker::~Worker() {
  shared_->holds->removeWaker(wake_fd_);
  for (auto* client : clients_) {
    ::close(client->fd);
    delete client;
  }
  for (auto* upstream : upstreams_) {
    if (upstream->fd >= 0) ::close(upstream->fd);
    delete upstream;
  }
  for (auto& [key, carriers] : carriers_) {
    for (auto* carrier : carriers) {
      ::close(carrier->fd);
      delete carrier;
    }
  }
  reap();
  closeLingering(true);
  if (listen_fd_ >= 0) ::close(listen_fd_);
  if (tls_listen_fd_ >= 0) ::close(tls_listen_fd_);
  ::close(wake_fd_);
  ::close(epoll_fd_);
}

std::shared_ptr<const Runtime> Worker::runtime() {
  const uint64_t generation = shared_->generation();
  if (generation != generation_ || !runtime_) {
    runtime_ = shared_->current();
    generation_ = generation;
  }
  return runtime_;
}

uint64_t Worker::random() {
  random_state_ ^= random_state_ << 13;
  random_state_ ^= random_state_ >> 7;
  random_state_ ^= random_state_ << 17;
  return random_state_;
}

bool Worker::add(Pollable* pollable) {
  epoll_event event{};
  event.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  event.data.ptr = pollable;
  return epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, pollable->fd, &event) == 0;
}

void Worker::requestStop(std::chrono::milliseconds grace) {
  grace_ms_.store(grace.count());
  stop_requested_.store(true);
  const uint64_t one = 1;
  [[maybe_unused]] const auto written = ::write(wake_fd_, &one, sizeof one);
}

void Worker::beginStop() {
  stopping_ = true;
  stop_deadline_ = now_ + std::chrono::milliseconds(grace_ms_.load());
  for (int* fd : {&listen_fd_, &tls_listen_fd_}) {
    if (*fd < 0) continue;
    if (!accept_paused_) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, *fd, nullptr);
    ::close(*fd);
    *fd = -1;
  }
  std::vector<ClientConnection*> clients(clients_.begin(), clients_.end());
  for (auto* client : clients)
    client->onStop();
  for (auto& [key, pool] : idle_) {
    std::vector<UpstreamConnection*> connections = pool;
    for (auto* connection : connections)
      closeUpstream(connection);
  }
}

void Worker::run() {
  constexpr int kMaxEvents = 256;
  epoll_event events[kMaxEvents];
  runtime();
  for (;;) {
    if (stop_requested_.load() && !stopping_) {
      now_ = Clock::now();
      beginStop();
    }
    if (stopping_ && (clients_.empty() || now_ >= stop_deadline_)) break;
    const int timeout_ms = static_cast<int>(kTick.count());
    const int n = epoll_wait(epoll_fd_, events, kMaxEvents, timeout_ms);
    now_ = Clock::now();
    bool woken = false;
    for (int i = 0; i < n; ++i) {
      if (events[i].data.u64 == kListenTag) {
        if (listen_fd_ >= 0) acceptAll(listen_fd_, false);
        continue;
      }
      if (events[i].data.u64 == kTlsListenTag) {
        if (tls_listen_fd_ >= 0) acceptAll(tls_listen_fd_, true);
        continue;
      }
      if (events[i].data.u64 == kWakeTag) {
        uint64_t value = 0;
        [[maybe_unused]] const auto got = ::read(wake_fd_, &value, sizeof value);
        woken = true;
        continue;
      }
      auto* pollable = static_cast<Pollable*>(events[i].data.ptr);
      if (pollable != nullptr && !pollable->closed) pollable->onEvents(events[i].events);
    }
    if (now_ - last_tick_ >= kTick) {
      last_tick_ = now_;
      onTick();
    } else if (woken) {
      checkParked();
    }
    flushPending();
    reap();
  }
}

void Worker::onTick() {
  if (!lingering_.empty()) closeLingering(false);
  if (accept_paused_ && now_ >= accept_paused_until_) resumeAccepting();
  checkParked();
  std::vector<UpstreamConnection*> upstreams(upstreams_.begin(), upstreams_.end());
  for (auto* upstream : upstreams) {
    if (!upstream->closed) upstream->checkDeadline(now_);
  }
  std::vector<H2Carrier*> carriers;
  for (const auto& [key, pool] : carriers_)
    carriers.insert(carriers.end(), pool.begin(), pool.end());
  for (auto* carrier : carriers) {
    if (!carrier->closed) carrier->checkDeadline(now_);
  }
  std::vector<ClientConnection*> clients(clients_.begin(), clients_.end());
  for (auto* client : clients) {
    if (!client->closed) client->checkDeadline(now_);
  }
}

void Worker::flushPending() {
  while (!flush_soon_.empty() || !carriers_to_flush_.empty()) {
    // a flush may queue another (a stream woken by it)
    std::vector<H2Carrier*> carriers;
    carriers.swap(carriers_to_flush_);
    std::sort(carriers.begin(), carriers.end());
    carriers.erase(std::unique(carriers.begin(), carriers.end()), carriers.end());
    for (auto* carrier : carriers) {
      if (!carrier->closed) carrier->flush();
    }
    std::vector<ClientConnection*> connections;
    connections.swap(flush_soon_);
    std::sort(connections.begin(), connections.end());
    connections.erase(std::unique(connections.begin(), connections.end()), connections.end());
    for (auto* connection : connections) {
      if (!connection->closed) connection->flushPending();
    }
  }
}

void Worker::checkParked() {
  if (parked_.empty()) return;
  std::vector<ClientConnection*> parked(parked_.begin(), parked_.end());
  for (auto* client : parked) {
    if (!client->closed) client->checkHold(now_);
  }
}

void Worker::pauseAccepting() {
  if (accept_paused_) return;
  for (const int fd : {listen_fd_, tls_listen_fd_})
    if (fd >= 0) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  accept_paused_until_ = now_ + std::chrono::milliseconds(100);
  accept_paused_ = true;
}

void Worker::resumeAccepting() {
  accept_paused_ = false;
  for (const auto& [fd, tag] :
       {std::pair{listen_fd_, kListenTag}, {tls_listen_fd_, kTlsListenTag}}) {
    if (fd < 0) continue;
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = tag;
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event);
  }
}

void Worker::acceptAll(int listen_fd, bool tls) {
  for (;;) {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    const int fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&address), &length,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors: the level-triggered listeners would wake us in a busy loop.
        // Stop listening for a moment; connections wait in the backlog meanwhile.
        pauseAccepting();
      }
      return;
    }
    setNoDelay(fd);
    auto current = runtime();
    if (shared_->open_connections.load(std::memory_order_relaxed) >=
        current->config->limits.max_connections) {
      if (tls) {
        // No plain-text answer on a TLS connection: counted and closed.
        shared_->metrics.recordClientEvent(index_, "connection_refused");
        ::close(fd);
      } else {
        refuseConnection(fd);
      }
      continue;
    }
    if (tls && !current->tls) {
      // A reload removed "tls": the listener stays until a restart, its connections are closed.
      shared_->metrics.recordClientEvent(index_, "tls_not_configured");
      ::close(fd);
      continue;
    }
    auto* client = new ClientConnection(*this, fd, peerAddress(address));
    if (tls) client->startTls(current->tls);
    if (!add(client)) {
      ::close(fd);
      delete client;
      continue;
    }
    clients_.insert(client);
    shared_->open_connections.fetch_add(1, std::memory_order_relaxed);
  }
}

void Worker::refuseConnection(int fd) {
  // Past limits.max_connections: a short answer instead of a silent reset, so the client (or
  // the load balancer in front) knows to go elsewhere. What the client sent already is read
  // first, so the close is a FIN rather than a reset that could destroy the answer.
  shared_->metrics.recordClientEvent(index_, "connection_refused");
  drainReceived(fd, 4);
  static const std::string kAnswer = [] {
    const std::string body =
        jsonError("too_many_connections", "limits.max_connections open; retry later");
    return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
           "application/json\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\nRetry-After: 1\r\nConnection: close\r\n\r\n" + body;
  }();
  [[maybe_unused]] const ssize_t sent = ::send(fd, kAnswer.data(), kAnswer.size(), MSG_NOSIGNAL);
  ::shutdown(fd, SHUT_WR);
  // The request may still be on its way: closed now, its arrival would reset the connection
  // and could destroy the answer before the client read it. So the socket lingers (reading and
  // dropping) until the client closes or a second passes; a flood past kMaxLingering is closed
  // at once.
  if (lingering_.size() >= kMaxLingering) {
    ::close(fd);
    return;
  }
  lingering_.push_back({fd, now_ + std::chrono::seconds(1)});
}

void Worker::closeLingering(bool all) {
  char buffer[kReadChunk];
  auto keep = lingering_.begin();
  for (auto& entry : lingering_) {
    bool done = all || now_ >= entry.until;
    while (!done) {
      const ssize_t n = ::recv(entry.fd, buffer, sizeof buffer, MSG_DONTWAIT);
      if (n > 0) continue;
      done = n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
      break;
    }
    if (done) {
      ::close(entry.fd);
    } else {
      *keep++ = entry;
    }
  }
  lingering_.erase(keep, lingering_.end());
}

UpstreamConnection* Worker::acquire(const std::shared_ptr<EndpointState>& endpoint,
                                    const RuntimeUpstream& upstream, bool& reused) {
  const int max_idle = upstream.config->max_idle_connections;
  const bool h2 = upstream.config->h2;
  std::string own_key;  // TLS and HTTP/2 connections never share a pool with other kinds
  if (upstream.tls || h2) {
    own_key = endpoint->pool_key;
    if (upstream.tls) own_key += upstream.tls_pool_suffix;
    if (h2) own_key += " h2";
  }
  const std::string& pool_key = upstream.tls || h2 ? own_key : endpoint->pool_key;
  if (h2) return acquireStream(endpoint, upstream, pool_key, reused);
  auto& pool = idle_[pool_key];
  while (!pool.empty()) {
    UpstreamConnection* connection = pool.back();
    pool.pop_back();
    if (connection->closed) continue;
    connection->state = UpstreamConnection::State::kBusy;
    connection->max_idle = max_idle;
    reused = true;
    return connection;
  }
  reused = false;
  const int fd =
      ::socket(endpoint->sockaddr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return nullptr;
  setNoDelay(fd);
  auto* connection = new UpstreamConnection(*this, endpoint);
  connection->fd = fd;
  connection->max_idle = max_idle;
  connection->pool_key = pool_key;
  if (upstream.tls) {
    const std::string& server_name = upstream.config->tls->server_name;
    connection->startTls(*upstream.tls, server_name.empty() ? endpoint->address.host : server_name,
                         upstream.config->name);
  }
  const int rc =
      ::connect(fd, reinterpret_cast<const sockaddr*>(&endpoint->sockaddr), endpoint->sockaddr_len);
  if (rc != 0 && errno != EINPROGRESS) {
    ::close(fd);
    delete connection;
    return nullptr;
  }
  connection->state =
      rc == 0 ? UpstreamConnection::State::kBusy : UpstreamConnection::State::kConnecting;
  if (!add(connection)) {
    ::close(fd);
    delete connection;
    return nullptr;
  }
  upstreams_.insert(connection);
  return connection;
}

void Worker::release(UpstreamConnection* connection) {
  auto& pool = idle_[connection->pool_key];
  if (stopping_ || static_cast<int>(pool.size()) >= connection->max_idle) {
    closeUpstream(connection);
    return;
  }
  connection->state = UpstreamConnection::State::kIdle;
  connection->client = nullptr;
  connection->idle_since = now_;
  pool.push_back(connection);
}

void Worker::closeClient(ClientConnection* client) {
  if (client->closed) return;
  client->closed = true;
  if (client->upstream != nullptr) {
    UpstreamConnection* upstream = client->upstream;
    client->upstream = nullptr;
    upstream->client = nullptr;
    closeUpstream(upstream);
  }
  if (client->inExchange()) shared_->active_requests.fetch_sub(1, std::memory_order_relaxed);
  client->onClosed();
  if (!client->isStream()) {  // an HTTP/2 stream's client has no socket and is not counted
    forget(client->fd);
    clients_.erase(client);
    shared_->open_connections.fetch_sub(1, std::memory_order_relaxed);
  }
  graveyard_.push_back(client);
}

void Worker::closeUpstream(UpstreamConnection* upstream) {
  if (upstream->closed) return;
  upstream->closed = true;
  if (upstream->state == UpstreamConnection::State::kIdle) {
    auto& pool = idle_[upstream->pool_key];
    pool.erase(std::remove(pool.begin(), pool.end(), upstream), pool.end());
  }
  upstream->detachCarrier();
  if (upstream->fd >= 0) forget(upstream->fd);
  upstreams_.erase(upstream);
  graveyard_.push_back(upstream);
}

UpstreamConnection* Worker::acquireStream(const std::shared_ptr<EndpointState>& endpoint,
                                          const RuntimeUpstream& upstream,
                                          const std::string& pool_key, bool& reused) {
  // A connection with room for another stream, else a new one.
  auto& pool = carriers_[pool_key];
  H2Carrier* carrier = nullptr;
  for (auto* candidate : pool) {
    if (candidate->usable()) {
      carrier = candidate;
      break;
    }
  }
  reused = carrier != nullptr && carrier->established();
  if (carrier == nullptr) {
    const int fd =
        ::socket(endpoint->sockaddr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return nullptr;
    setNoDelay(fd);
    carrier = new H2Carrier(*this, endpoint, pool_key, upstream.config->name);
    carrier->fd = fd;
    if (upstream.tls) {
      const std::string& server_name = upstream.config->tls->server_name;
      carrier->startTls(*upstream.tls, server_name.empty() ? endpoint->address.host : server_name);
    }
    if (!carrier->connect(std::chrono::milliseconds(upstream.config->connect_timeout_ms)) ||
        !add(carrier)) {
      ::close(fd);
      delete carrier;
      return nullptr;
    }
    pool.push_back(carrier);
  }
  auto* exchange = new UpstreamConnection(*this, endpoint);
  exchange->startH2(*carrier);
  exchange->state = UpstreamConnection::State::kBusy;
  upstreams_.insert(exchange);
  return exchange;
}

void Worker::closeCarrier(H2Carrier* carrier) {
  if (carrier->closed) return;
  carrier->closed = true;
  auto& pool = carriers_[carrier->poolKey()];
  pool.erase(std::remove(pool.begin(), pool.end(), carrier), pool.end());
  forget(carrier->fd);
  graveyard_.push_back(carrier);
}

void Worker::forget(int fd) {
  // Removed from the epoll set explicitly: close() alone removes it only when no other
  // descriptor refers to the socket, and a process that forks (a library's helper, a
  // symbolizer) holds copies for a moment. An event reported for it then would carry a
  // pointer to a connection that reap() deleted.
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  ::close(fd);
}

void Worker::reap() {
  for (auto* pollable : graveyard_)
    delete pollable;
  graveyard_.clear();
}

}  // namespace strangler::proxy
