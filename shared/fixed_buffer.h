#pragma once
// A bounded, allocation-free output buffer for wire text. Command and reply
// formatting on the hot path append into one of these instead of std::string.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace rtpc {

template <size_t Capacity>
class FixedBuffer {
 public:
  // Appends text; returns false (and leaves the buffer marked overflowed) when
  // it does not fit, so callers can answer an error instead of truncating.
  bool append(std::string_view s) {
    if (s.size() > Capacity - size_) {
      overflow_ = true;
      return false;
    }
    std::memcpy(data_ + size_, s.data(), s.size());
    size_ += s.size();
    return true;
  }
  bool append(char c) { return append(std::string_view(&c, 1)); }
  bool appendUnsigned(uint64_t v) {
    char tmp[24];
    size_t n = 0;
    do {
      tmp[sizeof tmp - 1 - n++] = static_cast<char>('0' + v % 10);
      v /= 10;
    } while (v != 0);
    return append(std::string_view(tmp + sizeof tmp - n, n));
  }
  void clear() {
    size_ = 0;
    overflow_ = false;
  }
  // Drops everything after `size` (used to roll back a partial append).
  void truncate(size_t size) {
    if (size < size_) size_ = size;
  }
  std::string_view view() const { return {data_, size_}; }
  const char* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  bool overflowed() const { return overflow_; }
  static constexpr size_t capacity() { return Capacity; }

 private:
  char data_[Capacity];
  size_t size_ = 0;
  bool overflow_ = false;
};

}  // namespace rtpc
