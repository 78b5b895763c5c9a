// How much of a long per-case fixture matrix a test runs. Release builds run all of it. Sanitizer
// builds (VLM_SANITIZE: ASan + UBSan, 5-20x slower; CI's second pass) run every third entry: the
// memory and undefined-behaviour checks need each code path once, and the Release pass of the same
// CI run has already compared every case with the oracle.
#pragma once
#include <cstddef>
#include <utility>
#include <vector>

namespace vlm::test {

#ifdef VLM_TEST_SANITIZED
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

// All of `cases`, or under sanitizers entries 0, 3, 6, ... (never none of a non-empty list).
template <class T>
std::vector<T> sanitizer_share(std::vector<T> cases) {
  if (!kSanitized) return cases;
  std::vector<T> kept;
  for (size_t i = 0; i < cases.size(); i += 3) kept.push_back(std::move(cases[i]));
  return kept;
}

}  // namespace vlm::test
