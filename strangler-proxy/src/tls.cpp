#include "tls.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cerrno>
#include <cstring>

namespace strangler::proxy {
namespace {

// TLS 1.2 suites: ECDHE (forward secrecy) with AES-GCM or ChaCha20-Poly1305 only — no CBC, no
// RSA key exchange, no SHA-1 MACs. TLS 1.3 keeps OpenSSL's defaults (all AEAD).
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

// What ALPN may choose, in wire format: HTTP/2 first for clients (it is preferred when a client
// offers both); upstreams are spoken to in HTTP/1.1.
constexpr unsigned char kServerAlpn[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
constexpr unsigned char kAlpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

/// OpenSSL's error queue as one line (and empties it).
std::string takeErrors() {
  std::string out;
  while (const unsigned long code = ERR_get_error()) {
    char text[256];
    ERR_error_string_n(code, text, sizeof text);
    if (!out.empty()) out += "; ";
    out += text;
  }
  return out;
}

int selectAlpn(SSL*, const unsigned char** out, unsigned char* out_length, const unsigned char* in,
               unsigned int in_length, void*) {
  unsigned char* chosen = nullptr;
  unsigned char chosen_length = 0;
  if (SSL_select_next_proto(&chosen, &chosen_length, kServerAlpn, sizeof kServerAlpn, in,
                            in_length) != OPENSSL_NPN_NEGOTIATED) {
    // No protocol in common: go on without ALPN (the client then speaks HTTP/1.1 or gives up).
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = chosen;
  *out_length = chosen_length;
  return SSL_TLSEXT_ERR_OK;
}

/// A context for `method` with what both sides share: TLS 1.2 at least, the AEAD suites, no
/// compression or renegotiation, partial writes from a buffer that may move between calls, and
/// buffers given back while a connection is idle. Null with `error` set when OpenSSL refuses.
SSL_CTX* newContext(const SSL_METHOD* method, std::string& error) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(method);
  if (ctx == nullptr) {
    error = "cannot create a TLS context: " + takeErrors();
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // A peer closing without close_notify ends the stream like a TCP close: HTTP's own framing
  // tells a complete message from a cut one.
  SSL_CTX_set_options(
      ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) != 1) {
    error = "cipher list refused: " + takeErrors();
    SSL_CTX_free(ctx);
    return nullptr;
  }
  return ctx;
}

/// True when an I/O call only has to wait for the socket (TLS may need to read to write, or the
/// other way round): errno is EAGAIN then, as for recv()/send().
bool wouldBlock(int code) {
  if (code != SSL_ERROR_WANT_READ && code != SSL_ERROR_WANT_WRITE) return false;
  errno = EAGAIN;
  return true;
}

}  // namespace

common::Result<std::shared_ptr<TlsServerContext>> TlsServerContext::load(
    const std::string& cert_file, const std::string& key_file) {
  using R = common::Result<std::shared_ptr<TlsServerContext>>;
  std::shared_ptr<TlsServerContext> context(new TlsServerContext());
  std::string error;
  SSL_CTX* ctx = newContext(TLS_server_method(), error);
  if (ctx == nullptr) return R::failure("tls_failed", error);
  context->ctx_ = ctx;
  SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
  SSL_CTX_set_alpn_select_cb(ctx, selectAlpn, nullptr);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1) {
    return R::failure("tls_certificate",
                      "tls.cert_file '" + cert_file + "' does not load: " + takeErrors());
  }
  if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    return R::failure("tls_certificate",
                      "tls.key_file '" + key_file + "' does not load: " + takeErrors());
  }
  if (SSL_CTX_check_private_key(ctx) != 1) {
    return R::failure("tls_certificate", "tls.key_file '" + key_file +
                                             "' is not the key of tls.cert_file '" + cert_file +
                                             "': " + takeErrors());
  }
  return context;
}

TlsServerContext::~TlsServerContext() {
  SSL_CTX_free(ctx_);
}

common::Result<std::shared_ptr<TlsClientContext>> TlsClientContext::create(
    const std::string& ca_file, bool insecure) {
  using R = common::Result<std::shared_ptr<TlsClientContext>>;
  std::shared_ptr<TlsClientContext> context(new TlsClientContext());
  std::string error;
  SSL_CTX* ctx = newContext(TLS_client_method(), error);
  if (ctx == nullptr) return R::failure("tls_failed", error);
  context->ctx_ = ctx;
  context->insecure_ = insecure;
  SSL_CTX_set_alpn_protos(ctx, kAlpn, sizeof kAlpn);
  SSL_CTX_set_verify(ctx, insecure ? SSL_VERIFY_NONE : SSL_VERIFY_PEER, nullptr);
  if (!insecure) {
    const int loaded = ca_file.empty()
                           ? SSL_CTX_set_default_verify_paths(ctx)
                           : SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr);
    if (loaded != 1) {
      return R::failure("tls_certificate",
                        "tls.ca_file '" + ca_file + "' does not load: " + takeErrors());
    }
  }
  return context;
}

