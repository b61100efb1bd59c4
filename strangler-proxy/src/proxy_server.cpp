#include "strangler/proxy/proxy_server.h"

#include <http_parser.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "worker.h"

namespace strangler::proxy {
namespace {

using ListenResult = common::Result<int>;

// A non-blocking SO_REUSEPORT listener on `address`; every worker gets its own, so the kernel
// spreads new connections over the loops.
ListenResult openListener(const sockaddr_storage& address, socklen_t length) {
  const int fd = ::socket(address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return ListenResult::failure("listen_failed", std::strerror(errno));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&address), length) != 0 ||
      ::listen(fd, 1024) != 0) {
    const std::string why = std::strerror(errno);
    ::close(fd);
    return ListenResult::failure("listen_failed", why);
  }
  return fd;
}

}  // namespace

ProxyShared::ProxyShared(std::shared_ptr<const Runtime> runtime, size_t workers,
                         std::shared_ptr<RouteHolds> route_holds)
    : metrics(workers), holds(std::move(route_holds)), runtime_(std::move(runtime)) {}

void ProxyShared::publish(std::shared_ptr<const Runtime> runtime) {
  {
    std::lock_guard lock(mutex_);
    runtime_ = std::move(runtime);
  }
  generation_.fetch_add(1, std::memory_order_acq_rel);
}

std::shared_ptr<const Runtime> ProxyShared::current() const {
  std::lock_guard lock(mutex_);
  return runtime_;
}

namespace {

struct Listeners {
  std::vector<int> fds;  ///< one per worker
  common::HostPort bound;
};

void closeAll(const std::vector<int>& fds) {
  for (const int fd : fds)
    ::close(fd);
}

// `count` listeners on `listen` sharing one port (SO_REUSEPORT).
common::Result<Listeners> openListeners(const common::HostPort& listen, int count) {
  using R = common::Result<Listeners>;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(listen.port);
  const int rc = getaddrinfo(listen.host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0 || found == nullptr) {
    return R::failure("listen_failed", "cannot resolve '" + listen.host + "': " + gai_strerror(rc));
  }
  sockaddr_storage address{};
  std::memcpy(&address, found->ai_addr, found->ai_addrlen);
  const socklen_t length = found->ai_addrlen;
  freeaddrinfo(found);
  Listeners out;
  for (int i = 0; i < std::max(count, 1); ++i) {
    auto fd = openListener(address, length);
    if (!fd) {
      closeAll(out.fds);
      return R::failure("listen_failed",
                        "cannot listen on " + listen.toString() + ": " + fd.error().message);
    }
    if (i == 0) {
      // Port 0: the others bind the port the kernel picked for the first one.
      socklen_t bound_length = sizeof address;
      getsockname(*fd, reinterpret_cast<sockaddr*>(&address), &bound_length);
      const uint16_t bound =
          ntohs(address.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(address).sin6_port
                                              : reinterpret_cast<sockaddr_in&>(address).sin_port);
      out.bound = common::HostPort{listen.host, bound};
    }
    out.fds.push_back(*fd);
  }
  return out;
}

}  // namespace

common::Result<std::unique_ptr<ProxyServer>> ProxyServer::start(
    const common::HostPort& listen, int workers, std::shared_ptr<ProxyShared> shared,
    const std::optional<common::HostPort>& tls_listen) {
  using R = common::Result<std::unique_ptr<ProxyServer>>;
  // The parser's own cap (80 KiB by default) must not undercut limits.max_header_bytes, which
  // the connections enforce themselves and which may be raised up to 1 MiB.
  http_parser_set_max_header_size(2 * 1024 * 1024);

  auto plain = openListeners(listen, workers);
  if (!plain) return R(plain.error());
  Listeners tls;
  if (tls_listen) {
    auto opened = openListeners(*tls_listen, workers);
    if (!opened) {
      closeAll(plain->fds);
      return R(opened.error());
    }
    tls = std::move(opened).value();
  }
  std::unique_ptr<ProxyServer> server(new ProxyServer());
  server->shared_ = shared;
  server->address_ = plain->bound;
  if (tls_listen) server->tls_address_ = tls.bound;
  for (size_t i = 0; i < plain->fds.size(); ++i) {
    const int tls_fd = tls.fds.empty() ? -1 : tls.fds[i];
    server->workers_.push_back(std::make_unique<Worker>(i, plain->fds[i], shared, tls_fd));
  }
  for (auto& worker : server->workers_) {
    Worker* loop = worker.get();
    server->threads_.emplace_back([loop] { loop->run(); });
  }
  return server;
}

ProxyServer::~ProxyServer() {
  stop(std::chrono::milliseconds(0));
}

void ProxyServer::stop(std::chrono::milliseconds grace) {
  if (stopped_) return;
  stopped_ = true;
  for (auto& worker : workers_)
    worker->requestStop(grace);
  for (auto& thread : threads_)
    thread.join();
  workers_.clear();
}

}  // namespace strangler::proxy
