#include "monolith/http/api_handler_factory.h"

#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/URI.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "json_mapping.h"

namespace strangler::monolith::http {
namespace {

using nlohmann::json;
using Poco::Net::HTTPResponse;

constexpr int64_t kMaxDrainBytes = 1 << 20;

struct Reply {
  int status = 200;
  json body;
  std::map<std::string, std::string> headers;
};

struct Call {
  std::map<std::string, std::string> params;  // path template values
  std::map<std::string, std::string> query;
  std::string body;
};

using Handler = std::function<Reply(ports::RideShareService&, const Call&)>;

struct Route {
  std::string method;
  std::vector<std::string> pattern;  // "{name}" segments capture
  Handler handler;
};

std::vector<std::string> splitPath(const std::string& path) {
  std::vector<std::string> segments;
  std::string current;
  for (char c : path) {
    if (c == '/') {
      if (!current.empty()) segments.push_back(current);
      current.clear();
    } else {
      current += c;
    }
  }
  if (!current.empty()) segments.push_back(current);
  return segments;
}

Reply errorReply(int status, const std::string& code, const std::string& message) {
  return Reply{status, json{{"error", code}, {"message", message}}, {}};
}

int statusFor(const std::string& code) {
  if (code == ports::errors::kInvalid) return 400;
  if (code == ports::errors::kNotFound) return 404;
  if (code == ports::errors::kConflict || code == ports::errors::kNoDriver) return 409;
  return 500;
}

Reply failure(const common::Error& error) {
  return errorReply(statusFor(error.code), error.code, error.message);
}

template <typename T, typename ToJson>
Reply reply(const common::Result<T>& result, ToJson to_json, int status = 200) {
  if (!result.ok()) return failure(result.error());
  return Reply{status, to_json(result.value()), {}};
}

// Ids in paths are positive decimal integers; anything else names no resource (404).
std::optional<int64_t> pathId(const Call& call, const std::string& name) {
  const auto& text = call.params.at(name);
  if (text.empty() || text.size() > 18 || text.find_first_not_of("0123456789") != std::string::npos)
    return std::nullopt;
  const int64_t id = std::stoll(text);
  if (id <= 0) return std::nullopt;
  return id;
}

Reply unknownId(const std::string& what, const Call& call) {
  return errorReply(404, ports::errors::kNotFound,
                    what + " " + call.params.at("id") + " not found");
}

common::Result<json> parseObject(const std::string& body) {
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return common::Result<json>::failure(ports::errors::kInvalid, "request body is not valid JSON");
  }
  if (!parsed.is_object()) {
    return common::Result<json>::failure(ports::errors::kInvalid,
                                         "request body must be a JSON object");
  }
  return parsed;
}

std::optional<double> queryNumber(const Call& call, const std::string& key,
                                  std::vector<domain::Violation>& violations,
                                  std::optional<double> fallback = std::nullopt) {
  const auto it = call.query.find(key);
  if (it == call.query.end() || it->second.empty()) {
    if (!fallback) violations.push_back({key, "is required"});
    return fallback;
  }
  char* end = nullptr;
  const double value = std::strtod(it->second.c_str(), &end);
  if (end == it->second.c_str() || *end != '\0' || !std::isfinite(value)) {
    violations.push_back({key, "must be a number"});
    return std::nullopt;
  }
  return value;
}

ports::Page pageOf(const Call& call, std::vector<domain::Violation>& violations) {
  ports::Page page;
  if (auto limit = queryNumber(call, "limit", violations, 50.0)) page.limit = std::llround(*limit);
  if (auto offset = queryNumber(call, "offset", violations, 0.0))
    page.offset = std::llround(*offset);
  return page;
}

template <typename T>
json listingJson(const ports::Listing<T>& listing) {
  json data = json::array();
  for (const auto& item : listing.items)
    data.push_back(toJson(item));
  return json{{"data", std::move(data)},
              {"total", listing.total},
              {"limit", listing.page.limit},
              {"offset", listing.page.offset}};
}

Reply created(Reply r, const std::string& location) {
  if (r.status == 200) {
    r.status = 201;
    r.headers["Location"] = location;
  }
  return r;
}

// ---- the legacy API ------------------------------------------------------------------------

Reply postPassenger(ports::RideShareService& service, const Call& call) {
  auto body = parseObject(call.body);
  if (!body.ok()) return failure(body.error());
  std::vector<domain::Violation> violations;
  FieldReader fields(*body, violations);
  ports::NewPassenger request{fields.requiredString("name"), fields.requiredString("phone"),
                              fields.optionalString("email")};
  if (!violations.empty()) return errorReply(400, ports::errors::kInvalid, describe(violations));
  auto r = reply(service.registerPassenger(request), [](const auto& p) { return toJson(p); });
  return created(r, "/api/passengers/" + (r.status == 200 ? r.body["id"].dump() : ""));
}

Reply getPassenger(ports::RideShareService& service, const Call& call) {
  const auto id = pathId(call, "id");
  if (!id) return unknownId("passenger", call);
  return reply(service.passenger(*id), [](const auto& p) { return toJson(p); });
}

Reply listPassengers(ports::RideShareService& service, const Call& call) {
  std::vector<domain::Violation> violations;
  const auto page = pageOf(call, violations);
  if (!violations.empty()) return errorReply(400, ports::errors::kInvalid, describe(violations));
  return reply(service.passengers(page), [](const auto& l) { return listingJson(l); });
}

Reply postDriver(ports::RideShareService& service, const Call& call) {
  auto body = parseObject(call.body);
  if (!body.ok()) return failure(body.error());
  std::vector<domain::Violation> violations;
  FieldReader fields(*body, violations);
  ports::NewDriver request;
  request.name = fields.requiredString("name");
  request.phone = fields.requiredString("phone");
  if (const json* car = fields.object("car", true)) {
    FieldReader car_fields(*car, violations, "car.");
    request.vehicle.plate = car_fields.requiredString("plate");
    request.vehicle.model = car_fields.requiredString("model");
  }
  if (auto status = fields.optionalString("status")) {
    auto parsed = domain::driverStatusFromString(*status);
    if (!parsed || *parsed == domain::DriverStatus::kOnTrip) {
      violations.push_back({"status", "must be \"offline\" or \"available\""});
    } else {
      request.status = *parsed;
    }
  }
  request.location = fields.point("location", false);
  if (!violations.empty()) return errorReply(400, ports::errors::kInvalid, describe(violations));
  auto r = reply(service.registerDriver(request), [](const auto& d) { return toJson(d); });
  return created(r, "/api/drivers/" + (r.status == 200 ? r.body["id"].dump() : ""));
}

Reply getDriver(ports::RideShareService& service, const Call& call) {
  const auto id = pathId(call, "id");
  if (!id) return unknownId("driver", call);
  return reply(service.driver(*id), [](const auto& d) { return toJson(d); });
}

Reply listDrivers(ports::RideShareService& service, const Call& call) {
  std::vector<domain::Violation> violations;
  const auto page = pageOf(call, violations);
  if (!violations.empty()) return errorReply(400, ports::errors::kInvalid, describe(violations));
  return reply(service.drivers(page), [](const auto& l) { return listingJson(l); });
}

Reply putDriverLocation(ports::RideShareService& service, const Call& call) {
  const auto id = pathId(call, "id");
  if (!id) return unknownId("driver", call);
  auto body = parseObject(call.body);
  if (!body.ok()) return failure(body.error());
  std::vector<domain::Violation> violations;
  FieldReader fields(*body, violations);
  const auto lat = fields.requiredNumber("lat");
  const auto lng = fields.requiredNumber("lng");
  if (lat && lng) {
    if (auto why = domain::checkDegrees(*lat, *lng)) violations.push_back({"location", *why});
  }
  if (!violations.empty()) return errorReply(400, ports::errors::kInvalid, describe(violations));
  return reply(service.moveDriver(*id, domain::GeoPoint::fromDegrees(*lat, *lng)),
               [](const auto& d) { return toJson(d); });
}

Reply putDriverStatus(ports::RideShareService& service, const Call& call) {
  const auto id = pathId(call, "id");
  if (!id) return unknownId("driver", call);
  auto body = parseObject(call.body);
  if (!body.ok()) return failure(body.error());
  std::vector<domain::Violation> violations;
  FieldReader fields(*body, violations);
  const auto text = fields.requiredString("status");
  if (!violations.empty()) return errorReply(400, ports::errors::kInvalid, describe(violations));
  const auto status = domain::driverStatusFromString(text);
  if (!status) {
    return errorReply(400, ports::errors::kInvalid, "status: must be \"offline\" or \"available\"");
  }
  return reply(service.setDriverStatus(*id, *status), [](const auto& d) { return toJson(d); });
}

Reply nearbyDrivers(ports::RideShareService& service, const Call& call) {
  std::vector<domain::Violation> violations;
  const auto lat = queryNumber(call, "lat", violations);
  const auto lng = queryNumber(call, "lng", violations);
  const auto radius_km = queryNumber(call, "radius_km", violations, 5.0);
  const auto limit = queryNumber(call, "limit", violations, 20.0);
  if (lat && lng) {
    if (auto why = domain::checkDegrees(*lat, *lng)) violations.push_back({"lat/lng", *why});
  }
  if (!violations.empty()) return errorReply(400, ports::errors::kInvalid, describe(violations));
  auto result = service.nearbyDrivers(domain::GeoPoint::fromDegrees(*lat, *lng),
                                      *radius_km * 1000.0, std::llround(*limit));
  return reply(result, [](const std::vector<ports::NearbyDriver>& drivers) {
    json data = json::array();
    for (const auto& nearby : drivers) {
      json item = toJson(ports::DriverView{nearby.driver, 0});
      item.erase("completed_trips");  // not computed for listings by distance
      item["distance_m"] = nearby.distance_m;
      data.push_back(std::move(item));
    }
    return json{{"data", std::move(data)}};
  });
}

Reply postTrip(ports::RideShareService& service, const Call& call) {
  auto body = parseObject(call.body);
  if (!body.ok()) return failure(body.error());
  std::vector<domain::Violation> violations;
  FieldReader fields(*body, violations);
  const auto passenger_id = fields.requiredId("passenger_id");
  const auto pickup = fields.point("pickup", true);
  const auto dropoff = fields.point("dropoff", true);
  if (!violations.empty()) return errorReply(400, ports::errors::kInvalid, describe(violations));
  auto r = reply(service.requestTrip({*passenger_id, *pickup, *dropoff}),
                 [](const auto& t) { return toJson(t); });
  return created(r, "/api/trips/" + (r.status == 200 ? r.body["id"].dump() : ""));
}

Reply getTrip(ports::RideShareService& service, const Call& call) {
  const auto id = pathId(call, "id");
  if (!id) return unknownId("trip", call);
  return reply(service.trip(*id), [](const auto& t) { return toJson(t); });
}

Reply completeTrip(ports::RideShareService& service, const Call& call) {
  const auto id = pathId(call, "id");
  if (!id) return unknownId("trip", call);
  return reply(service.completeTrip(*id), [](const auto& t) { return toJson(t); });
}

Reply getInvoice(ports::RideShareService& service, const Call& call) {
  const auto id = pathId(call, "id");
  if (!id) return unknownId("invoice", call);
  return reply(service.invoice(*id), [](const auto& i) { return toJson(i); });
}

Reply health(ports::RideShareService& service, const Call&) {
  if (!service.healthy()) return errorReply(503, "unavailable", "database is not answering");
  return Reply{200, json{{"status", "ok"}}, {}};
}

const std::vector<Route>& routes() {
  // Literal segments win over templates at the same position ("nearby" is not an id).
  static const std::vector<Route> table = {
      {"GET", {"healthz"}, health},
      {"POST", {"api", "passengers"}, postPassenger},
      {"GET", {"api", "passengers"}, listPassengers},
      {"GET", {"api", "passengers", "{id}"}, getPassenger},
      {"POST", {"api", "drivers"}, postDriver},
      {"GET", {"api", "drivers"}, listDrivers},
      {"GET", {"api", "drivers", "nearby"}, nearbyDrivers},
      {"GET", {"api", "drivers", "{id}"}, getDriver},
      {"PUT", {"api", "drivers", "{id}", "location"}, putDriverLocation},
      {"PUT", {"api", "drivers", "{id}", "status"}, putDriverStatus},
      {"POST", {"api", "trips"}, postTrip},
      {"GET", {"api", "trips", "{id}"}, getTrip},
      {"POST", {"api", "trips", "{id}", "complete"}, completeTrip},
      {"GET", {"api", "invoices", "{id}"}, getInvoice},
  };
  return table;
}

// Matches `segments` against a route pattern; literal segments beat templates, so a route
// with more literal segments wins when several match.
std::optional<int> matchScore(const Route& route, const std::vector<std::string>& segments,
                              std::map<std::string, std::string>& params) {
  if (route.pattern.size() != segments.size()) return std::nullopt;
  int literals = 0;
  std::map<std::string, std::string> captured;
  for (size_t i = 0; i < segments.size(); ++i) {
    const auto& part = route.pattern[i];
    if (part.size() > 2 && part.front() == '{' && part.back() == '}') {
      captured[part.substr(1, part.size() - 2)] = segments[i];
    } else if (part == segments[i]) {
      ++literals;
    } else {
      return std::nullopt;
    }
  }
  params = std::move(captured);
  return literals;
}

class ApiRequestHandler : public Poco::Net::HTTPRequestHandler {
 public:
  ApiRequestHandler(ports::RideShareService& service, const ApiOptions& options)
      : service_(service), options_(options) {}

