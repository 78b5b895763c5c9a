#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/json_file.h"

namespace vlm {

namespace {

struct Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr && addr != MAP_FAILED) munmap(addr, size);
  }
};
}  // namespace

SafetensorsFile::~SafetensorsFile() = default;

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, ": cannot open: ", std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    fail(path, ": cannot stat: ", std::strerror(errno));
  }
  size_t size = size_t(st.st_size);
  if (size < 8) {
    ::close(fd);
    fail(path, ": not a safetensors file (", size, " bytes, shorter than the 8-byte header length)");
  }
  auto mapping = std::make_shared<Mapping>();
  mapping->size = size;
  mapping->addr = mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (mapping->addr == MAP_FAILED) fail(path, ": mmap failed: ", std::strerror(errno));
  return from_buffer(static_cast<const char*>(mapping->addr), size, path, mapping);
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::from_buffer(const char* data, size_t size, const std::string& path,
                                                              std::shared_ptr<const void> keepalive) {
  if (size < 8) fail(path, ": not a safetensors file (", size, " bytes, shorter than the 8-byte header length)");
  std::shared_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  f->map_ = data;
  f->map_size_ = size;
  f->keepalive_ = std::move(keepalive);

  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = header_len << 8 | uint8_t(f->map_[i]);
  if (header_len > kMaxHeaderBytes)
    fail(path, ": header length ", header_len, " exceeds the limit of ", kMaxHeaderBytes, " bytes");
  if (header_len > size - 8)
    fail(path, ": header length ", header_len, " runs past the end of the file (", size, " bytes): truncated?");
  f->data_ = f->map_ + 8 + header_len;
  size_t data_size = size - 8 - size_t(header_len);

  json header;
  try {
    header = parse_json_limited(std::string_view(f->map_ + 8, size_t(header_len)), path);
  } catch (const json::exception& e) {
    fail(path, ": header is not valid JSON: ", e.what());
  }
  if (!header.is_object()) fail(path, ": header is not a JSON object");

  std::vector<std::pair<size_t, std::string>> spans;
  for (auto& [name, info] : header.items()) {
    if (name == "__metadata__") {
      if (!info.is_object()) fail(path, ": __metadata__ is not an object");
      for (auto& [k, v] : info.items()) {
        if (!v.is_string()) fail(path, ": __metadata__[\"", k, "\"] is not a string");
        f->metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    auto where = [&, &name = name] { return path + ": tensor '" + name + "'"; };
    if (!info.is_object()) fail(where(), ": entry is not an object");
    if (!info.contains("dtype") || !info["dtype"].is_string()) fail(where(), ": missing dtype");
    auto dtype = dtype_from_safetensors(info["dtype"].get<std::string>());
    if (!dtype) fail(where(), ": unsupported dtype ", info["dtype"].get<std::string>());
    if (!info.contains("shape") || !info["shape"].is_array()) fail(where(), ": missing shape");
    SafetensorsEntry e;
    e.dtype = *dtype;
    uint64_t numel = 1;
    for (auto& d : info["shape"]) {
      if (!d.is_number_unsigned()) fail(where(), ": shape has a non-integer or negative dimension");
      uint64_t v = d.get<uint64_t>();
      if (v > (uint64_t(1) << 40) || (v && numel > (uint64_t(1) << 50) / v)) fail(where(), ": shape too large");
      numel *= v;
      e.shape.push_back(int64_t(v));
    }
    auto& offs = info["data_offsets"];
    if (!offs.is_array() || offs.size() != 2 || !offs[0].is_number_unsigned() || !offs[1].is_number_unsigned())
      fail(where(), ": data_offsets must be two non-negative integers");
    uint64_t b = offs[0].get<uint64_t>(), en = offs[1].get<uint64_t>();
    if (b > en) fail(where(), ": data_offsets begin ", b, " > end ", en);
    if (en > data_size)
      fail(where(), ": data [", b, ", ", en, ") runs past the end of the file (data section is ", data_size,
           " bytes): truncated?");
    if (en - b != numel * dtype_size(e.dtype))
      fail(where(), ": shape ", shape_str(e.shape), " of ", dtype_name(e.dtype), " needs ", numel * dtype_size(e.dtype),
           " bytes but data_offsets span ", en - b);
    e.begin = size_t(b);
    e.end = size_t(en);
    if (e.end > e.begin) spans.emplace_back(e.begin, name);
    f->entries_.emplace(name, std::move(e));
  }
  std::sort(spans.begin(), spans.end());
  for (size_t i = 1; i < spans.size(); ++i) {
    const auto& prev = f->entries_.at(spans[i - 1].second);
    if (spans[i].first < prev.end)
      fail(path, ": tensors '", spans[i - 1].second, "' and '", spans[i].second, "' overlap");
  }
  return f;
}

Tensor SafetensorsFile::tensor(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) fail(path_, ": no tensor named '", name, "'");
  return Tensor::borrow(it->second.dtype, it->second.shape, data_ + it->second.begin, keepalive_);
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  size_t offset = 0;
  std::vector<Tensor> contiguous;
  for (auto& [name, t] : tensors) {
    contiguous.push_back(t.contiguous());
    size_t n = t.nbytes();
    header[name] = {{"dtype", dtype_name(t.dtype())}, {"shape", t.shape()}, {"data_offsets", {offset, offset + n}}};
    offset += n;
  }
  std::string h = header.dump();
  while ((h.size() + 8) % 8) h += ' ';
  std::ofstream out(path, std::ios::binary);
  if (!out) fail(path, ": cannot open for writing");
  uint64_t len = h.size();
  char lenbuf[8];
  for (int i = 0; i < 8; ++i) lenbuf[i] = char((len >> (8 * i)) & 0xff);
  out.write(lenbuf, 8);
  out.write(h.data(), std::streamsize(h.size()));
  for (auto& t : contiguous) out.write(static_cast<const char*>(t.raw()), std::streamsize(t.nbytes()));
  if (!out) fail(path, ": write failed");
}

}  // namespace vlm
