#include "engine/fingerprint.h"

#include <optional>

#include "util/digest.h"

namespace llm42 {

uint64_t model_config_digest(const ModelConfig& c) {
  Digest d;
  d.add(static_cast<int>(c.arch))
      .add(c.vocab_size)
      .add(c.dim)
      .add(c.n_layers)
      .add(c.n_heads)
      .add(c.n_kv_heads)
      .add(c.head_dim)
      .add(c.ffn_dim)
      .add(c.max_seq_len)
      .add(static_cast<double>(c.norm_eps))
      .add(c.rope_theta)
      .add(static_cast<int>(c.rope_scaling.type))
      .add(c.rope_scaling.factor)
      .add(c.rope_scaling.low_freq_factor)
      .add(c.rope_scaling.high_freq_factor)
      .add(c.rope_scaling.original_max_position_embeddings)
      .add(static_cast<uint64_t>(c.rope_freq_factors.size()));
  for (double f : c.rope_freq_factors) d.add(f);
  d.add(static_cast<int>(c.rope_layout))
      .add(c.tie_embeddings)
      .add(c.qkv_bias)
      .add(c.qk_norm)
      .add(c.bos_id)
      .add(static_cast<uint64_t>(c.eos_ids.size()));
  for (int id : c.eos_ids) d.add(id);
  d.add(static_cast<int>(c.weights_dtype));
  return d.value();
}

uint64_t tokenizer_digest(const Tokenizer& t) {
  Digest d;
  d.add(t.vocab_size()).add(t.bos_id()).add(t.strips_leading_space());
  for (int32_t id : t.eos_ids()) d.add(id);
  for (int32_t id = 0; id < t.vocab_size(); ++id) {
    d.add(t.token_bytes(id, true)).add(t.is_special(id));
    const std::optional<uint8_t> b = t.fallback_byte(id);
    d.add(b ? int{*b} : -1);
  }
  // Merges and pre-tokenizer rules show only in how text is cut: encode a probe.
  const char* probe =
      "Hello, World! It's 2024-06-01: déjà vu, naïve café, Ünïcödé, 日本語のテキスト, "
      "emoji 🦙🎉, tabs\tand  spaces\n\nnewlines; code: for (int i = 0; i < 10; ++i) {}";
  for (int32_t id : t.encode(probe, true, true)) d.add(id);
  return d.value();
}

}  // namespace llm42
