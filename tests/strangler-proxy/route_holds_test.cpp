#include "strangler/proxy/route_holds.h"

#include <gtest/gtest.h>

#include <thread>

namespace strangler::proxy {
namespace {

using std::chrono::milliseconds;
using Clock = RouteHold::Clock;

TEST(RouteHoldTest, IsOffUntilHeldAndSwitchesOffWhenItsTimeIsUp) {
  RouteHold hold("drivers", 2);
  const auto t0 = Clock::now();
  EXPECT_FALSE(hold.flagged());
  EXPECT_FALSE(hold.activeAt(t0));
  const auto status = hold.hold(milliseconds(100), t0);
  EXPECT_TRUE(status.held);
  EXPECT_EQ(status.expires_in_ms, 100);
  EXPECT_TRUE(hold.flagged());
  EXPECT_TRUE(hold.activeAt(t0 + milliseconds(99)));
  EXPECT_EQ(hold.status(t0 + milliseconds(60)).expires_in_ms, 40);
  EXPECT_FALSE(hold.activeAt(t0 + milliseconds(100)));
  EXPECT_FALSE(hold.flagged());  // the cheap check sees it off from now on
  EXPECT_EQ(hold.status(t0 + milliseconds(100)).expires_in_ms, 0);
}

TEST(RouteHoldTest, HoldingAgainRefreshesTheExpiryOfTheSameHold) {
  RouteHold hold("drivers", 1);
  const auto t0 = Clock::now();
  hold.hold(milliseconds(100), t0);
  const auto epoch = hold.epoch();
  const auto status = hold.hold(milliseconds(500), t0 + milliseconds(50));
  EXPECT_EQ(status.expires_in_ms, 500);
  EXPECT_EQ(hold.epoch(), epoch);  // parked requests stay parked
  EXPECT_TRUE(hold.activeAt(t0 + milliseconds(300)));
  EXPECT_FALSE(hold.activeAt(t0 + milliseconds(550)));
  // After it ran out, a hold is a new one: requests parked by the old one are let go.
  hold.hold(milliseconds(100), t0 + milliseconds(600));
  EXPECT_NE(hold.epoch(), epoch);
}

TEST(RouteHoldTest, CountsInFlightUnsafeRequestsOverEveryWorker) {
  RouteHold hold("drivers", 3);
  hold.beginUnsafe(0);
  hold.beginUnsafe(2);
  hold.beginUnsafe(2);
  EXPECT_EQ(hold.status(Clock::now()).in_flight_unsafe, 3);
  hold.endUnsafe(2);
  hold.endUnsafe(0);
  EXPECT_EQ(hold.status(Clock::now()).in_flight_unsafe, 1);
  hold.endUnsafe(2);
  EXPECT_EQ(hold.status(Clock::now()).in_flight_unsafe, 0);
}

TEST(RouteHoldTest, ReleaseReportsTheWaitingRequestsAndTheLongestPause) {
  RouteHold hold("drivers", 1);
  hold.hold(milliseconds(10000), Clock::now());
  hold.onParked();
  hold.onParked();
  hold.onParked();
  hold.onUnparked(milliseconds(70), true);  // one timed out
  EXPECT_EQ(hold.waiting(), 2);
  const auto released = hold.release();
  EXPECT_EQ(released.released, 2);
  EXPECT_FALSE(hold.activeAt(Clock::now()));
  hold.onUnparked(milliseconds(30), false);
  hold.onUnparked(milliseconds(120), false);
  EXPECT_EQ(hold.maxHeldMs(), 120);
  EXPECT_EQ(hold.heldTotal(), 3u);
  EXPECT_EQ(hold.timeoutsTotal(), 1u);
  EXPECT_EQ(hold.release().released, 0);  // not held any more
  hold.hold(milliseconds(100), Clock::now());
  EXPECT_EQ(hold.maxHeldMs(), 0);  // a new hold has its own pause figure
}

TEST(RouteHoldsTest, KeepsOneHoldPerRouteNameAndWaitsForTheLoopsOnRelease) {
  RouteHolds holds(2);
  RouteHold& drivers = holds.get("drivers");
  EXPECT_EQ(&holds.get("drivers"), &drivers);
  EXPECT_EQ(holds.find("drivers"), &drivers);
  EXPECT_EQ(holds.find("trips"), nullptr);
  EXPECT_EQ(holds.release("trips", milliseconds(10)).released, 0);

  EXPECT_TRUE(holds.hold("drivers", milliseconds(5000)).held);
  drivers.onParked();
  // A loop lets the parked request go a moment after the release.
  std::thread loop([&] {
    while (drivers.activeAt(Clock::now()))
      std::this_thread::sleep_for(milliseconds(1));
    std::this_thread::sleep_for(milliseconds(20));
    drivers.onUnparked(milliseconds(250), false);
  });
  const auto released = holds.release("drivers", milliseconds(2000));
  loop.join();
  EXPECT_EQ(released.released, 1);
  EXPECT_EQ(released.max_held_ms, 250);
  EXPECT_EQ(drivers.waiting(), 0);
}

}  // namespace
}  // namespace strangler::proxy
