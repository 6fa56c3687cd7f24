// Shared by every C++ entry point of lt: errors go back to Rust as text in a caller's buffer, and
// no C++ exception ever unwinds across the FFI.
#pragma once
#include <cstring>
#include <exception>
#include <string>

namespace lt_ffi {

// Copies `s` into `buf` (NUL-terminated, truncated to `len`).
inline void write_str(const std::string& s, char* buf, size_t len) {
  if (len == 0) return;
  size_t n = s.size() < len - 1 ? s.size() : len - 1;
  std::memcpy(buf, s.data(), n);
  buf[n] = 0;
}

// Runs `f`, turning any C++ exception into an error message in `buf`: 0 on success, 1 on error.
template <typename F>
int guarded(char* buf, size_t len, F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    write_str(e.what(), buf, len);
    return 1;
  } catch (...) {
    write_str("unknown C++ exception", buf, len);
    return 1;
  }
}

}  // namespace lt_ffi