TlsClientContext::~TlsClientContext() {
  SSL_CTX_free(ctx_);
}

TlsStream::TlsStream(const TlsClientContext& context, int fd, const std::string& server_name,
                     bool h2) {
  ssl_ = SSL_new(context.get());
  if (ssl_ == nullptr) return;
  SSL_set_fd(ssl_, fd);
  SSL_set_connect_state(ssl_);
  if (h2) {
    static constexpr unsigned char kH2[] = {2, 'h', '2'};
    SSL_set_alpn_protos(ssl_, kH2, sizeof kH2);
  }
  in6_addr address{};
  const bool is_ip = inet_pton(AF_INET, server_name.c_str(), &address) == 1 ||
                     inet_pton(AF_INET6, server_name.c_str(), &address) == 1;
  if (!is_ip) SSL_set_tlsext_host_name(ssl_, server_name.c_str());
  if (!context.insecure()) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
    if (is_ip) {
      X509_VERIFY_PARAM_set1_ip_asc(param, server_name.c_str());
    } else {
      X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      X509_VERIFY_PARAM_set1_host(param, server_name.c_str(), 0);
    }
  }
}

TlsStream::TlsStream(const TlsServerContext& context, int fd) {
  ssl_ = SSL_new(context.get());
  if (ssl_ == nullptr) return;
  SSL_set_fd(ssl_, fd);
  SSL_set_accept_state(ssl_);
}

TlsStream::~TlsStream() {
  SSL_free(ssl_);
}

TlsStream::Handshake TlsStream::handshake() {
  if (established_) return Handshake::kDone;
  if (ssl_ == nullptr) {
    error_ = "no TLS session";
    return Handshake::kFailed;
  }
  ERR_clear_error();
  const int rc = SSL_do_handshake(ssl_);
  if (rc == 1) {
    established_ = true;
    return Handshake::kDone;
  }
  const int code = SSL_get_error(ssl_, rc);
  if (code == SSL_ERROR_WANT_READ || code == SSL_ERROR_WANT_WRITE) return Handshake::kPending;
  error_ = takeErrors();
  if (const long verify = SSL_get_verify_result(ssl_); verify != X509_V_OK)
    error_ = std::string("certificate not trusted: ") + X509_verify_cert_error_string(verify);
  if (error_.empty()) {
    error_ = code == SSL_ERROR_SYSCALL && errno != 0 ? std::strerror(errno)
                                                     : "the peer closed during the handshake";
  }
  return Handshake::kFailed;
}

ssize_t TlsStream::read(char* buffer, size_t size) {
  ERR_clear_error();
  size_t got = 0;
  if (SSL_read_ex(ssl_, buffer, size, &got) == 1) return static_cast<ssize_t>(got);
  const int code = SSL_get_error(ssl_, 0);
  if (wouldBlock(code)) return -1;
  if (code == SSL_ERROR_ZERO_RETURN) return 0;
  if (code == SSL_ERROR_SYSCALL && errno == 0) return 0;
  error_ = takeErrors();
  if (code != SSL_ERROR_SYSCALL) errno = EPROTO;
  return -1;
}

ssize_t TlsStream::write(const char* data, size_t size) {
  ERR_clear_error();
  size_t written = 0;
  if (SSL_write_ex(ssl_, data, size, &written) == 1) return static_cast<ssize_t>(written);
  const int code = SSL_get_error(ssl_, 0);
  if (wouldBlock(code)) return -1;
  error_ = takeErrors();
  if (code != SSL_ERROR_SYSCALL || errno == 0) errno = EPIPE;
  return -1;
}

bool TlsStream::negotiatedH2() const {
  const unsigned char* protocol = nullptr;
  unsigned int length = 0;
  SSL_get0_alpn_selected(ssl_, &protocol, &length);
  return length == 2 && protocol[0] == 'h' && protocol[1] == '2';
}

void TlsStream::shutdown() {
  if (ssl_ == nullptr || !established_) return;
  ERR_clear_error();
  SSL_shutdown(ssl_);
  ERR_clear_error();
}

}  // namespace strangler::proxy
