// Export options: which row quantiser and bit width each class of matrix gets, and the quantisers'
// settings. Defaults are the reference's export (every int8_per_row tensor: int8 percentile clip), and
// an artifact exported with the defaults is byte-identical to the version-1 format.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "pgolf/core/error.hpp"
#include "pgolf/export/quantize_rows.hpp"
#include "pgolf/nn/param_table.hpp"

namespace pgolf {

// Class of a quantised matrix. The table has no field for attention vs MLP, so those go by the
// reference's state-dict names (".attn." / ".mlp.", as the records' mixed_quantize does); the
// embedding goes by its optimizer group.
enum class TensorClass { attn, mlp, embed, other };

constexpr std::string_view to_string(TensorClass c) {
  switch (c) {
    case TensorClass::attn: return "attn";
    case TensorClass::mlp: return "mlp";
    case TensorClass::embed: return "embed";
    case TensorClass::other: return "other";
  }
  return "?";
}

constexpr TensorClass tensor_class(const ParamInfo& p) {
  if (p.group == OptimGroup::adam_embed || p.name.view().find("tok_emb") != std::string_view::npos)
    return TensorClass::embed;
  if (p.name.view().find(".attn.") != std::string_view::npos) return TensorClass::attn;
  if (p.name.view().find(".mlp.") != std::string_view::npos) return TensorClass::mlp;
  return TensorClass::other;
}

struct QuantChoice {
  Quantiser quantiser = Quantiser::int8_clip;
  int bits = 8;
  bool operator==(const QuantChoice&) const = default;
};

inline Quantiser parse_quantiser(std::string_view name) {
  for (Quantiser q : kAllQuantisers)
    if (to_string(q) == name) return q;
  PGOLF_FAIL("unknown quantiser '", std::string(name), "' (expected int8-clip, rowmax, gptq-lite or gptq)");
}

struct ExportOptions {
  QuantChoice attn{}, mlp{}, embed{}, other{};
  // Matrices (2-D, not control) with more elements than this are quantised; the reference's rule is
  // > 65,536. Lower it to quantise the small matrices of a tiny model (they are fp16 otherwise).
  std::size_t quant_min_numel = 65536;
  // GPTQ (5.5): SDClip row scales s_r = fp16(k * std(W_r) / Qmax) with k per class, or (sdclip false)
  // the full sweep once per clip percentile, keeping the lowest Hessian-weighted error.
  bool gptq_sdclip = true;
  double sdclip_attn = 13.0, sdclip_mlp = 11.5, sdclip_embed = 20.0, sdclip_other = 12.85;
  double gptq_damp = 0.01;  // H += damp * mean(diag H) * I
  int gptq_block = 128;
  // LQER (13.2): a rank-r correction of the lqer_tensors matrices with the largest quantisation error.
  int lqer_rank = 0;  // 0: off
  int lqer_tensors = 3;
  // Selective +-1 pruning (5.6): zero the cheapest +-1 codes until the artifact fits; 0: off.
  std::size_t target_bytes = 0;

  const QuantChoice& choice(TensorClass c) const {
    switch (c) {
      case TensorClass::attn: return attn;
      case TensorClass::mlp: return mlp;
      case TensorClass::embed: return embed;
      case TensorClass::other: return other;
    }
    return other;
  }
  double sdclip(TensorClass c) const {
    switch (c) {
      case TensorClass::attn: return sdclip_attn;
      case TensorClass::mlp: return sdclip_mlp;
      case TensorClass::embed: return sdclip_embed;
      case TensorClass::other: return sdclip_other;
    }
    return sdclip_other;
  }
  // The reference's export: the version-1 format, bit-identical.
  bool is_reference() const {
    const QuantChoice ref{};
    return attn == ref && mlp == ref && embed == ref && other == ref && quant_min_numel == 65536 && lqer_rank == 0 &&
           target_bytes == 0;
  }
  bool uses(Quantiser q) const {
    return attn.quantiser == q || mlp.quantiser == q || embed.quantiser == q || other.quantiser == q;
  }
  // The format's name in the log lines, as the records write it: "int8" for the reference, else the
  // attention matrices' width ("int6": the records' mixed int6 blocks / int8 embedding is "int6").
  std::string format_name() const { return "int" + std::to_string(is_reference() ? 8 : attn.bits); }
  // Every class's quantiser and width, e.g. "attn gptq int6, mlp gptq int5, embed int8-clip int8, other gptq int6".
  std::string describe() const {
    std::string out;
    for (TensorClass c : {TensorClass::attn, TensorClass::mlp, TensorClass::embed, TensorClass::other}) {
      if (!out.empty()) out += ", ";
      out += std::string(to_string(c)) + " " + std::string(to_string(choice(c).quantiser)) + " int" +
             std::to_string(choice(c).bits);
    }
    out += ", matrices over " + std::to_string(quant_min_numel) + " elements";
    if (lqer_rank > 0)
      out += ", LQER rank " + std::to_string(lqer_rank) + " on " + std::to_string(lqer_tensors) + " tensors";
    if (target_bytes > 0) out += ", +-1 pruning to " + std::to_string(target_bytes) + " bytes";
    return out;
  }
  void validate() const {
    for (TensorClass c : {TensorClass::attn, TensorClass::mlp, TensorClass::embed, TensorClass::other}) {
      const QuantChoice& q = choice(c);
      check_quant_bits(q.bits, std::string("export ") + std::string(to_string(c)) + " matrices");
      PGOLF_CHECK(q.quantiser != Quantiser::int8_clip || q.bits == 8, "export ", to_string(c),
                  " matrices: the int8-clip quantiser is 8 bits, got ", q.bits);
      PGOLF_CHECK(sdclip(c) > 0, "export ", to_string(c), " matrices: SDClip k must be positive, got ", sdclip(c));
    }
    PGOLF_CHECK(gptq_damp > 0, "GPTQ damping must be positive, got ", gptq_damp);
    PGOLF_CHECK(gptq_block >= 1, "GPTQ block must be at least 1, got ", gptq_block);
    PGOLF_CHECK(lqer_rank >= 0 && lqer_rank <= 16, "LQER rank must be 0..16, got ", lqer_rank);
    PGOLF_CHECK(lqer_tensors >= 1, "LQER tensors must be at least 1, got ", lqer_tensors);
  }
};

// Whether a table row is stored as quantised rows under these options: the table's int8_per_row
// tensors, and (a lowered quant_min_numel) the fp16 matrices above the threshold.
inline bool quantised_rows(const ParamInfo& p, const ExportOptions& o) {
  if (p.export_policy == ExportPolicy::int8_per_row) return true;
  return p.export_policy == ExportPolicy::float16 && p.rank == 2 && p.numel() > o.quant_min_numel;
}

}  // namespace pgolf
