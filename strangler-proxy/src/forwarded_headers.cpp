#include "forwarded_headers.h"

#include "http_util.h"

namespace strangler::proxy {
namespace {

constexpr std::string_view kVia = "1.1 strangler";

void appendList(std::string& list, std::string_view value) {
  if (!list.empty()) list += ", ";
  list.append(value);
}

// RFC 7239 §6: an IPv6 node is bracketed, and then (with its ':') must be quoted.
void appendNode(std::string& out, std::string_view address) {
  if (address.find(':') == std::string_view::npos) {
    out.append(address);
    return;
  }
  out += "\"[";
  out.append(address);
  out += "]\"";
}

void appendQuoted(std::string& out, std::string_view value) {
  out += '"';
  for (char c : value) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += '"';
}

}  // namespace

bool validHost(std::string_view host) {
  for (unsigned char c : host) {
    if (c <= 0x20 || c == 0x7f || c == '@' || c == '/' || c == '\\' || c == '"') return false;
  }
  return true;
}

void appendForwardedHeaders(const ForwardInput& in, std::string& out) {
  std::string forwarded_for, forwarded, via;
  std::string_view proto_in, host_in;
  bool trailers = false;
  for (const auto& [name, value] : *in.headers) {
    const bool about_client = iequals(name, "x-forwarded-for") || iequals(name, "forwarded") ||
                              iequals(name, "x-forwarded-proto") ||
                              iequals(name, "x-forwarded-host");
    if (about_client) {
      if (!in.peer_trusted) continue;  // replaced below
      if (iequals(name, "x-forwarded-for")) appendList(forwarded_for, value);
      if (iequals(name, "forwarded")) appendList(forwarded, value);
      if (iequals(name, "x-forwarded-proto")) proto_in = value;
      if (iequals(name, "x-forwarded-host")) host_in = value;
      continue;
    }
    if (iequals(name, "via")) {
      appendList(via, value);
      continue;
    }
    if (iequals(name, "te")) trailers = trailers || listsTrailers(value);
    if (isHopByHop(name) || startsWithIgnoreCase(name, "x-strangler-") || iequals(name, "host") ||
        namedByConnection(*in.headers, name)) {
      continue;
    }
    appendHeader(out, name, value);
  }
  appendList(forwarded_for, in.peer);
  if (!forwarded.empty()) forwarded += ", ";
  forwarded += "for=";
  appendNode(forwarded, in.peer);
  forwarded += ";proto=";
  forwarded.append(in.proto);
  if (!in.host.empty()) {
    forwarded += ";host=";
    appendQuoted(forwarded, in.host);
  }
  appendList(via, kVia);
  appendHeader(out, "X-Forwarded-For", forwarded_for);
  appendHeader(out, "X-Forwarded-Proto", proto_in.empty() ? in.proto : proto_in);
  if (!host_in.empty()) {
    appendHeader(out, "X-Forwarded-Host", host_in);
  } else if (!in.host.empty()) {
    appendHeader(out, "X-Forwarded-Host", in.host);
  }
  appendHeader(out, "Forwarded", forwarded);
  appendHeader(out, "Via", via);
  if (!in.host.empty()) appendHeader(out, "Host", in.host);
  if (trailers) {
    // The proxy relays trailers, so the client's "TE: trailers" holds for the next hop too (gRPC
    // servers refuse a call without it); its other codings are the client's hop's.
    appendHeader(out, "Connection", "TE");
    appendHeader(out, "TE", "trailers");
  }
}

}  // namespace strangler::proxy
