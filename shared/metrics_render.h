#pragma once
// Prometheus text exposition (format 0.0.4) of a StatusSnapshot: what the
// supervisor's metrics endpoint (supervisor/metrics_server.h) answers to
// GET /metrics. Pure, so that the exact text is unit-tested; docs/metrics.md
// lists every metric. Samples of one family are grouped under a single
// HELP/TYPE pair, as the format requires.

#include <string>
#include <string_view>

#include "shared/status_snapshot.h"

namespace rtpc {

std::string renderPrometheus(const StatusSnapshot& snapshot);

// A label value as it goes between the quotes: \ " and newline escaped.
std::string escapeLabelValue(std::string_view value);

}  // namespace rtpc
