// The proxy's dashboard in a real browser: headless Chromium, driven over the DevTools protocol,
// loads the admin page of a running demo and of an idle proxy, reads the figures it shows and
// saves a screenshot. Skipped when Chromium is missing, unless STRANGLER_REQUIRE_BROWSER=1.
#include <Poco/Base64Decoder.h>
#include <Poco/Buffer.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/NetException.h>
#include <Poco/Net/WebSocket.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "strangler/testing/http_client.h"
#include "strangler/testing/process.h"
#include "strangler/testing/temp_dir.h"

namespace strangler::cli {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::seconds;
using strangler::testing::ChildProcess;
using Clock = std::chrono::steady_clock;

bool browserRequired() {
  const char* flag = std::getenv("STRANGLER_REQUIRE_BROWSER");
  return flag != nullptr && std::string(flag) == "1";
}

// Chromium's binary: $STRANGLER_CHROMIUM, else the usual names on PATH.
std::optional<std::string> findChromium() {
  if (const char* explicit_path = std::getenv("STRANGLER_CHROMIUM"); explicit_path != nullptr) {
    if (access(explicit_path, X_OK) == 0) return std::string(explicit_path);
    return std::nullopt;
  }
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    for (const char* name : {"chromium", "chromium-browser", "google-chrome", "chrome"}) {
      const auto candidate = fs::path(dir) / name;
      if (access(candidate.c_str(), X_OK) == 0) return candidate.string();
    }
  }
  return std::nullopt;
}

#define REQUIRE_CHROMIUM(var)                                                               \
  const auto var = findChromium();                                                          \
  if (!var) {                                                                               \
    if (browserRequired()) FAIL() << "STRANGLER_REQUIRE_BROWSER=1 but Chromium is missing"; \
    GTEST_SKIP() << "Chromium not installed: browser test skipped";                         \
  }

std::string readFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

/// One page of a headless Chromium, over the DevTools protocol (JSON messages on a WebSocket).
class DevToolsPage {
 public:
  DevToolsPage(uint16_t port, const std::string& path) : session_("127.0.0.1", port) {
    Poco::Net::HTTPRequest request(Poco::Net::HTTPRequest::HTTP_GET, path,
                                   Poco::Net::HTTPMessage::HTTP_1_1);
    Poco::Net::HTTPResponse response;
    socket_ = std::make_unique<Poco::Net::WebSocket>(session_, request, response);
    socket_->setMaxPayloadSize(64 << 20);
  }

  /// Sends a command and waits for its answer; DevTools events received meanwhile are kept.
  json call(const std::string& method, json params = json::object(),
            milliseconds timeout = seconds(15)) {
    const int id = next_id_++;
    const std::string message = json{{"id", id}, {"method", method}, {"params", params}}.dump();
    socket_->sendFrame(message.data(), static_cast<int>(message.size()),
                       Poco::Net::WebSocket::FRAME_TEXT);
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      auto incoming = receive(deadline, method);
      if (!incoming.contains("id")) {
        events_.push_back(std::move(incoming));
        continue;
      }
      if (incoming["id"] != id) continue;
      if (incoming.contains("error"))
        throw std::runtime_error(method + " failed: " + incoming["error"].dump());
      return incoming.value("result", json::object());
    }
  }

  /// Evaluates a JavaScript expression in the page and returns its value.
  json evaluate(const std::string& expression) {
    const auto result =
        call("Runtime.evaluate", {{"expression", expression}, {"returnByValue", true}});
    if (result.contains("exceptionDetails"))
      throw std::runtime_error("page script failed: " + result["exceptionDetails"].dump());
    return result["result"].value("value", json(nullptr));
  }

  /// Events received so far (network requests, uncaught exceptions, ...).
  const std::vector<json>& events() const { return events_; }

 private:
  json receive(Clock::time_point deadline, const std::string& waiting_for) {
    std::string message;
    for (;;) {
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) throw std::runtime_error("no answer to " + waiting_for + " in time");
      socket_->setReceiveTimeout(Poco::Timespan(left.count() * 1000));
      Poco::Buffer<char> buffer(0);
      int flags = 0;
      try {
        socket_->receiveFrame(buffer, flags);
      } catch (const Poco::TimeoutException&) {
        throw std::runtime_error("no answer to " + waiting_for + " in time");
      }
      const int opcode = flags & Poco::Net::WebSocket::FRAME_OP_BITMASK;
      if (opcode == Poco::Net::WebSocket::FRAME_OP_CLOSE)
        throw std::runtime_error("the browser closed the DevTools connection");
      if (opcode == Poco::Net::WebSocket::FRAME_OP_PING ||
          opcode == Poco::Net::WebSocket::FRAME_OP_PONG)
        continue;
      message.append(buffer.begin(), buffer.size());
      if ((flags & Poco::Net::WebSocket::FRAME_FLAG_FIN) != 0) return json::parse(message);
    }
  }

  Poco::Net::HTTPClientSession session_;
  std::unique_ptr<Poco::Net::WebSocket> socket_;
  int next_id_ = 1;
  std::vector<json> events_;
};

