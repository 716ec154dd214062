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
    return attn == ref && mlp == ref && embed == ref && other == ref && quant_min_numel == 65536;
  }
  bool uses(Quantiser q) const {
    return attn.quantiser == q || mlp.quantiser == q || embed.quantiser == q || other.quantiser == q;
  }
  // "int8" for the reference, else e.g. "int6", "int6-gptq", "int5-6-gptq-lite" (lowest-highest bits).
  std::string format_name() const {
    if (is_reference()) return "int8";
    int lo = 8, hi = 2;
    for (const QuantChoice* c : {&attn, &mlp, &embed, &other}) lo = std::min(lo, c->bits), hi = std::max(hi, c->bits);
    std::string name = "int" + std::to_string(lo) + (lo == hi ? "" : "-" + std::to_string(hi));
    Quantiser q = attn.quantiser;
    for (const QuantChoice* c : {&mlp, &other})
      if (c->quantiser != Quantiser::int8_clip) q = c->quantiser;
    if (attn.quantiser != Quantiser::int8_clip) q = attn.quantiser;
    if (q == Quantiser::gptq_lite || q == Quantiser::gptq) name += "-" + std::string(to_string(q));
    return name;
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
  }
};

// Whether a table row is stored as quantised rows under these options: the table's int8_per_row
// tensors, and (a lowered quant_min_numel) the fp16 matrices above the threshold.
inline bool quantised_rows(const ParamInfo& p, const ExportOptions& o) {
  if (p.export_policy == ExportPolicy::int8_per_row) return true;
  return p.export_policy == ExportPolicy::float16 && p.rank == 2 && p.numel() > o.quant_min_numel;
}

}  // namespace pgolf
