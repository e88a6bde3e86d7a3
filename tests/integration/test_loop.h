#pragma once
// A libevent loop that an integration test drives from its own thread until
// a condition holds. Apart from test_support.h so that only the tests that
// run event-driven code in-process see libevent.

#include <event2/event.h>

#include <functional>

#include "tests/integration/test_support.h"

namespace rtpc::testing {

class TestLoop {
 public:
  TestLoop() : base_(event_base_new()) {
    // A tick so that one loop pass never blocks for long.
    tick_ = event_new(base_, -1, EV_PERSIST, [](evutil_socket_t, short, void*) {}, nullptr);
    const timeval tv{0, 5000};
    event_add(tick_, &tv);
  }
  ~TestLoop() {
    event_free(tick_);
    event_base_free(base_);
  }
  TestLoop(const TestLoop&) = delete;
  TestLoop& operator=(const TestLoop&) = delete;

  event_base* base() const { return base_; }

  bool runUntil(const std::function<bool()>& done, milliseconds limit = kWait) {
    const auto deadline = Clock::now() + limit;
    while (!done()) {
      if (Clock::now() > deadline) return false;
      event_base_loop(base_, EVLOOP_ONCE);
    }
    return true;
  }
  void runFor(milliseconds d) {
    const auto until = Clock::now() + d;
    runUntil([&] { return Clock::now() >= until; }, d + milliseconds(1000));
  }

 private:
  event_base* base_;
  event* tick_;
};

}  // namespace rtpc::testing
