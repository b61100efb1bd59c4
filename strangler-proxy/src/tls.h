#pragma once

// TLS on the data path, with OpenSSL: the HTTPS listener's context (certificate, key, ALPN,
// modern defaults) and one connection's TLS stream over a non-blocking socket.
//
// A context is built with each config snapshot (UpstreamRegistry::build), so `POST /reload` or
// SIGHUP reads the certificate and key again: new connections take the new context, connections
// already open keep the one they started with (OpenSSL counts the references), and a certificate
// that does not load fails the reload, the last good one serving on.

#include <sys/types.h>

#include <memory>
#include <string>

#include "strangler/common/result.h"

typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

namespace strangler::proxy {

/// A server context: TLS 1.2 and 1.3 only, forward-secret AEAD suites only for 1.2, no
/// compression or renegotiation, session tickets on, ALPN `http/1.1`.
class TlsServerContext {
 public:
  /// Loads the certificate chain and the key (PEM) and checks that they belong together.
  static common::Result<std::shared_ptr<TlsServerContext>> load(const std::string& cert_file,
                                                                const std::string& key_file);
  ~TlsServerContext();
  TlsServerContext(const TlsServerContext&) = delete;
  TlsServerContext& operator=(const TlsServerContext&) = delete;

  SSL_CTX* get() const { return ctx_; }

 private:
  TlsServerContext() = default;
  SSL_CTX* ctx_ = nullptr;
};

/// A client context for an upstream's "tls": TLS 1.2+, the peer verified against `ca_file` (the
/// system's trust store when empty) unless `insecure`, ALPN `http/1.1`.
class TlsClientContext {
 public:
  static common::Result<std::shared_ptr<TlsClientContext>> create(const std::string& ca_file,
                                                                  bool insecure);
  ~TlsClientContext();
  TlsClientContext(const TlsClientContext&) = delete;
  TlsClientContext& operator=(const TlsClientContext&) = delete;

  SSL_CTX* get() const { return ctx_; }
  bool insecure() const { return insecure_; }

 private:
  TlsClientContext() = default;
  SSL_CTX* ctx_ = nullptr;
  bool insecure_ = false;
};

/// One connection's TLS over its non-blocking socket. read()/write() behave like recv()/send():
/// -1 with errno EAGAIN while TLS waits for the socket (either way: edge-triggered loops poll for
/// both), 0 at the peer's close.
class TlsStream {
 public:
  /// A server-side stream on `fd` (the caller keeps owning fd).
  TlsStream(const TlsServerContext& context, int fd);
  /// A client-side stream to an upstream on `fd`: SNI `server_name` (unless an IP address) and
  /// the certificate verified for that name or address; `h2`: ALPN offers "h2" alone.
  TlsStream(const TlsClientContext& context, int fd, const std::string& server_name,
            bool h2 = false);
  ~TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  enum class Handshake { kDone, kPending, kFailed };
  /// Drives the handshake on; kFailed: error() says why.
  Handshake handshake();
  bool established() const { return established_; }
  ssize_t read(char* buffer, size_t size);
  ssize_t write(const char* data, size_t size);
  /// True when ALPN chose HTTP/2 (after the handshake).
  bool negotiatedH2() const;
  /// Sends close_notify (best effort; the socket is closed next anyway).
  void shutdown();
  const std::string& error() const { return error_; }

 private:
  SSL* ssl_ = nullptr;
  bool established_ = false;
  std::string error_;
};

}  // namespace strangler::proxy
