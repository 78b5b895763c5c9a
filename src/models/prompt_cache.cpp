// Prompt cache for the generic decoder sequence: keys that identify a prompt token (its id, or at an
// image/video position its item's content and place), and a prefill that keeps the longest cached
// prefix whose keys match and runs only the rest.
//
// Exactness: a cached row depends only on the rows before it (causal attention) and on its position,
// and the positions of a prefix (M-RoPE included) depend only on the tokens and media before it, so a
// row whose key and whose predecessors' keys match is the row a fresh prefill computes. A prefix-LM
// block (PaliGemma) is bidirectional: each of its rows depends on the whole block, so it is reused
// only when the new prompt is that same block (all but its last row are kept; the last row sees the
// whole block under either mask, so recomputing it gives the same rows).
#include <algorithm>
#include <cstring>

#include "io/safetensors.h"
#include "models/decoder_model.h"
#include "models/feature_cache.h"

namespace vlm {

namespace {

constexpr uint64_t kMediaBit = uint64_t(1) << 63;  // token ids are below 2^31: media keys never equal them

uint64_t mix(uint64_t x) {  // splitmix64's finalizer
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace

std::vector<int64_t> DecoderModel::slot_starts(const std::vector<int32_t>& ids, const std::vector<MediaSlot>& slots) {
  std::vector<int64_t> starts(slots.size(), -1);
  for (size_t s = 0; s < slots.size(); ++s) {
    int64_t offset = 0;  // occurrences of this token taken by the slots before
    for (size_t c = 0; c < s; ++c)
      if (slots[c].token == slots[s].token) offset += slots[c].count;
    int64_t seen = 0;
    for (size_t i = 0; i < ids.size() && starts[s] < 0; ++i)
      if (ids[i] == slots[s].token && seen++ == offset) starts[s] = int64_t(i);
  }
  return starts;
}

std::vector<uint64_t> DecoderModel::prompt_keys(const ModelInput& input) const {
  // Sliding-window layers drop the rows their window no longer reaches, so a cached sequence cannot
  // be cut back to an arbitrary prefix; such models (Gemma 3) always prefill afresh.
  for (const nn::LayerAttention& l : decoder().config().layers)
    if (l.window > 0) return {};
  std::vector<uint64_t> keys;
  keys.reserve(input.ids.size());
  for (int32_t id : input.ids) keys.push_back(uint64_t(uint32_t(id)));
  if (input.images.empty() && input.videos.empty()) return keys;
  const std::vector<MediaSlot> slots = media_slots(input);
  if (slots.empty()) {
    // No map of the media: every key covers all of it.
    uint64_t all = 0;
    for (const auto* list : {&input.images, &input.videos})
      for (const Tensor& t : *list) all = mix(all ^ media_item_hash(0, {}, t));
    for (const auto* grids : {&input.image_grids, &input.video_grids})
      for (const auto& g : *grids) all = mix(all ^ uint64_t(g[0] * 1000003 + g[1] * 1009 + g[2]));
    for (uint64_t& k : keys) k = mix(all ^ k) | kMediaBit;
    return keys;
  }
  for (const MediaSlot& slot : slots) {  // every placeholder must belong to exactly one slot
    int64_t want = 0;
    for (const MediaSlot& other : slots) want += other.token == slot.token ? other.count : 0;
    if (std::count(input.ids.begin(), input.ids.end(), slot.token) != want) return {};
  }
  const std::vector<int64_t> starts = slot_starts(input.ids, slots);
  for (size_t s = 0; s < slots.size(); ++s) {
    const MediaSlot& slot = slots[s];
    if (starts[s] < 0 || !slot.pixels) return {};  // the prompt does not match its media: no reuse
    const uint64_t item = media_item_hash(slot.token, slot.grid, *slot.pixels);
    int64_t j = 0;
    for (int64_t i = starts[s]; i < int64_t(keys.size()) && j < slot.count; ++i)
      if (input.ids[size_t(i)] == slot.token) keys[size_t(i)] = mix(item + uint64_t(j++)) | kMediaBit;
  }
  return keys;
}

int64_t DecoderSequence::cached_prefix(const std::vector<uint64_t>& keys) const {
  if (!keys_valid_ || keys.empty()) return 0;
  const auto diff = std::mismatch(keys_.begin(), keys_.end(), keys.begin(), keys.end());
  const int64_t common = int64_t(diff.first - keys_.begin()), n = int64_t(keys.size());
  if (prefix_rows_ > 0)  // a bidirectional block: only the very same block is reusable
    return n == prefix_rows_ && common >= n ? n - 1 : 0;
  return std::min(common, n - 1);  // the last prompt row always runs: it gives the logits
}

std::vector<float> DecoderSequence::prefill_reusing(const ModelInput& input, int64_t* reused) {
  const int64_t n = int64_t(input.ids.size());
  if (n == 0) fail(model_.info().model_type, ": prefill needs at least one token");
  std::vector<uint64_t> keys = model_.prompt_keys(input);
  const int64_t p = cached_prefix(keys), old_prefix = prefix_rows_;
  // Back to the first p rows; the prompt then runs as a fresh one would, from row p on.
  cache_.truncate(p);
  seen_ = 0;
  next_position_ = model_.first_position();
  prefix_rows_ = 0;
  if (window_ > 0) cache_.set_window(window_, keep_);
  vision_ms_ = 0;
  vision_flops_ = 0;
  keys_.clear();
  keys_valid_ = int64_t(keys.size()) == n;
  check_room(n);
  seen_ = p;
  ModelInput in = input;  // tensors share their storage
  in.cached_rows = p;
  std::vector<float> logits = run_prompt(in, model_.first_position(), p);
  if (p > 0 && prefix_rows_ > 0 && prefix_rows_ != old_prefix)
    fail(model_.info().model_type, ": internal error: a cached prefix was reused across different prompt blocks");
  if (keys_valid_) keys_ = std::move(keys);
  if (reused) *reused = p;
  return logits;
}

void DecoderSequence::save_cache(const std::string& path, const std::map<std::string, std::string>& metadata) const {
  for (const nn::LayerAttention& l : model_.decoder().config().layers)
    if (l.window > 0)
      fail(path, ": cannot save the prompt cache: ", model_.info().model_type,
           " has sliding-window layers, whose cache keeps only the last rows");
  if (!keys_valid_ || int64_t(keys_.size()) != cache_.length())
    fail(path, ": cannot save the prompt cache: its rows no longer follow the prompt (a KV window evicted rows)");
  const int64_t rows = cache_.length(), width = cache_.row_width();
  const int layers = model_.decoder().config().num_layers;
  std::vector<std::pair<std::string, Tensor>> tensors;
  Tensor keys = Tensor::empty(DType::I64, {rows});
  std::copy(keys_.begin(), keys_.end(), keys.data<int64_t>());  // two's complement: the bits survive
  tensors.emplace_back("keys", keys);
  for (int l = 0; l < layers; ++l) {
    for (const char* kind : {"k", "v"}) {
      Tensor t = Tensor::empty(DType::F32, {rows, width});
      const float* src = kind[0] == 'k' ? cache_.keys(l) : cache_.values(l);
      std::copy_n(src, rows * width, t.data<float>());
      tensors.emplace_back("layers." + std::to_string(l) + "." + kind, t);
    }
  }
  std::map<std::string, std::string> meta = metadata;
  std::string ids = "[";  // for people reading the header: the token ids, -1 at image/video positions
  for (size_t i = 0; i < keys_.size(); ++i) {
    if (i) ids += ',';
    ids += std::to_string(keys_[i] & kMediaBit ? int64_t(-1) : int64_t(keys_[i]));
  }
  meta["token_ids"] = ids + "]";
  meta["next_position"] = std::to_string(next_position_);
  meta["prefix_rows"] = std::to_string(prefix_rows_);
  save_safetensors(path, tensors, meta);
}

void DecoderSequence::load_cache(const SafetensorsFile& file) {
  const std::string& where = file.path();
  const int layers = model_.decoder().config().num_layers;
  auto number = [&](const char* name) {
    auto it = file.metadata().find(name);
    if (it == file.metadata().end()) fail(where, ": not a prompt cache (no '", name, "' in its header)");
    try {
      size_t used = 0;
      const int64_t v = std::stoll(it->second, &used);
      if (used == it->second.size()) return v;
    } catch (const std::exception&) {
    }
    fail(where, ": '", name, "' is not an integer: ", it->second);
  };
  auto tensor = [&](const std::string& name, DType dtype, Shape shape) {
    if (!file.contains(name)) fail(where, ": no tensor '", name, "'");
    Tensor t = file.tensor(name);
    if (t.dtype() != dtype || t.shape() != shape)
      fail(where, ": tensor '", name, "' is ", dtype_name(t.dtype()), " ", shape_str(t.shape()), ", expected ",
           dtype_name(dtype), " ", shape_str(shape));
    return t;
  };
  if (!file.contains("keys")) fail(where, ": not a prompt cache (no 'keys' tensor)");
  const Tensor keys = file.tensor("keys");
  if (keys.ndim() != 1) fail(where, ": 'keys' must be one-dimensional");
  const int64_t rows = keys.dim(0), width = cache_.row_width();
  const int64_t next = number("next_position"), prefix = number("prefix_rows");
  const int64_t limit = model_.decoder().config().max_positions;
  if (rows < 1 || (limit > 0 && rows > limit) || prefix < 0 || prefix > rows || next < model_.first_position() ||
      (limit > 0 && next > limit + model_.first_position()))
    fail(where, ": inconsistent prompt cache (", rows, " rows, next position ", next, ", prefix ", prefix, ")");
  if (int64_t(file.entries().size()) != 1 + 2 * int64_t(layers))
    fail(where, ": holds ", file.entries().size(), " tensors, this model's cache needs ", 1 + 2 * layers);
  std::vector<Tensor> kv;
  for (int l = 0; l < layers; ++l)
    for (const char* kind : {"k", "v"})
      kv.push_back(tensor("layers." + std::to_string(l) + "." + kind, DType::F32, {rows, width}));
  tensor("keys", DType::I64, {rows});
  // All checked: replace the state.
  cache_.clear();
  for (int l = 0; l < layers; ++l) cache_.append(l, kv[2 * l].data<float>(), kv[2 * l + 1].data<float>(), rows);
  cache_.advance(rows);
  keys_.resize(size_t(rows));
  std::memcpy(keys_.data(), keys.raw(), size_t(rows) * sizeof(uint64_t));
  keys_valid_ = true;
  seen_ = rows;
  next_position_ = next;
  prefix_rows_ = prefix;
}

void DecoderSequence::release_scratch() {
  ws_ = nn::DecoderWorkspace{};
  hidden_ = nn::Buffer{};
  token_row_ = nn::Buffer{};
}

void DecoderSequence::note_eviction(int64_t evicted) {
  if (evicted <= 0) return;
  keys_valid_ = false;
  keys_.clear();
}

}  // namespace vlm