/// A headless Chromium on a loopback DevTools port, with its own throwaway profile.
class HeadlessChromium {
 public:
  HeadlessChromium(const std::string& binary, const fs::path& dir) : dir_(dir) {
    fs::create_directories(dir_ / "profile");
    // Through a shell only to send Chromium's own output to a log file: its helper processes
    // would otherwise hold the test's stdout pipe open.
    process_ = ChildProcess::start("/bin/sh",
                                   {"-c",
                                    "exec \"$0\" \"$@\" >\"$STRANGLER_CHROMIUM_LOG\" 2>&1",
                                    binary,
                                    "--headless=new",
                                    "--no-sandbox",
                                    "--disable-gpu",
                                    "--disable-dev-shm-usage",
                                    "--no-first-run",
                                    "--no-default-browser-check",
                                    "--disable-extensions",
                                    "--disable-sync",
                                    "--disable-background-networking",
                                    "--disable-component-update",
                                    "--disable-default-apps",
                                    "--mute-audio",
                                    "--hide-scrollbars",
                                    "--remote-debugging-address=127.0.0.1",
                                    "--remote-debugging-port=0",
                                    "--user-data-dir=" + (dir_ / "profile").string(),
                                    "--window-size=1400,1100",
                                    "about:blank"},
                                   {{"STRANGLER_CHROMIUM_LOG", (dir_ / "chromium.log").string()}});
    // Chromium writes the DevTools port it bound into the profile folder.
    const auto deadline = Clock::now() + seconds(30);
    const auto port_file = dir_ / "profile" / "DevToolsActivePort";
    while (port_ == 0) {
      if (Clock::now() > deadline) throw std::runtime_error("Chromium did not start: " + log());
      if (process_->wait(milliseconds(100))) throw std::runtime_error("Chromium exited: " + log());
      std::istringstream lines(readFile(port_file));
      std::string first;
      if (std::getline(lines, first) && !first.empty() && lines.good())
        port_ = static_cast<uint16_t>(std::stoi(first));
    }
  }

  ~HeadlessChromium() {
    if (process_) process_->stop(seconds(5));
  }

  /// Opens the DevTools connection to the browser's first page.
  std::unique_ptr<DevToolsPage> page() {
    const auto targets =
        strangler::testing::httpRequest("127.0.0.1", port_, "GET", "/json/list").json();
    for (const auto& target : targets) {
      if (target.value("type", "") != "page") continue;
      const std::string url = target.value("webSocketDebuggerUrl", "");
      const auto path = url.find('/', std::string("ws://").size());
      if (path != std::string::npos) return std::make_unique<DevToolsPage>(port_, url.substr(path));
    }
    throw std::runtime_error("Chromium has no page: " + targets.dump());
  }

  /// Asks the browser to quit, then makes sure it did.
  void close(DevToolsPage& page) {
    try {
      page.call("Browser.close", json::object(), seconds(5));
    } catch (const std::exception&) {
      // The browser may drop the connection before it answers: it is quitting either way.
    }
    if (!process_->wait(seconds(5))) process_->stop(seconds(5));
  }

  std::string log() const { return readFile(dir_ / "chromium.log").substr(0, 4000); }

 private:
  fs::path dir_;
  std::unique_ptr<ChildProcess> process_;
  uint16_t port_ = 0;
};