  void handleRequest(Poco::Net::HTTPServerRequest& request,
                     Poco::Net::HTTPServerResponse& response) override {
    const auto started = std::chrono::steady_clock::now();
    Reply r;
    // The one place errors are caught: every failure becomes a status and a readable message.
    try {
      r = dispatch(request);
    } catch (const ports::StorageError& e) {
      r = errorReply(503, "storage_unavailable", e.what());
    } catch (const std::exception& e) {
      r = errorReply(500, "internal_error", e.what());
    }
    const std::string payload = r.body.dump();
    response.setStatusAndReason(static_cast<HTTPResponse::HTTPStatus>(r.status));
    response.setContentType("application/json");
    // After a refused body the rest of it is still on the wire: do not reuse the connection.
    if (r.status == 413) response.setKeepAlive(false);
    for (const auto& [name, value] : r.headers)
      response.set(name, value);
    response.setContentLength(static_cast<std::streamsize>(payload.size()));
    response.send() << payload;
    if (options_.access_log) {
      const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
                              std::chrono::steady_clock::now() - started)
                              .count();
      std::cerr << request.getMethod() << " " << request.getURI() << " " << r.status << " "
                << micros << "us\n";
    }
  }

 private:
  Reply dispatch(Poco::Net::HTTPServerRequest& request) {
    Poco::URI uri;
    try {
      uri = Poco::URI(request.getURI());
    } catch (const Poco::Exception&) {
      return errorReply(400, ports::errors::kInvalid, "malformed request target");
    }
    Call call;
    for (const auto& [key, value] : uri.getQueryParameters())
      call.query[key] = value;
    const auto segments = splitPath(uri.getPath());
    // The body is read before routing so that a keep-alive connection never carries an
    // unread body into the next request.
    if (auto refused = readBody(request, call.body)) return *refused;

    const Route* best = nullptr;
    int best_score = -1;
    std::vector<std::string> allowed;
    for (const auto& route : routes()) {
      std::map<std::string, std::string> params;
      const auto score = matchScore(route, segments, params);
      if (!score) continue;
      if (route.method != request.getMethod()) {
        allowed.push_back(route.method);
        continue;
      }
      if (*score > best_score) {
        best = &route;
        best_score = *score;
        call.params = std::move(params);
      }
    }
    if (best == nullptr) {
      if (allowed.empty()) {
        return errorReply(404, ports::errors::kNotFound, "no such endpoint: " + uri.getPath());
      }
      std::string allow;
      for (const auto& method : allowed)
        allow += (allow.empty() ? "" : ", ") + method;
      Reply r = errorReply(405, "method_not_allowed",
                           request.getMethod() + " is not allowed here (allowed: " + allow + ")");
      r.headers["Allow"] = allow;
      return r;
    }
    return best->handler(service_, call);
  }

