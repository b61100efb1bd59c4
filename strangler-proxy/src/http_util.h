#pragma once

// Small HTTP helpers shared by the data path's connections (private to strangler_proxy).

#include <http_parser.h>

#include <cstddef>
#include <string>
#include <string_view>

#include "strangler/proxy/router.h"
#include "text.h"

namespace strangler::proxy {

/// Bytes read from a socket at a time.
inline constexpr size_t kReadChunk = 16 * 1024;
/// A streamed request body: bytes handed to the upstream connection but not yet taken by its
/// socket, past which the client's body is not read on (back-pressure).
inline constexpr size_t kStreamWindow = 256 * 1024;

/// True for an RFC 9110 token (a valid header field name).
bool isToken(std::string_view text);
/// True for an RFC 9110 field value: no control characters but horizontal tab.
bool isFieldValue(std::string_view text);
/// True for a transfer coding other than chunked that the proxy passes on (the IANA registry's
/// compress, deflate, gzip and their x- aliases).
bool isKnownCoding(std::string_view coding);
/// True for headers that describe one connection, not the message (plus framing headers the
/// proxy sets itself).
bool isHopByHop(std::string_view name);
/// True when `name` is listed in one of the Connection headers (hop-by-hop as well).
bool namedByConnection(const HeaderList& headers, std::string_view name);
/// True when a TE field's value lists "trailers" (its sender reads a chunked answer's trailers).
bool listsTrailers(std::string_view te);
/// True when one of the TE fields lists "trailers".
bool acceptsTrailers(const HeaderList& headers);
/// The protocols the Upgrade fields name, joined ("" when there are none or all are empty).
std::string upgradeProtocols(const HeaderList& headers);
/// Appends one header line ("Name: value\r\n").
void appendHeader(std::string& out, std::string_view name, std::string_view value);
/// Appends `data` as one chunk of a chunked body (size line, data, CRLF); nothing when empty.
void appendChunk(std::string& out, std::string_view data);
/// Reads and drops what a peer already sent (at most `reads` reads, without waiting), so that
/// closing the socket sends a FIN, not a reset that could destroy an answer still in flight.
void drainReceived(int fd, int reads);
/// The JSON body of an error answer: {"error": code, "message": message}.
std::string jsonError(const std::string& code, const std::string& message);
/// The standard reason phrase of a status code.
const char* reasonPhrase(int status);

}  // namespace strangler::proxy
