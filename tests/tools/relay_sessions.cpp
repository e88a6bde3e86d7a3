#include "tests/tools/relay_sessions.h"

namespace rtpc {

PortAllocator::PortAllocator(uint16_t min_port, uint16_t max_port)
    : first_(static_cast<uint16_t>(min_port + (min_port & 1))) {
  // The RTCP port (p + 1) must fit as well.
  size_t n = 0;
  for (uint32_t p = first_; p + 1 <= max_port && p != 0; p += 2) ++n;
  used_.assign(n, false);
}

uint16_t PortAllocator::allocate() {
  if (in_use_ == used_.size()) return 0;
  // Round robin, so that a freed port is not handed out again at once (a late
  // packet for the old session would land in the new one).
  for (size_t tried = 0; tried < used_.size(); ++tried) {
    const size_t i = cursor_;
    cursor_ = cursor_ + 1 == used_.size() ? 0 : cursor_ + 1;
    if (!used_[i]) {
      used_[i] = true;
      ++in_use_;
      return static_cast<uint16_t>(first_ + 2 * i);
    }
  }
  return 0;
}

void PortAllocator::release(uint16_t port) {
  if (port < first_ || (port - first_) % 2 != 0) return;
  const size_t i = static_cast<size_t>(port - first_) / 2;
  if (i < used_.size() && used_[i]) {
    used_[i] = false;
    --in_use_;
  }
}

bool tagMatches(std::string_view stored, std::string_view tag) {
  if (stored == tag) return true;
  return stored.size() > tag.size() + 1 && stored.starts_with(tag) && stored[tag.size()] == ';';
}

RelaySessions::Found RelaySessions::find(std::string_view call_id, std::string_view from_tag,
                                         std::string_view to_tag) {
  const auto it = calls_.find(call_id);
  if (it == calls_.end()) return {};
  for (RelaySession& s : it->second) {
    if (s.from_tag == from_tag) return {&s, 0};
    if (!to_tag.empty() && tagMatches(s.from_tag, to_tag)) return {&s, 1};
  }
  return {};
}

RelaySession& RelaySessions::create(std::string_view call_id, std::string_view from_tag,
                                    uint64_t now_ms) {
  auto it = calls_.find(call_id);
  if (it == calls_.end()) it = calls_.emplace(std::string(call_id), std::vector<RelaySession>{}).first;
  RelaySession& s = it->second.emplace_back();
  s.from_tag.assign(from_tag);
  s.created_ms = now_ms;
  ++active_;
  ++created_;
  return s;
}

uint16_t RelaySessions::legPort(RelaySession& s, int leg, bool renew) {
  uint16_t& port = s.ports[leg];
  if (port != 0 && !renew) return port;
  const uint16_t fresh = ports_.allocate();
  if (fresh == 0) return 0;
  if (port != 0) {
    ports_.release(port);
  } else {
    ++streams_;
  }
  port = fresh;
  return port;
}

uint16_t RelaySessions::copyPort(RelaySession& s) {
  if (s.copy_port == 0) s.copy_port = ports_.allocate();
  return s.copy_port;
}

void RelaySessions::release(RelaySession& s, uint64_t now_ms) {
  for (uint16_t& p : s.ports) {
    if (p != 0) {
      ports_.release(p);
      --streams_;
      p = 0;
    }
  }
  if (s.copy_port != 0) ports_.release(s.copy_port);
  s.copy_port = 0;
  --active_;
  ++destroyed_;
  if (now_ms > s.created_ms) total_duration_ms_ += now_ms - s.created_ms;
}

size_t RelaySessions::deleteMatching(std::string_view call_id, std::string_view from_tag,
                                     std::string_view to_tag, bool weak, uint64_t now_ms) {
  const auto it = calls_.find(call_id);
  if (it == calls_.end()) return 0;
  std::vector<RelaySession>& v = it->second;
  size_t matched = 0;
  for (size_t i = 0; i < v.size();) {
    RelaySession& s = v[i];
    if (tagMatches(s.from_tag, from_tag) || (!to_tag.empty() && tagMatches(s.from_tag, to_tag))) {
      ++matched;
      (weak ? s.weak : s.strong) = false;
      if (!s.weak && !s.strong) {
        release(s, now_ms);
        v.erase(v.begin() + static_cast<std::ptrdiff_t>(i));
        continue;
      }
    }
    ++i;
  }
  if (v.empty()) calls_.erase(it);
  return matched;
}

void RelaySessions::erase(std::string_view call_id, const RelaySession* s, uint64_t now_ms) {
  const auto it = calls_.find(call_id);
  if (it == calls_.end()) return;
  std::vector<RelaySession>& v = it->second;
  for (size_t i = 0; i < v.size(); ++i) {
    if (&v[i] == s) {
      release(v[i], now_ms);
      v.erase(v.begin() + static_cast<std::ptrdiff_t>(i));
      break;
    }
  }
  if (v.empty()) calls_.erase(it);
}

size_t RelaySessions::expireCall(std::string_view call_id, uint64_t now_ms,
                                 const std::function<void(const RelaySession&)>& fn) {
  const auto it = calls_.find(call_id);
  if (it == calls_.end()) return 0;
  const size_t n = it->second.size();
  for (RelaySession& s : it->second) {
    fn(s);
    release(s, now_ms);
  }
  calls_.erase(it);
  return n;
}

void RelaySessions::clear(uint64_t now_ms) {
  for (auto& [id, v] : calls_) {
    for (RelaySession& s : v) release(s, now_ms);
  }
  calls_.clear();
}

}  // namespace rtpc