// What the dashboard shows for one route, and the page's own state.
const char* const kReadRoute = R"JS(
JSON.stringify((function (name) {
  if (!document.getElementById('connection')) return {found: false, polls: 0};  // still loading
  const card = document.querySelector('[data-route="' + name + '"]');
  const text = (root, field) => {
    const el = root && root.querySelector('[data-field="' + field + '"]');
    return el ? el.textContent.trim() : null;
  };
  const sync = document.getElementById('sync');
  return {
    polls: Number(document.body.dataset.polls),
    connection: document.getElementById('connection').dataset.state,
    version: text(document, 'config-version'),
    found: !!card,
    stage: text(card, 'stage'),
    percent: text(card, 'percent'),
    target: text(card, 'target'),
    requests: card ? Number(card.dataset.requests) : null,
    requests_text: text(card, 'requests'),
    rps: text(card, 'rps'),
    rps_target: text(card, 'rps-target'),
    circuit: text(card, 'circuit'),
    mismatches: text(card, 'mismatches'),
    diff_count: text(card, 'diff-count'),
    diff_note: text(card, 'diff-note'),
    no_routes_hidden: document.getElementById('no-routes').hidden,
    sync_panel: sync.dataset.state,
    sync_state: text(sync, 'sync-state'),
    sync_lag: text(sync, 'lag-ms'),
    sync_pending: text(sync, 'pending'),
    upstreams: document.querySelectorAll('#upstream-rows tr[data-upstream]').length
  };
})(ROUTE))
)JS";

json readRoute(DevToolsPage& page, const std::string& route) {
  std::string expression = kReadRoute;
  expression.replace(expression.find("ROUTE"), 5, json(route).dump());
  return json::parse(page.evaluate(expression).get<std::string>());
}

// Polls the page until `ready` holds for a reading of `route`, or fails after `timeout`.
template <typename Ready>
json waitForReading(DevToolsPage& page, const std::string& route, Ready ready,
                    milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  json reading;
  while (Clock::now() < deadline) {
    reading = readRoute(page, route);
    if (ready(reading)) return reading;
    std::this_thread::sleep_for(milliseconds(200));
  }
  throw std::runtime_error("the dashboard never got ready; last reading: " + reading.dump());
}

void openDashboard(DevToolsPage& page, const std::string& url) {
  page.call("Runtime.enable");
  page.call("Network.enable");
  page.call("Page.enable");
  page.call("Emulation.setDeviceMetricsOverride",
            {{"width", 1400}, {"height", 1100}, {"deviceScaleFactor", 1}, {"mobile", false}});
  page.call("Page.navigate", {{"url", url}});
}

// Every request the page made went to the admin API it was loaded from, and no script failed.
void expectSelfContained(const DevToolsPage& page, const std::string& origin) {
  int requests = 0;
  for (const auto& event : page.events()) {
    const std::string method = event.value("method", "");
    if (method == "Runtime.exceptionThrown")
      ADD_FAILURE() << "uncaught exception in the dashboard: " << event["params"].dump();
    if (method != "Network.requestWillBeSent") continue;
    ++requests;
    const std::string url = event["params"]["request"].value("url", "");
    EXPECT_EQ(url.rfind(origin, 0), 0u) << "the dashboard requested " << url;
  }
  EXPECT_GT(requests, 2) << "the page made no requests: were the events recorded?";
}

