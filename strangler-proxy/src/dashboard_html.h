#pragma once

#include <string_view>

namespace strangler::proxy {

/// The admin dashboard page (dashboard/index.html, compiled in at build time).
std::string_view dashboardHtml();

}  // namespace strangler::proxy
