// Hub client against tests/io/fake_hub.py (a local imitation of huggingface.co on 127.0.0.1) serving the tiny
// Qwen2-VL fixture. Oracles: the fixture bytes themselves and Python's hashlib.
#include "io/hub.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "core/error.h"

extern char** environ;

namespace vlm {
namespace {
namespace fs = std::filesystem;
using nlohmann::json;

const std::string kShared = VLM_SHARED_DIR;
const std::string kFixture = kShared + "/fixtures/qwen2_vl/tiny-mlx-4bit";
const std::string kPython = "/usr/bin/python3";
const std::string kToken = "hf_test_secret";
constexpr int kDropAfter = 100000;

std::string read_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The fixture stores tokenizer.json as git does a symlink: a file holding the relative target path.
fs::path fixture_file(const std::string& name) {
  fs::path p = fs::path(kFixture) / name;
  std::string text = read_bytes(p);
  if (text.size() < 1024 && !text.empty() && text[0] != '{') {
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.pop_back();
    fs::path target = p.parent_path() / text;
    if (fs::is_regular_file(target)) return target;
  }
  return p;
}

// Independent oracle for hashes: Python's hashlib.
std::string python_hash(const std::string& algo, const fs::path& file, bool git_blob = false) {
  std::string code = git_blob
                         ? "import hashlib,sys;d=open(sys.argv[1],'rb').read();"
                           "print(hashlib.sha1(b'blob %d\\0'%len(d)+d).hexdigest())"
                         : "import hashlib,sys;print(hashlib." + algo + "(open(sys.argv[1],'rb').read()).hexdigest())";
  std::string cmd = kPython + " -c \"" + code + "\" '" + file.string() + "'";
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen(cmd.c_str(), "r"), pclose);
  char buf[256] = {0};
  if (!p || !fgets(buf, sizeof buf, p.get())) return "";
  std::string s(buf);
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

// The fake hub as a child process, killed when this goes out of scope.
class FakeHub {
 public:
  FakeHub() {
    char tmpl[] = "/tmp/vlm_fake_hub_XXXXXX";
    dir_ = mkdtemp(tmpl);
    const std::string script = std::string(VLM_SOURCE_DIR) + "/tests/io/fake_hub.py";
    std::vector<std::string> args = {kPython,
                                     script,
                                     "--repo=tiny/qwen2-vl=" + kFixture,
                                     "--repo=tiny/lora=" + kShared + "/fixtures/lora/peft-qv",
                                     "--repo=tiny/gated=" + kFixture,
                                     "--gated=tiny/gated=" + kToken,
                                     "--repo=tiny/corrupt=" + kFixture,
                                     "--corrupt=tiny/corrupt",
                                     "--repo=tiny/flaky=" + kFixture,
                                     "--flaky=tiny/flaky=" + std::to_string(kDropAfter),
                                     "--repo=tiny/norange=" + kFixture,
                                     "--no-range=tiny/norange",
                                     "--repo=tiny/wrongsize=" + kFixture,
                                     "--wrong-size=tiny/wrongsize",
                                     "--ready=" + (dir_ / "ready").string(),
                                     "--log=" + log_path().string()};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawn(&pid_, kPython.c_str(), nullptr, nullptr, argv.data(), environ) != 0) pid_ = -1;
    for (int i = 0; i < 500 && pid_ > 0 && !fs::exists(dir_ / "ready"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::ifstream(dir_ / "ready") >> port_ >> cdn_port_;
  }
  ~FakeHub() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  bool ok() const { return port_ > 0; }
  std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
  fs::path log_path() const { return dir_ / "requests.log"; }
  // Requests logged since the log had `from` lines.
  std::vector<json> requests(size_t from = 0) const {
    std::vector<json> out;
    std::ifstream in(log_path());
    std::string line;
    for (size_t i = 0; std::getline(in, line); ++i)
      if (i >= from) out.push_back(json::parse(line));
    return out;
  }

 private:
  fs::path dir_;
  pid_t pid_ = -1;
  int port_ = 0, cdn_port_ = 0;
};

class HubTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (fs::exists(kFixture) && fs::exists(kPython)) hub_ = new FakeHub();
  }
  static void TearDownTestSuite() {
    delete hub_;
    hub_ = nullptr;
  }
  void SetUp() override {
    if (!fs::exists(kShared)) GTEST_SKIP() << "shared fixtures absent: " << kShared;
    if (!fs::exists(kPython)) GTEST_SKIP() << kPython << " absent";
    ASSERT_TRUE(hub_ && hub_->ok()) << "fake hub did not start";
    char tmpl[] = "/tmp/vlm_hub_cache_XXXXXX";
    cache_ = mkdtemp(tmpl);
    opts_.endpoint = hub_->endpoint();
    opts_.cache_dir = cache_.string();
    opts_.progress = false;
    log_start_ = hub_->requests().size();
  }
  void TearDown() override {
    std::error_code ec;
    if (!cache_.empty()) fs::remove_all(cache_, ec);
  }
  std::vector<json> new_requests() const { return hub_->requests(log_start_); }

