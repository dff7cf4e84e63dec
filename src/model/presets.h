// Published model shapes for dummy weights (`--model dummy:NAME`): the real dimensions, RoPE
// settings and special tokens of each model, with random weights, so speed and memory can be
// measured at full size without downloading anything.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "model/config.h"

namespace llm42 {

// The config of preset `name` (weights dtype bf16). Throws llm42::Error listing the presets when
// the name is unknown.
ModelConfig preset_config(std::string_view name);

// Every preset name, in the order of the table in docs/models.md.
std::vector<std::string> preset_names();

}  // namespace llm42
