#include "server/api_error.h"

#include <fmt/format.h>

namespace llm42::server {

nlohmann::json ApiError::to_json() const {
  nlohmann::json e = {{"message", what()}, {"type", type_}, {"param", nullptr}, {"code", nullptr}};
  if (param_) e["param"] = *param_;
  if (code_) e["code"] = *code_;
  return {{"error", std::move(e)}};
}

ApiError invalid_request(const std::string& param, const std::string& message) {
  return ApiError(400, "invalid_request_error", message,
                  param.empty() ? std::nullopt : std::optional<std::string>(param));
}

ApiError model_not_found(const std::string& model, const std::string& served) {
  return ApiError(
      404, "invalid_request_error",
      fmt::format("the model '{}' does not exist: this server serves '{}'", model, served), "model",
      "model_not_found");
}

}  // namespace llm42::server
