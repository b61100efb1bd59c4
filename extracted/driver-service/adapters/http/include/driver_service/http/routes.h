#pragma once

#include <vector>

#include "driver_service/ports/ports.h"
#include "strangler/common/json_api.h"

namespace strangler::driver_service::http {

/// The service's own API: /v2/drivers/... in its own model (see extracted/README.md).
std::vector<common::ApiRoute> modernRoutes(ports::DriverService& service);

/// The monolith's legacy driver endpoints (/api/drivers/...), answered through the ACL with the
/// legacy shapes, status codes and messages, so the proxy can move /api/drivers/** here.
std::vector<common::ApiRoute> legacyRoutes(ports::DriverService& service);

}  // namespace strangler::driver_service::http
