// Errors in OpenAI's shape: {"error": {"message", "type", "param", "code"}} with an HTTP status.
#pragma once
#include <stdexcept>
#include <string>

#include "io/json_file.h"

namespace vlm::server {

class ApiError : public std::runtime_error {
 public:
  ApiError(int status, std::string message, std::string param = "", std::string code = "", std::string type = "")
      : std::runtime_error(message),
        status_(status),
        param_(std::move(param)),
        code_(std::move(code)),
        type_(type.empty() ? default_type(status) : std::move(type)) {}

  int status() const { return status_; }
  const std::string& param() const { return param_; }
  const std::string& code() const { return code_; }
  const std::string& type() const { return type_; }

  json to_json() const {
    json e = {{"message", what()}, {"type", type_}, {"param", nullptr}, {"code", nullptr}};
    if (!param_.empty()) e["param"] = param_;
    if (!code_.empty()) e["code"] = code_;
    return json{{"error", e}};
  }

  // OpenAI reports client mistakes (auth included) as invalid_request_error and its own as server_error.
  static std::string default_type(int status) { return status >= 500 ? "server_error" : "invalid_request_error"; }

 private:
  int status_;
  std::string param_, code_, type_;
};

inline ApiError bad_request(std::string message, std::string param = "", std::string code = "") {
  return ApiError(400, std::move(message), std::move(param), std::move(code));
}

}  // namespace vlm::server
