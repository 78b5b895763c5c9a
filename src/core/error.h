// Library-boundary errors: one exception type whose message always carries its context
// (file, tensor, field) so that a user can act on it.
#pragma once
#include <stdexcept>
#include <string>

namespace vlm {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Builds a message from any streamable pieces: fail("file ", path, ": bad header").
template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts);

}  // namespace vlm

#include <sstream>
namespace vlm {
template <typename... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream os;
  (os << ... << parts);
  throw Error(os.str());
}
}  // namespace vlm