fs::path saveScreenshot(DevToolsPage& page, const std::string& name) {
  const auto shot =
      page.call("Page.captureScreenshot", {{"format", "png"}, {"captureBeyondViewport", true}});
  std::istringstream encoded(shot.value("data", ""));
  Poco::Base64Decoder decoder(encoded);
  std::string png((std::istreambuf_iterator<char>(decoder)), std::istreambuf_iterator<char>());
  const fs::path dir = STRANGLER_TEST_ARTIFACTS_DIR;
  fs::create_directories(dir);
  const fs::path file = dir / name;
  std::ofstream(file, std::ios::binary) << png;
  EXPECT_GT(png.size(), 1000u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  std::cout << "dashboard screenshot: " << file.string() << std::endl;
  return file;
}

/// Requests through the proxy from a background thread, until destroyed.
class Traffic {
 public:
  explicit Traffic(uint16_t port)
      : thread_([this, port] {
          for (int i = 0; !stop_; ++i) {
            try {
              strangler::testing::httpRequest("127.0.0.1", port, "GET",
                                              "/api/drivers/" + std::to_string(201 + i % 200), "",
                                              {{"X-User-Id", std::to_string(i % 40)}}, seconds(5));
            } catch (const std::exception&) {
              // Counted by the proxy all the same; the assertions are on the dashboard.
            }
            std::this_thread::sleep_for(milliseconds(10));
          }
        }) {}
  ~Traffic() {
    stop_ = true;
    thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

uint16_t portIn(const std::string& text, const std::string& pattern) {
  std::smatch m;
  if (!std::regex_search(text, m, std::regex(pattern))) return 0;
  return static_cast<uint16_t>(std::stoi(m[1].str()));
}

TEST(DashboardBrowserTest, DemoDashboardShowsLiveRoutesAndSyncLag) {
  REQUIRE_CHROMIUM(chromium);
  strangler::testing::TempDir dir("strangler-dashboard");
  auto demo = ChildProcess::start(
      STRANGLER_CLI_BIN, {"demo", "--fast", "--keep-running", "--workdir", dir.file("demo")});
  ASSERT_TRUE(demo->waitForLine("(Ctrl-C stops everything)", seconds(200))) << demo->output();
  const std::string output = demo->output();
  const std::string tail = output.substr(output.find("Still running"));
  const uint16_t admin_port = portIn(tail, R"(dashboard: http://127\.0\.0\.1:(\d+)/)");
  const uint16_t proxy_port = portIn(tail, R"(proxy: +http://127\.0\.0\.1:(\d+))");
  ASSERT_NE(admin_port, 0) << output;
  ASSERT_NE(proxy_port, 0) << output;
  const std::string origin = "http://127.0.0.1:" + std::to_string(admin_port) + "/";
  std::cout << "demo up, dashboard " << origin << std::endl;

  Traffic traffic(proxy_port);
  HeadlessChromium browser(*chromium, dir.path() / "chromium");
  auto page = browser.page();
  openDashboard(*page, origin);

  // The demo ends with the drivers route extracted to driver-service.
  const auto first = waitForReading(
      *page, "drivers",
      [](const json& r) { return r["found"] == true && r["polls"].get<int>() >= 2; }, seconds(30));
  EXPECT_EQ(first["connection"], "live") << first.dump();
  EXPECT_EQ(first["stage"], "extracted") << first.dump();
  EXPECT_EQ(first["target"], "driver-service") << first.dump();
  EXPECT_EQ(first["percent"], "100") << first.dump();
  EXPECT_EQ(first["circuit"], "closed") << first.dump();
  EXPECT_EQ(first["upstreams"], 2) << first.dump();

  // A couple of seconds later, with traffic flowing, the counters and the rate have moved.
  std::this_thread::sleep_for(milliseconds(2500));
  const auto second = waitForReading(
      *page, "drivers",
      [&](const json& r) {
        return r["polls"].get<int>() >= first["polls"].get<int>() + 2 &&
               r["sync_panel"] == "live" && r["sync_lag"] != "—";
      },
      seconds(20));
  std::cout << "dashboard readings:\n  " << first.dump() << "\n  " << second.dump() << std::endl;
  EXPECT_GT(second["requests"].get<int64_t>(), first["requests"].get<int64_t>()) << second.dump();
  EXPECT_NE(second["requests_text"], first["requests_text"]);
  EXPECT_GT(std::stod(second["rps"].get<std::string>()), 0.0) << second.dump();
  EXPECT_GT(std::stod(second["rps_target"].get<std::string>()), 0.0) << second.dump();
  // The sync job's figures, relayed by the proxy's GET /sync.
  EXPECT_EQ(second["sync_state"], "streaming") << second.dump();
  EXPECT_TRUE(std::regex_match(second["sync_lag"].get<std::string>(), std::regex(R"([\d,]+ ms)")))
      << second.dump();

  // The shadow stage's mismatches (if it had any) are listed from GET /diffs; expand the
  // newest one for the screenshot.
  if (second["mismatches"] != "0") {
    const auto listed = waitForReading(
        *page, "drivers", [](const json& r) { return r["diff_count"] != "0"; }, seconds(10));
    page->evaluate(
        "(() => { const d = document.querySelector('[data-route=\"drivers\"] "
        "[data-field=\"diffs\"]'); d.open = true; const first = d.querySelector('li details'); "
        "if (first) first.open = true; return true; })()");
    EXPECT_NE(listed["diff_count"], "0");
  }
  saveScreenshot(*page, "dashboard.png");
  expectSelfContained(*page, origin);
  browser.close(*page);

  demo->signal(SIGINT);
  const auto code = demo->wait(seconds(30));
  EXPECT_TRUE(code.has_value()) << "the demo did not stop on SIGINT";
  EXPECT_THROW(strangler::testing::httpRequest("127.0.0.1", proxy_port, "GET", "/api/drivers/1", "",
                                               {}, seconds(2)),
               std::exception)
      << "the demo's proxy still answers";
}

TEST(DashboardBrowserTest, IdleProxyWithoutSyncShowsRoutesAndNoErrors) {
  REQUIRE_CHROMIUM(chromium);
  strangler::testing::TempDir dir("strangler-dashboard-idle");
  const std::string closed = "127.0.0.1:" + std::to_string(strangler::testing::freeLoopbackPort());
  const json config{
      {"listen", "127.0.0.1:0"},
      {"admin", {{"listen", "127.0.0.1:0"}}},
      {"upstreams",
       {{"monolith", {{"endpoints", {closed}}}},
        {"svc",
         {{"endpoints", {closed}},
          {"circuit_breaker", {{"consecutive_failures", 3}, {"open_ms", 1000}}}}}}},
      {"default_upstream", "monolith"},
      {"routes",
       {{{"name", "drivers"},
         {"match", {{"path", "/api/drivers/**"}}},
         {"target", "svc"},
         {"stage", "shadow"}},
        {{"name", "legacy"}, {"match", {{"path", "/api/legacy"}}}, {"stage", "monolith"}}}}};
  std::ofstream(dir.file("strangler.json")) << config.dump(2);
  auto proxy = ChildProcess::start(STRANGLER_PROXY_BIN, {"--config", dir.file("strangler.json")});
  const auto line = proxy->waitForLine("listening on", seconds(20));
  ASSERT_TRUE(line) << proxy->output();
  const uint16_t admin_port = portIn(*line, R"(admin http://127\.0\.0\.1:(\d+))");
  ASSERT_NE(admin_port, 0) << *line;
  const std::string origin = "http://127.0.0.1:" + std::to_string(admin_port) + "/";

  HeadlessChromium browser(*chromium, dir.path() / "chromium");
  auto page = browser.page();
  openDashboard(*page, origin);
  // Two polls and a /diffs fetch for the shadow route, all with nothing to show.
  const auto reading = waitForReading(
      *page, "drivers",
      [](const json& r) { return r["found"] == true && r["polls"].get<int>() >= 3; }, seconds(30));
  EXPECT_EQ(reading["connection"], "live") << reading.dump();
  EXPECT_EQ(reading["version"], "1") << reading.dump();
  EXPECT_EQ(reading["stage"], "shadow") << reading.dump();
  EXPECT_EQ(reading["requests_text"], "0") << reading.dump();
  EXPECT_EQ(reading["rps"], "0.0") << reading.dump();
  EXPECT_EQ(reading["mismatches"], "0") << reading.dump();
  EXPECT_EQ(reading["diff_count"], "0") << reading.dump();
  EXPECT_EQ(reading["sync_panel"], "off") << reading.dump();
  EXPECT_EQ(reading["sync_state"], "not configured") << reading.dump();
  const auto legacy = readRoute(*page, "legacy");
  EXPECT_TRUE(legacy["found"].get<bool>()) << legacy.dump();
  EXPECT_EQ(legacy["stage"], "monolith") << legacy.dump();
  EXPECT_EQ(legacy["target"], "—") << legacy.dump();
  saveScreenshot(*page, "dashboard-idle.png");
  expectSelfContained(*page, origin);
  browser.close(*page);
}

}  // namespace
}  // namespace strangler::cli
