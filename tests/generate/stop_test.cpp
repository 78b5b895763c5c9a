#include "generate/stop.h"

#include <gtest/gtest.h>

namespace vlm {
namespace {

TEST(StopStrings, MatchSpanningPiecesIsCutAndNeverEmitted) {
  StopStringMatcher m({"o w"});
  std::string emitted;
  for (const char* piece : {"Hel", "lo ", "wor", "ld"}) {
    auto out = m.push(piece);
    emitted += out.text;
    if (out.stopped) break;
  }
  EXPECT_EQ(emitted, "Hell");
  EXPECT_TRUE(m.stopped());
  EXPECT_TRUE(m.push("more").stopped);
  EXPECT_EQ(m.push("more").text, "");
}

TEST(StopStrings, PossiblePrefixIsHeldBackThenReleased) {
  StopStringMatcher m({"lox"});
  EXPECT_EQ(m.push("Hel").text, "He");  // "l" could start "lox"
  EXPECT_EQ(m.push("lo").text, "l");    // "lo" could
  EXPECT_EQ(m.push(" there").text, "lo there");
  EXPECT_EQ(m.flush(), "");
  EXPECT_FALSE(m.stopped());
}

TEST(StopStrings, FlushReleasesAnUnfinishedPrefix) {
  StopStringMatcher m({"END"});
  EXPECT_EQ(m.push("the EN").text, "the ");
  EXPECT_EQ(m.flush(), "EN");
}

TEST(StopStrings, EarliestOfSeveralStopsWins) {
  StopStringMatcher m({"cd", "b"});
  auto out = m.push("abcd");
  EXPECT_TRUE(out.stopped);
  EXPECT_EQ(out.text, "a");
}

TEST(StopStrings, StopInsideOnePieceAndMultibyteText) {
  StopStringMatcher m({"\xC3\xA9t\xC3\xA9"});  // "été"
  auto a = m.push("un \xC3\xA9");
  EXPECT_EQ(a.text, "un ");
  auto b = m.push("t\xC3\xA9 chaud");
  EXPECT_TRUE(b.stopped);
  EXPECT_EQ(b.text, "");
}

TEST(StopStrings, NoStopsPassesEverythingThrough) {
  StopStringMatcher m({"", ""});
  EXPECT_EQ(m.push("abc").text, "abc");
  EXPECT_FALSE(m.push("def").stopped);
}

}  // namespace
}  // namespace vlm
