// Encoding/decoding pipeline of vlm::Tokenizer (HF tokenizers order: added tokens on raw text, normalizer,
// added tokens on normalized text, pre-tokenizer, model, post-processor).
#include "text/tokenizer.h"

#include "core/error.h"
#include "text/tokenizer_impl.h"
#include "text/unicode.h"

namespace vlm {

void Tokenizer::Impl::encode_text(std::string_view text, size_t raw_offset, std::vector<int32_t>& out) const {
  std::string norm = normalizer ? normalizer->apply(std::string(text)) : std::string(text);
  std::vector<text::Segment> segs;
  added.split(norm, true, segs);
  std::vector<text::Piece> pieces;
  for (const auto& seg : segs) {
    if (seg.id >= 0) {
      out.push_back(seg.id);
      continue;
    }
    pieces.clear();
    // Offset 0 only where this piece starts the original input (Metaspace prepend_scheme "first").
    size_t off = raw_offset == 0 && seg.begin == 0 ? 0 : raw_offset + seg.begin + 1;
    pieces.push_back({norm.substr(seg.begin, seg.end - seg.begin), off});
    if (pre_tokenizer) pre_tokenizer->apply(pieces);
    for (const auto& p : pieces) model->tokenize(p.text, out);
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  if (!impl_) fail("Tokenizer::encode: tokenizer not loaded");
  std::string repaired;
  if (!text::utf8_valid(text)) {  // invalid bytes become U+FFFD, as Python's errors="replace" decoding would
    repaired = text::utf8_lossy(text);
    text = repaired;
  }
  std::vector<int32_t> out;
  if (add_special_tokens) out = impl_->post_prefix;
  std::vector<text::Segment> segs;
  impl_->added.split(text, false, segs);
  for (const auto& seg : segs) {
    if (seg.id >= 0) {
      out.push_back(seg.id);
    } else {
      impl_->encode_text(text.substr(seg.begin, seg.end - seg.begin), seg.begin, out);
    }
  }
  if (add_special_tokens) out.insert(out.end(), impl_->post_suffix.begin(), impl_->post_suffix.end());
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  if (!impl_) fail("Tokenizer::decode: tokenizer not loaded");
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  const text::Vocab& vocab = impl_->model->vocab();
  for (int32_t id : ids) {
    if (const auto* a = impl_->added.by_id(id)) {
      if (!(skip_special_tokens && a->special)) tokens.push_back(a->content);
    } else if (vocab.has_id(id)) {
      tokens.emplace_back(vocab.token(id));
    }  // unknown ids are dropped, as HF does
  }
  std::string out;
  if (impl_->decoder) {
    impl_->decoder->apply(tokens);
    for (const auto& t : tokens) out += t;
  } else {
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i) out += ' ';
      out += tokens[i];
    }
  }
  if (impl_->clean_up_spaces) out = text::clean_up_tokenization(std::move(out));
  return out;
}

std::string Tokenizer::id_to_token(int32_t id) const {
  if (const auto* a = impl_->added.by_id(id)) return a->content;
  return std::string(impl_->model->vocab().token(id));
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (const auto* a = impl_->added.by_content(token)) return a->id;
  int32_t id = impl_->model->vocab().find(token);
  return id >= 0 ? std::optional<int32_t>(id) : std::nullopt;
}

int32_t Tokenizer::vocab_size() const {
  return std::max(impl_->model->vocab().size(), impl_->added.max_id() + 1);
}

bool Tokenizer::is_special(int32_t id) const {
  const auto* a = impl_->added.by_id(id);
  return a && a->special;
}

std::optional<int32_t> Tokenizer::bos_id() const {
  return impl_->lookup(impl_->bos_token);
}
std::optional<int32_t> Tokenizer::eos_id() const {
  return impl_->lookup(impl_->eos_token);
}
std::optional<int32_t> Tokenizer::pad_id() const {
  return impl_->lookup(impl_->pad_token);
}
std::string Tokenizer::bos_token() const {
  return impl_->bos_token;
}
std::string Tokenizer::eos_token() const {
  return impl_->eos_token;
}

std::string Tokenizer::chat_template(const std::string& name) const {
  const auto& ts = impl_->chat_templates;
  if (name.empty()) {
    for (const auto& [n, t] : ts)
      if (n == "default") return t;
    return ts.empty() ? std::string() : ts.front().second;
  }
  for (const auto& [n, t] : ts)
    if (n == name) return t;
  return "";
}

}  // namespace vlm
