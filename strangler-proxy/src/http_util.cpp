#include "http_util.h"

#include <sys/socket.h>

#include <cstdio>

#include <nlohmann/json.hpp>

namespace strangler::proxy {

bool isToken(std::string_view text) {
  if (text.empty()) return false;
  for (const unsigned char c : text) {
    const bool ok =
        (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
        std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

void appendHeader(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out += ": ";
  out.append(value);
  out += "\r\n";
}

void appendChunk(std::string& out, std::string_view data) {
  if (data.empty()) return;
  char size_line[24];
  const int n = std::snprintf(size_line, sizeof size_line, "%zx\r\n", data.size());
  out.append(size_line, static_cast<size_t>(n));
  out.append(data);
  out += "\r\n";
}

void drainReceived(int fd, int reads) {
  char buffer[kReadChunk];
  for (int i = 0; i<reads&& ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT)> 0; ++i) {
  }
}

bool isFieldValue(std::string_view text) {
  for (unsigned char c : text) {
    if ((c < 0x20 && c != '\t') || c == 0x7f) return false;
  }
  return true;
}

bool isKnownCoding(std::string_view coding) {
  for (const char* known : {"gzip", "deflate", "compress", "x-gzip", "x-compress"}) {
    if (iequals(coding, known)) return true;
  }
  return false;
}

// Headers that describe one connection, not the message (RFC 9110 7.6.1), plus framing
// headers the proxy sets itself.
bool isHopByHop(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "connection",        "keep-alive", "proxy-connection", "te",     "trailer",
      "transfer-encoding", "upgrade",    "content-length",   "expect", "http2-settings"};
  for (const auto hop : kNames) {
    if (iequals(name, hop)) return true;
  }
  return false;
}

// True when `name` is listed in one of the Connection headers (those are hop-by-hop too).
bool namedByConnection(const HeaderList& headers, std::string_view name) {
  for (const auto& [field, value] : headers) {
    if (!iequals(field, "connection")) continue;
    std::string_view rest(value);
    while (!rest.empty()) {
      const size_t comma = rest.find(',');
      if (iequals(trimSpace(rest.substr(0, comma)), name)) return true;
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  return false;
}

bool listsTrailers(std::string_view te) {
  while (!te.empty()) {
    const size_t comma = te.find(',');
    const std::string_view item = trimSpace(te.substr(0, comma));
    if (iequals(trimSpace(item.substr(0, item.find(';'))), "trailers")) return true;
    if (comma == std::string_view::npos) break;
    te.remove_prefix(comma + 1);
  }
  return false;
}

bool acceptsTrailers(const HeaderList& headers) {
  for (const auto& [name, value] : headers) {
    if (iequals(name, "te") && listsTrailers(value)) return true;
  }
  return false;
}

std::string upgradeProtocols(const HeaderList& headers) {
  std::string joined;
  for (const auto& [name, value] : headers) {
    if (!iequals(name, "upgrade")) continue;
    const std::string_view text = trimSpace(value);
    if (text.empty()) continue;
    if (!joined.empty()) joined += ", ";
    joined += text;
  }
  return joined;
}

std::string jsonError(const std::string& code, const std::string& message) {
  return nlohmann::json{{"error", code}, {"message", message}}.dump();
}

const char* reasonPhrase(int status) {
  const char* text = http_status_str(static_cast<http_status>(status));
  return text == nullptr ? "Unknown" : text;
}

}  // namespace strangler::proxy
