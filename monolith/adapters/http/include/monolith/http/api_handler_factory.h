#pragma once

#include <Poco/Net/HTTPRequestHandlerFactory.h>

#include <cstddef>

#include "monolith/ports/rideshare_service.h"

namespace strangler::monolith::http {

struct ApiOptions {
  std::size_t max_body_bytes = 64 * 1024;  ///< larger request bodies get 413
  bool access_log = false;                 ///< one line per request on stderr
};

/// The legacy RideShare JSON API (see monolith/README.md) as a handler factory for Poco's
/// HTTPServer.
Poco::Net::HTTPRequestHandlerFactory::Ptr makeApiHandlerFactory(ports::RideShareService& service,
                                                                const ApiOptions& options);

}  // namespace strangler::monolith::http
