#include "driver_service/monolith/monolith_trip_stats.h"

#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/StreamCopier.h>

#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace strangler::driver_service::monolith {

MonolithTripStats::MonolithTripStats(std::string host, uint16_t port,
                                     std::chrono::milliseconds timeout)
    : host_(std::move(host)), port_(port), timeout_(timeout) {}

std::optional<int64_t> MonolithTripStats::completedTrips(int64_t driver_id) {
  try {
    Poco::Net::HTTPClientSession session(host_, port_);
    session.setTimeout(Poco::Timespan(static_cast<long>(timeout_.count()) * 1000));
    Poco::Net::HTTPRequest request(Poco::Net::HTTPRequest::HTTP_GET,
                                   "/api/drivers/" + std::to_string(driver_id),
                                   Poco::Net::HTTPMessage::HTTP_1_1);
    session.sendRequest(request);
    Poco::Net::HTTPResponse response;
    std::istream& in = session.receiveResponse(response);
    std::ostringstream body;
    Poco::StreamCopier::copyStream(in, body);
    // A driver registered after the extraction is unknown to the monolith: no trips there.
    if (response.getStatus() == Poco::Net::HTTPResponse::HTTP_NOT_FOUND) return 0;
    if (response.getStatus() != Poco::Net::HTTPResponse::HTTP_OK) {
      throw std::runtime_error("monolith answered " + std::to_string(response.getStatus()));
    }
    const auto parsed = nlohmann::json::parse(body.str());
    const int64_t count = parsed.at("completed_trips").get<int64_t>();
    std::lock_guard lock(mutex_);
    last_seen_[driver_id] = count;
    return count;
  } catch (const std::exception& e) {
    std::cerr << "driver-service: completed_trips of driver " << driver_id
              << " unavailable from the monolith: " << e.what() << "\n";
    std::lock_guard lock(mutex_);
    const auto it = last_seen_.find(driver_id);
    if (it == last_seen_.end()) return std::nullopt;
    return it->second;
  }
}

}  // namespace strangler::driver_service::monolith