  static std::string error_of(const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "<no error>";
  }

  static FakeHub* hub_;
  fs::path cache_;
  HubOptions opts_;
  size_t log_start_ = 0;
};
FakeHub* HubTest::hub_ = nullptr;

const std::vector<std::string> kFixtureFiles = {
    "config.json",           "generation_config.json", "preprocessor_config.json",     "tokenizer.json",
    "tokenizer_config.json", "chat_template.json",     "model.safetensors.index.json", "model.safetensors"};

TEST(HubSha256, MatchesKnownVectorsAndHashlib) {
  char tmpl[] = "/tmp/vlm_sha_XXXXXX";
  fs::path dir = mkdtemp(tmpl);
  std::ofstream(dir / "empty");
  std::ofstream(dir / "abc") << "abc";
  EXPECT_EQ(sha256_file_hex((dir / "empty").string()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_file_hex((dir / "abc").string()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  fs::remove_all(dir);
  const fs::path model = fixture_file("model.safetensors");
  if (!fs::exists(model) || !fs::exists(kPython)) GTEST_SKIP() << "fixture or python absent";
  EXPECT_EQ(sha256_file_hex(model.string()), python_hash("sha256", model));
}

TEST(HubRepoId, RecognisesOrgSlashName) {
  EXPECT_TRUE(looks_like_repo_id("Qwen/Qwen2-VL-2B-Instruct"));
  EXPECT_TRUE(looks_like_repo_id("mlx-community/Qwen2-VL-2B-Instruct-4bit"));
  EXPECT_FALSE(looks_like_repo_id("model"));
  EXPECT_FALSE(looks_like_repo_id("a/b/c"));
  EXPECT_FALSE(looks_like_repo_id("/abs/path"));
  EXPECT_FALSE(looks_like_repo_id("../x"));
  EXPECT_FALSE(looks_like_repo_id("org/na me"));
  EXPECT_FALSE(looks_like_repo_id("./x"));
  // An existing local folder of that shape is a path, not a model id.
  const fs::path old = fs::current_path();
  char tmpl[] = "/tmp/vlm_repoid_XXXXXX";
  fs::path dir = mkdtemp(tmpl);
  fs::create_directories(dir / "org" / "name");
  fs::current_path(dir);
  EXPECT_FALSE(looks_like_repo_id("org/name"));
  EXPECT_TRUE(looks_like_repo_id("org/other"));
  fs::current_path(old);
  fs::remove_all(dir);
}

TEST(HubOptionsEnv, ReadsHfVariables) {
  const char* names[] = {"HF_HOME",
                         "HF_HUB_CACHE",
                         "HUGGINGFACE_HUB_CACHE",
                         "HF_HUB_OFFLINE",
                         "HF_TOKEN",
                         "HUGGING_FACE_HUB_TOKEN",
                         "HF_TOKEN_PATH",
                         "HF_ENDPOINT",
                         "XDG_CACHE_HOME",
                         "HF_HUB_DISABLE_PROGRESS_BARS"};
  std::map<std::string, std::string> saved;
  for (const char* n : names)
    if (const char* v = getenv(n)) saved[n] = v;
  for (const char* n : names) unsetenv(n);
  char tmpl[] = "/tmp/vlm_hfhome_XXXXXX";
  fs::path home = mkdtemp(tmpl);
  std::ofstream(home / "token") << "hf_from_file\n";

  setenv("HF_HOME", home.c_str(), 1);
  HubOptions a = HubOptions::from_env();
  EXPECT_EQ(a.cache_dir, (home / "hub").string());
  EXPECT_EQ(a.endpoint, "https://huggingface.co");
  EXPECT_EQ(a.token, "hf_from_file");
  EXPECT_FALSE(a.offline);
  EXPECT_EQ(a.revision, "main");

  setenv("HF_HUB_CACHE", "/somewhere/hub", 1);
  setenv("HF_HUB_OFFLINE", "1", 1);
  setenv("HF_TOKEN", "hf_env", 1);
  setenv("HF_ENDPOINT", "http://127.0.0.1:9/", 1);
  HubOptions b = HubOptions::from_env();
  EXPECT_EQ(b.cache_dir, "/somewhere/hub");
  EXPECT_TRUE(b.offline);
  EXPECT_EQ(b.token, "hf_env");
  EXPECT_EQ(b.endpoint, "http://127.0.0.1:9");
  EXPECT_EQ(hub_repo_cache_dir("org/name", b), "/somewhere/hub/models--org--name");

  setenv("HF_HUB_OFFLINE", "0", 1);
  EXPECT_FALSE(HubOptions::from_env().offline);

  for (const char* n : names) unsetenv(n);
  for (const auto& [k, v] : saved) setenv(k.c_str(), v.c_str(), 1);
  fs::remove_all(home);
}

TEST_F(HubTest, DownloadsModelIntoStandardCacheLayout) {
  opts_.token = "hf_not_for_the_cdn";
  const std::string snap = resolve_model("tiny/qwen2-vl", opts_);
  const fs::path repo = cache_ / "models--tiny--qwen2-vl";
  const std::string commit = read_bytes(repo / "refs" / "main");
  ASSERT_EQ(commit.size(), 40u);
  EXPECT_EQ(fs::path(snap), repo / "snapshots" / commit);

  for (const auto& name : kFixtureFiles) {
    SCOPED_TRACE(name);
    const fs::path pointer = fs::path(snap) / name;
    ASSERT_TRUE(fs::is_symlink(pointer));
    const fs::path target = fs::read_symlink(pointer);
    EXPECT_EQ(target.parent_path(), fs::path("../../blobs"));
    const fs::path source = fixture_file(name);
    EXPECT_EQ(read_bytes(pointer), read_bytes(source));
    // Blob names: sha256 for LFS files (served through the CDN redirect), git blob sha1 otherwise.
    const bool lfs = name == "model.safetensors" || name == "tokenizer.json";
    EXPECT_EQ(target.filename().string(), lfs ? python_hash("sha256", source) : python_hash("", source, true));
  }
  for (const auto& e : fs::directory_iterator(repo / "blobs"))
    EXPECT_EQ(e.path().extension(), "") << "leftover " << e.path();
  // Optional files the repo lacks are remembered as absent, not downloaded.
  EXPECT_FALSE(fs::exists(fs::path(snap) / "processor_config.json"));
  EXPECT_TRUE(fs::exists(repo / ".no_exist" / commit / "processor_config.json"));

  int gets = 0;
  for (const auto& r : new_requests()) {
    if (r["method"] == "GET") ++gets;
    if (r["server"] == "cdn") {
      EXPECT_TRUE(r["auth"].is_null()) << "token leaked to the CDN: " << r.dump();
    } else {
      EXPECT_EQ(r["auth"], "Bearer hf_not_for_the_cdn") << r.dump();
    }
  }
  EXPECT_GE(gets, static_cast<int>(kFixtureFiles.size()));

  // A second resolve asks for the commit once and downloads nothing.
  const size_t before = hub_->requests().size();
  EXPECT_EQ(resolve_model("tiny/qwen2-vl", opts_), snap);
  const auto again = hub_->requests(before);
  EXPECT_LE(again.size(), 1u);
  for (const auto& r : again) EXPECT_NE(r["method"], "GET") << r.dump();
}

TEST_F(HubTest, ResolvesAdapterRepos) {
  if (!fs::is_directory(kShared + "/fixtures/lora/peft-qv")) GTEST_SKIP() << "no lora fixtures";
  const std::string snap = resolve_adapter("tiny/lora", opts_);
  for (const char* name : {"adapter_config.json", "adapter_model.safetensors"})
    EXPECT_EQ(read_bytes(fs::path(snap) / name), read_bytes(kShared + "/fixtures/lora/peft-qv/" + name)) << name;
  EXPECT_FALSE(fs::exists(fs::path(snap) / "adapters.safetensors"));
  HubOptions offline = opts_;
  offline.offline = true;
  EXPECT_EQ(resolve_adapter("tiny/lora", offline), snap);
  // A model repo is not an adapter repo.
  std::string err = error_of([&] { resolve_adapter("tiny/qwen2-vl", opts_); });
  EXPECT_NE(err.find("adapter_config.json"), std::string::npos) << err;
}

TEST_F(HubTest, OfflineResolvesFromCacheOrSaysWhatIsMissing) {
  HubOptions offline = opts_;
  offline.offline = true;
  offline.endpoint = "http://127.0.0.1:1";  // never contacted
  std::string err = error_of([&] { resolve_model("tiny/qwen2-vl", offline); });
  EXPECT_NE(err.find("offline"), std::string::npos) << err;
  EXPECT_NE(err.find("HF_HUB_OFFLINE"), std::string::npos) << err;
  EXPECT_NE(err.find("tiny/qwen2-vl/config.json"), std::string::npos) << err;

  const std::string snap = resolve_model("tiny/qwen2-vl", opts_);
  const size_t before = hub_->requests().size();
  EXPECT_EQ(resolve_model("tiny/qwen2-vl", offline), snap);
  EXPECT_EQ(download_file("tiny/qwen2-vl", "processor_config.json", offline, true), "");
  err = error_of([&] { download_file("tiny/qwen2-vl", "processor_config.json", offline, false); });
  EXPECT_NE(err.find("offline"), std::string::npos) << err;
  EXPECT_NE(err.find("processor_config.json"), std::string::npos) << err;
  EXPECT_EQ(hub_->requests(before).size(), 0u);
}

TEST_F(HubTest, GatedRepoNeedsToken) {
  std::string err = error_of([&] { resolve_model("tiny/gated", opts_); });
  EXPECT_NE(err.find("401"), std::string::npos) << err;
  EXPECT_NE(err.find("gated"), std::string::npos) << err;
  EXPECT_NE(err.find("HF_TOKEN"), std::string::npos) << err;
  opts_.token = "hf_wrong";
  EXPECT_NE(error_of([&] { resolve_model("tiny/gated", opts_); }).find("401"), std::string::npos);
  opts_.token = kToken;
  const std::string snap = resolve_model("tiny/gated", opts_);
  EXPECT_EQ(read_bytes(fs::path(snap) / "model.safetensors"), read_bytes(fixture_file("model.safetensors")));
  for (const auto& r : new_requests()) {
    if (r["server"] == "cdn") {
      EXPECT_TRUE(r["auth"].is_null()) << r.dump();
    }
  }
}

TEST_F(HubTest, DetectsChecksumMismatch) {
  std::string err = error_of([&] { download_file("tiny/corrupt", "model.safetensors", opts_); });
  EXPECT_NE(err.find("checksum mismatch"), std::string::npos) << err;
  const fs::path repo = cache_ / "models--tiny--corrupt";
  EXPECT_TRUE(fs::is_empty(repo / "blobs")) << "corrupt blob kept";
  EXPECT_FALSE(fs::exists(repo / "snapshots"));
}

TEST_F(HubTest, DetectsSizeMismatch) {
  std::string err = error_of([&] { download_file("tiny/wrongsize", "model.safetensors", opts_); });
  EXPECT_NE(err.find("size mismatch"), std::string::npos) << err;
}

TEST_F(HubTest, ResumesDroppedTransferWithRange) {
  const std::string path = download_file("tiny/flaky", "model.safetensors", opts_);
  EXPECT_EQ(read_bytes(path), read_bytes(fixture_file("model.safetensors")));
  std::vector<std::string> ranges;
  for (const auto& r : new_requests())
    if (r["server"] == "cdn" && r["method"] == "GET") ranges.push_back(r["range"].is_null() ? "" : r["range"]);
  ASSERT_EQ(ranges.size(), 2u);
  EXPECT_EQ(ranges[0], "");
  EXPECT_EQ(ranges[1], "bytes=" + std::to_string(kDropAfter) + "-");
}

TEST_F(HubTest, ResumesPartialFileFromEarlierRun) {
  const fs::path source = fixture_file("model.safetensors");
  const std::string data = read_bytes(source);
  const fs::path blobs = cache_ / "models--tiny--qwen2-vl" / "blobs";
  fs::create_directories(blobs);
  std::ofstream(blobs / (python_hash("sha256", source) + ".incomplete"), std::ios::binary) << data.substr(0, 1000000);
  EXPECT_EQ(read_bytes(download_file("tiny/qwen2-vl", "model.safetensors", opts_)), data);
  bool saw_range = false;
  for (const auto& r : new_requests())
    if (r["server"] == "cdn" && r["method"] == "GET") saw_range = saw_range || r["range"] == "bytes=1000000-";
  EXPECT_TRUE(saw_range);
}

TEST_F(HubTest, RestartsWhenServerIgnoresRange) {
  const fs::path source = fixture_file("model.safetensors");
  const fs::path blobs = cache_ / "models--tiny--norange" / "blobs";
  fs::create_directories(blobs);
  // A stale partial file: appending the 200 body to it would fail the sha256 check.
  std::ofstream(blobs / (python_hash("sha256", source) + ".incomplete"), std::ios::binary) << std::string(5000, 'x');
  EXPECT_EQ(read_bytes(download_file("tiny/norange", "model.safetensors", opts_)), read_bytes(source));
}

TEST_F(HubTest, ReportsMissingFileRepoAndNetworkFailure) {
  std::string err = error_of([&] { download_file("tiny/qwen2-vl", "nope.json", opts_); });
  EXPECT_NE(err.find("404"), std::string::npos) << err;
  EXPECT_NE(err.find("nope.json"), std::string::npos) << err;
  EXPECT_EQ(download_file("tiny/qwen2-vl", "nope.json", opts_, true), "");

  err = error_of([&] { resolve_model("tiny/does-not-exist", opts_); });
  EXPECT_NE(err.find("repository 'tiny/does-not-exist' not found"), std::string::npos) << err;

  err = error_of([&] { download_file("tiny/qwen2-vl", "../escape.json", opts_); });
  EXPECT_NE(err.find("unsafe file name"), std::string::npos) << err;

  opts_.endpoint = "http://127.0.0.1:1";  // nothing listens on port 1
  err = error_of([&] { resolve_model("tiny/qwen2-vl", opts_); });
  EXPECT_NE(err.find("http://127.0.0.1:1/tiny/qwen2-vl/resolve/main/config.json"), std::string::npos) << err;
  EXPECT_NE(err.find("network error"), std::string::npos) << err;
}

TEST_F(HubTest, FallsBackToCacheWhenHubUnreachable) {
  const std::string snap = resolve_model("tiny/qwen2-vl", opts_);
  opts_.endpoint = "http://127.0.0.1:1";
  EXPECT_EQ(resolve_model("tiny/qwen2-vl", opts_), snap);
}

}  // namespace
}  // namespace vlm
