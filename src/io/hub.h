// Hugging Face hub client: resolves "org/name" model ids to a local snapshot directory through the standard
// cache layout shared with huggingface_hub (so models downloaded by either are reused by the other):
//   <cache>/models--org--name/blobs/<etag>                 file contents, named by etag (sha256 for LFS)
//   <cache>/models--org--name/snapshots/<commit>/<file>    symlink -> ../../blobs/<etag>
//   <cache>/models--org--name/refs/<revision>              commit hash the revision pointed to
//   <cache>/models--org--name/.no_exist/<commit>/<file>    marks an optional file the repo does not have
#pragma once
#include <string>
#include <vector>

namespace vlm {

struct HubOptions {
  std::string endpoint = "https://huggingface.co";
  std::string token;      // sent as "Authorization: Bearer" to the endpoint only
  std::string cache_dir;  // the hub cache (HF_HUB_CACHE), e.g. ~/.cache/huggingface/hub
  bool offline = false;   // never touch the network
  std::string revision = "main";
  bool progress = true;  // progress bar on stderr, only when stderr is a terminal

  // From HF_ENDPOINT, HF_TOKEN (else HUGGING_FACE_HUB_TOKEN, else the token file written by
  // `huggingface-cli login`), HF_HOME / HF_HUB_CACHE and HF_HUB_OFFLINE.
  static HubOptions from_env();
};

// Config, tokenizer and processor files fetched with a model (all optional but config.json).
const std::vector<std::string>& hub_model_json_files();

// Returns the local snapshot directory containing the model files; downloads what is missing (config,
// tokenizer/processor JSON files, model.safetensors.index.json and its shards, or model.safetensors).
std::string resolve_model(const std::string& repo_id, const HubOptions& opts);
// The same for a LoRA adapter repo: adapter_config.json plus adapters.safetensors (MLX) and/or
// adapter_model.safetensors (PEFT); returns the snapshot folder.
std::string resolve_adapter(const std::string& repo_id, const HubOptions& opts);

// Local path of one file of the repo at opts.revision, downloaded if missing. When `optional` and the repo
// has no such file, returns "" instead of throwing.
std::string download_file(const std::string& repo_id, const std::string& filename, const HubOptions& opts,
                          bool optional = false);

// True for "org/name" (hub name characters, exactly one '/') that is not an existing local path.
bool looks_like_repo_id(const std::string& s);

// "<cache>/models--org--name".
std::string hub_repo_cache_dir(const std::string& repo_id, const HubOptions& opts);

// Lowercase hex SHA-256 of a file's contents (the etag of LFS files).
std::string sha256_file_hex(const std::string& path);

}  // namespace vlm
