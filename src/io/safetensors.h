// Zero-copy reader for the safetensors format (8-byte little-endian header length, JSON
// header, raw little-endian data). The file is memory-mapped; tensors borrow the mapping.
// Every header field is validated before any data is touched.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace vlm {

struct SafetensorsEntry {
  DType dtype;
  Shape shape;
  size_t begin = 0, end = 0;  // byte range inside the data section
};

class SafetensorsFile {
 public:
  static constexpr size_t kMaxHeaderBytes = 100u << 20;

  // Throws vlm::Error naming the file (and tensor) on any inconsistency.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  // The same parse over bytes already in memory (the whole file image). Tensors borrow `data`, which
  // must outlive them unless `keepalive` owns it; errors name `name`.
  static std::shared_ptr<SafetensorsFile> from_buffer(const char* data, size_t size, const std::string& name,
                                                      std::shared_ptr<const void> keepalive = nullptr);

  const std::string& path() const { return path_; }
  const std::map<std::string, SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return entries_.count(name) != 0; }
  // A tensor that borrows the mapping (keeps the file mapped while alive).
  Tensor tensor(const std::string& name) const;

  ~SafetensorsFile();

 private:
  SafetensorsFile() = default;
  std::string path_;
  const char* map_ = nullptr;
  size_t map_size_ = 0;
  const char* data_ = nullptr;
  std::shared_ptr<const void> keepalive_;
  std::map<std::string, SafetensorsEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// Writes tensors (contiguous copies are made as needed) with optional string metadata.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace vlm
