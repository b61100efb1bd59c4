#include "strangler/proxy/circuit_breaker.h"

#include <gtest/gtest.h>

namespace strangler::proxy {
namespace {

using std::chrono::milliseconds;
using State = CircuitBreaker::State;

class CircuitBreakerTest : public ::testing::Test {
 protected:
  CircuitBreaker breaker_{CircuitBreakerConfig{3, 1000}};
  CircuitBreaker::Clock::time_point t0_ = CircuitBreaker::Clock::now();
};

TEST_F(CircuitBreakerTest, OpensAfterConsecutiveFailures) {
  breaker_.onFailure(t0_);
  breaker_.onFailure(t0_);
  EXPECT_EQ(breaker_.state(t0_), State::kClosed);
  EXPECT_TRUE(breaker_.allow(t0_));
  breaker_.onFailure(t0_);
  EXPECT_EQ(breaker_.state(t0_), State::kOpen);
  EXPECT_FALSE(breaker_.allow(t0_ + milliseconds(999)));
  EXPECT_EQ(breaker_.openings(), 1u);
}

TEST_F(CircuitBreakerTest, SuccessResetsTheFailureCount) {
  breaker_.onFailure(t0_);
  breaker_.onFailure(t0_);
  breaker_.onSuccess();
  breaker_.onFailure(t0_);
  breaker_.onFailure(t0_);
  EXPECT_EQ(breaker_.state(t0_), State::kClosed);
}

TEST_F(CircuitBreakerTest, HalfOpenLetsOneProbeThrough) {
  for (int i = 0; i < 3; ++i)
    breaker_.onFailure(t0_);
  const auto later = t0_ + milliseconds(1000);
  EXPECT_EQ(breaker_.state(later), State::kHalfOpen);
  EXPECT_TRUE(breaker_.allow(later));
  EXPECT_FALSE(breaker_.allow(later));
  EXPECT_FALSE(breaker_.allow(later + milliseconds(10)));
}

TEST_F(CircuitBreakerTest, ProbeSuccessClosesIt) {
  for (int i = 0; i < 3; ++i)
    breaker_.onFailure(t0_);
  const auto later = t0_ + milliseconds(1500);
  ASSERT_TRUE(breaker_.allow(later));
  breaker_.onSuccess();
  EXPECT_EQ(breaker_.state(later), State::kClosed);
  EXPECT_TRUE(breaker_.allow(later));
  EXPECT_TRUE(breaker_.allow(later));
}

TEST_F(CircuitBreakerTest, ProbeFailureReopensIt) {
  for (int i = 0; i < 3; ++i)
    breaker_.onFailure(t0_);
  const auto later = t0_ + milliseconds(1500);
  ASSERT_TRUE(breaker_.allow(later));
  breaker_.onFailure(later);
  EXPECT_EQ(breaker_.state(later), State::kOpen);
  EXPECT_FALSE(breaker_.allow(later + milliseconds(999)));
  EXPECT_TRUE(breaker_.allow(later + milliseconds(1000)));
  EXPECT_EQ(breaker_.openings(), 2u);
}

TEST_F(CircuitBreakerTest, ALostProbeDoesNotWedgeIt) {
  for (int i = 0; i < 3; ++i)
    breaker_.onFailure(t0_);
  const auto later = t0_ + milliseconds(1000);
  ASSERT_TRUE(breaker_.allow(later));
  EXPECT_TRUE(breaker_.allow(later + milliseconds(1000)));
}

}  // namespace
}  // namespace strangler::proxy
