#include "strangler/testing/http_client.h"

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/StreamCopier.h>
#include <Poco/Timespan.h>

#include <algorithm>
#include <cctype>
#include <sstream>

namespace strangler::testing {
namespace {

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

Poco::Timespan toTimespan(std::chrono::milliseconds timeout) {
  return Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(timeout.count()) * 1000);
}

}  // namespace

std::string HttpResponse::header(const std::string& lower_name) const {
  const auto it = headers.find(lower_name);
  return it == headers.end() ? std::string() : it->second;
}

HttpResponse httpRequest(const std::string& host, uint16_t port, const std::string& method,
                         const std::string& target, const std::string& body,
                         const std::map<std::string, std::string>& headers,
                         std::chrono::milliseconds timeout) {
  Poco::Net::HTTPClientSession session(host, port);
  session.setTimeout(toTimespan(timeout));
  Poco::Net::HTTPRequest request(method, target, Poco::Net::HTTPMessage::HTTP_1_1);
  for (const auto& [name, value] : headers)
    request.set(name, value);
  if (!body.empty() || method == "POST" || method == "PUT") {
    request.setContentLength(static_cast<std::streamsize>(body.size()));
    if (!request.has("Content-Type")) request.setContentType("application/json");
  }
  session.sendRequest(request) << body;
  Poco::Net::HTTPResponse response;
  std::istream& in = session.receiveResponse(response);
  HttpResponse result;
  result.status = static_cast<int>(response.getStatus());
  for (const auto& [name, value] : response)
    result.headers[lower(name)] = value;
  std::ostringstream out;
  Poco::StreamCopier::copyStream(in, out);
  result.body = out.str();
  return result;
}

std::string rawExchange(const std::string& host, uint16_t port, const std::string& bytes,
                        std::chrono::milliseconds timeout) {
  Poco::Net::StreamSocket socket;
  socket.connect(Poco::Net::SocketAddress(host, port), toTimespan(timeout));
  socket.setReceiveTimeout(toTimespan(timeout));
  socket.sendBytes(bytes.data(), static_cast<int>(bytes.size()));
  socket.shutdownSend();
  std::string answer;
  char buffer[4096];
  try {
    for (;;) {
      const int n = socket.receiveBytes(buffer, sizeof buffer);
      if (n <= 0) break;
      answer.append(buffer, static_cast<size_t>(n));
    }
  } catch (const Poco::TimeoutException&) {
    // The server kept the connection open; what arrived so far is the answer.
  } catch (const Poco::Net::NetException&) {
    // Reset by the server after answering: also an answer.
  }
  return answer;
}

uint16_t freeLoopbackPort() {
  Poco::Net::ServerSocket socket(Poco::Net::SocketAddress("127.0.0.1", 0));
  return socket.address().port();
}

}  // namespace strangler::testing
