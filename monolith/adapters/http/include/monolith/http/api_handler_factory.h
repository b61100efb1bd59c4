#pragma once

#include <Poco/Net/HTTPRequestHandlerFactory.h>

#include <cstddef>

#include "monolith/ports/rideshare_service.h"

namespace strangler::monolith::http {

struct ApiOptions {
  std::size_t max_body_bytes = 64 * 1024;  ///< larger request bodies get 413
  bool access_log = false;                 ///< one line per request on stderr
};

/// Serves the legacy RideShare JSON API (see monolith/README.md) on Poco's HTTPServer.
class ApiHandlerFactory : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  ApiHandlerFactory(ports::RideShareService& service, ApiOptions options);
  /// One handler per request; it dispatches on method and path.
  Poco::Net::HTTPRequestHandler* createRequestHandler(
      const Poco::Net::HTTPServerRequest& request) override;

 private:
  ports::RideShareService& service_;
  ApiOptions options_;
};

}  // namespace strangler::monolith::http
