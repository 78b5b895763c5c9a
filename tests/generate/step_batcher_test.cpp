// Continuous batching: generations on their own threads share StepBatcher's batched steps, join
// and leave mid-batch, and each gets exactly the tokens it gets alone.
#include "generate/step_batcher.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include "fake_model.h"

namespace vlm {
namespace {

using namespace std::chrono_literals;
using testing::FakeModel;
using testing::FakeScript;
using testing::FakeText;

// Records the size of every batched step (model calls run under the batcher's engine lock: serial).
class BatchRecordingModel : public FakeModel {
 public:
  using FakeModel::FakeModel;
  std::vector<std::vector<float>> step_batch(std::span<Sequence* const> sequences,
                                             std::span<const int32_t> tokens) const override {
    batch_sizes.push_back(sequences.size());
    return FakeModel::step_batch(sequences, tokens);
  }
  mutable std::vector<size_t> batch_sizes;
};

FakeScript counting() {
  FakeScript s;
  s.tokens = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  return s;
}

FakeText digits() {
  std::map<int32_t, std::string> m;
  for (int i = 0; i < 10; ++i) m[i] = std::string(1, char('0' + i));
  return FakeText(m);
}

ModelInput prompt(int n) {
  ModelInput in;
  for (int i = 0; i < n; ++i) in.ids.push_back(1 + i % 3);
  return in;
}

GenerationResult generate(const Model& model, StepBatcher* batcher, int prompt_len, int max_tokens,
                          const StreamCallback& on_text = nullptr) {
  FakeText text = digits();
  GenerationSetup setup;
  setup.model = &model;
  setup.text = &text;
  setup.batcher = batcher;
  GenerationParams p;
  p.max_tokens = max_tokens;
  return generate_tokens(setup, prompt(prompt_len), p, on_text);
}

TEST(StepBatcher, GenerationsJoiningAndLeavingMidBatchGetTheirOwnTokens) {
  BatchRecordingModel model(counting());
  StepBatcher batcher(model, 10s);  // every step waits for all members: the batches are deterministic
  std::promise<void> second_joined;
  std::future<GenerationResult> second;
  int first_tokens = 0;
  GenerationResult first = generate(model, &batcher, 3, 30, [&](std::string_view, int32_t) {
    if (++first_tokens == 5) {
      // The second generation starts now and joins the first one's steps.
      second = std::async(std::launch::async, [&] {
        bool told = false;
        return generate(model, &batcher, 6, 10, [&](std::string_view, int32_t) {
          if (!told) second_joined.set_value(), told = true;
          return true;
        });
      });
      second_joined.get_future().wait();
    }
    return true;
  });
  GenerationResult second_result = second.get();

  BatchRecordingModel alone_model(counting());
  EXPECT_EQ(first.token_ids, generate(alone_model, nullptr, 3, 30).token_ids);
  EXPECT_EQ(second_result.token_ids, generate(alone_model, nullptr, 6, 10).token_ids);
  EXPECT_EQ(first.token_ids.size(), 30u);
  EXPECT_EQ(second_result.token_ids.size(), 10u);

  // First alone for 4 steps, both for the second's 9 steps, then the first alone again.
  const std::vector<size_t>& sizes = model.batch_sizes;
  EXPECT_EQ(std::count(sizes.begin(), sizes.end(), size_t(2)), 9);
  EXPECT_EQ(std::count(sizes.begin(), sizes.end(), size_t(1)), 29 - 9);
  const DecodeBatchStats stats = batcher.stats();
  EXPECT_EQ(stats.steps, int64_t(sizes.size()));
  EXPECT_EQ(stats.sequence_steps, 29 + 9);
  EXPECT_EQ(stats.largest, 2);
  EXPECT_EQ(batcher.members(), 0);
}

TEST(StepBatcher, AMemberThatDoesNotStepHoldsTheOthersOnlyForTheGatheringTime) {
  BatchRecordingModel model(counting());
  StepBatcher batcher(model, 2ms);
  StepBatcher::Membership idle(batcher);  // joined, but never steps
  const auto t0 = std::chrono::steady_clock::now();
  GenerationResult r = generate(model, &batcher, 2, 5);
  EXPECT_EQ(r.token_ids.size(), 5u);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);  // 4 steps, each held at most ~2 ms
  EXPECT_EQ(batcher.members(), 1);
}

// A failing batched pass fails the generations in it, with the model's error.
class FailingModel : public FakeModel {
 public:
  using FakeModel::FakeModel;
  std::vector<std::vector<float>> step_batch(std::span<Sequence* const>, std::span<const int32_t>) const override {
    fail("the step failed");
  }
};

TEST(StepBatcher, AFailedPassIsRethrownToItsGenerations) {
  FailingModel model(counting());
  StepBatcher batcher(model);
  EXPECT_THROW(generate(model, &batcher, 2, 5), Error);
  EXPECT_EQ(batcher.members(), 0);
}

// The engine lock is first come, first served: work queued behind a holder runs in arrival order.
TEST(StepBatcher, EngineTurnsAreTakenInArrivalOrder) {
  BatchRecordingModel model(counting());
  StepBatcher batcher(model);
  std::vector<int> order;
  std::unique_lock<StepBatcher> held(batcher);
  std::vector<std::thread> waiting;
  std::atomic<int> queued{0};
  for (int i = 0; i < 3; ++i) {
    waiting.emplace_back([&, i] {
      ++queued;
      std::lock_guard<StepBatcher> turn(batcher);
      order.push_back(i);
    });
    while (queued.load() <= i) std::this_thread::yield();
    std::this_thread::sleep_for(20ms);  // thread i is waiting for its turn before i + 1 starts
  }
  held.unlock();
  for (auto& t : waiting) t.join();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
}

}  // namespace
}  // namespace vlm