  std::optional<Reply> readBody(Poco::Net::HTTPServerRequest& request, std::string& body) {
    if (request.hasContentLength() &&
        request.getContentLength64() > static_cast<int64_t>(options_.max_body_bytes)) {
      // Read and discard a moderately oversized body so the client, still sending, gets to
      // read the 413 instead of a connection reset. Beyond that, answer and close at once.
      if (request.getContentLength64() <= kMaxDrainBytes) {
        request.stream().ignore(std::numeric_limits<std::streamsize>::max());
      }
      return errorReply(
          413, "payload_too_large",
          "request body exceeds " + std::to_string(options_.max_body_bytes) + " bytes");
    }
    // Without Content-Length or chunked framing a request has no body (RFC 9112 6.3); reading
    // the stream then would wait for the client to close the connection.
    if (!request.hasContentLength() && !request.getChunkedTransferEncoding()) return std::nullopt;
    std::istream& in = request.stream();
    char buffer[8192];
    while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {
      body.append(buffer, static_cast<size_t>(in.gcount()));
      if (body.size() > options_.max_body_bytes) {
        return errorReply(
            413, "payload_too_large",
            "request body exceeds " + std::to_string(options_.max_body_bytes) + " bytes");
      }
    }
    return std::nullopt;
  }

  ports::RideShareService& service_;
  const ApiOptions& options_;
};

}  // namespace

ApiHandlerFactory::ApiHandlerFactory(ports::RideShareService& service, ApiOptions options)
    : service_(service), options_(options) {}

Poco::Net::HTTPRequestHandler* ApiHandlerFactory::createRequestHandler(
    const Poco::Net::HTTPServerRequest&) {
  return new ApiRequestHandler(service_, options_);
}

}  // namespace strangler::monolith::http
