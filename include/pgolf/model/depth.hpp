// Depth as a schedule: the physical block each virtual layer runs, fixed at compile time.
//
//   cyclic(9, 9)                 [0,1,...,8]                 the baseline (one use per block)
//   cyclic(12, 6)                [0..5,0..5]                 the whole stack looped (depth.loops)
//   repeat_in_place(9, 3, 4, 2)  [0,1,2,3,3,4,4,5,6,7,8]     each of blocks 3..4 run twice in place
//   repeat_span(11, 3, 5, 3)     [0,1,2,3,4,5,3,4,5,3,4,5,6,7,8,9,10]   blocks 3..5 run three times
//   schedule_of(0, 1, 1, 0)      any explicit list
//
// A virtual layer sees (v, b, use): its position, its physical block and how many earlier layers ran
// the same block. A model may carry two schedules (loop off, loop on) and switch at run time; the
// tensors owned per virtual layer (Scope::layer) are then the uses of the loop-on schedule, so a
// use keeps its tensors across the switch. The U-Net encoder/decoder split is computed on the
// virtual sequence of the running schedule.
#pragma once

#include <array>
#include <cstddef>

namespace pgolf {

inline constexpr int kMaxVirtualLayers = 32;

// What a physical block that runs at several virtual layers shares: everything (block), or only its
// matrices, each use keeping its own scalars and control tensors (matrices: the strongest records'
// looping; those rows are then owned per virtual layer, Scope::layer).
enum class Sharing { block, matrices };

struct Schedule {
  int count = 0;                               // virtual layers; 0 means "not given"
  std::array<int, kMaxVirtualLayers> block{};  // physical block of virtual layer v

  constexpr int operator[](int v) const { return block[std::size_t(v)]; }
  constexpr bool empty() const { return count == 0; }
  // Physical blocks: one more than the largest block index.
  constexpr int blocks() const {
    int m = -1;
    for (int v = 0; v < count; ++v) m = block[std::size_t(v)] > m ? block[std::size_t(v)] : m;
    return m + 1;
  }
  constexpr int uses(int b) const {
    int n = 0;
    for (int v = 0; v < count; ++v) n += block[std::size_t(v)] == b ? 1 : 0;
    return n;
  }
  // How many virtual layers before v run v's block.
  constexpr int use_index(int v) const {
    int n = 0;
    for (int u = 0; u < v; ++u) n += block[std::size_t(u)] == block[std::size_t(v)] ? 1 : 0;
    return n;
  }
  // The virtual layer that is the k-th use of block b, or -1.
  constexpr int layer_of_use(int b, int k) const {
    for (int v = 0; v < count; ++v)
      if (block[std::size_t(v)] == b && k-- == 0) return v;
    return -1;
  }
  // Every block 0..blocks()-1 runs at least once (an unused block would hold dead tensors).
  constexpr bool covers_every_block() const {
    for (int b = 0; b < blocks(); ++b)
      if (uses(b) == 0) return false;
    return true;
  }
  constexpr bool valid_entries() const {
    for (int v = 0; v < count; ++v)
      if (block[std::size_t(v)] < 0) return false;
    return count >= 0 && count <= kMaxVirtualLayers;
  }
  constexpr bool operator==(const Schedule&) const = default;

  constexpr Schedule& push(int b) {
    if (count >= kMaxVirtualLayers) throw "Schedule: more virtual layers than kMaxVirtualLayers (32)";
    if (b < 0) throw "Schedule: a physical block index must not be negative";
    block[std::size_t(count++)] = b;
    return *this;
  }
};

// layers virtual layers over `blocks` physical blocks, v -> v % blocks.
constexpr Schedule cyclic(int layers, int blocks) {
  Schedule s;
  if (blocks <= 0) throw "cyclic: blocks must be positive";
  for (int v = 0; v < layers; ++v) s.push(v % blocks);
  return s;
}

// Blocks 0..blocks-1 in order, each of first..last run `times` times in place.
constexpr Schedule repeat_in_place(int blocks, int first, int last, int times) {
  if (first < 0 || last < first || last >= blocks || times < 1) throw "repeat_in_place: need 0 <= first <= last < blocks, times >= 1";
  Schedule s;
  for (int b = 0; b < blocks; ++b)
    for (int t = 0; t < (b >= first && b <= last ? times : 1); ++t) s.push(b);
  return s;
}

// Blocks 0..blocks-1 in order, the span first..last run `times` times in a row.
constexpr Schedule repeat_span(int blocks, int first, int last, int times) {
  if (first < 0 || last < first || last >= blocks || times < 1) throw "repeat_span: need 0 <= first <= last < blocks, times >= 1";
  Schedule s;
  for (int b = 0; b < first; ++b) s.push(b);
  for (int t = 0; t < times; ++t)
    for (int b = first; b <= last; ++b) s.push(b);
  for (int b = last + 1; b < blocks; ++b) s.push(b);
  return s;
}

// A set of physical blocks a technique applies to: explicit blocks, the last N, or all of them.
// Resolved against the model's block count (`contains(b, blocks)`); members are numbered in block
// order (`index`) for techniques that keep a tensor per member.
struct BlockSet {
  unsigned mask = 0;  // bit b: block b
  int last = 0;       // the last `last` blocks
  bool all = false;

  constexpr bool empty() const { return !all && last == 0 && mask == 0; }
  constexpr bool contains(int b, int blocks) const {
    if (b < 0 || b >= blocks) return false;
    return all || (last > 0 && b >= blocks - last) || ((mask >> unsigned(b)) & 1u) != 0;
  }
  constexpr int count(int blocks) const {
    int n = 0;
    for (int b = 0; b < blocks; ++b) n += contains(b, blocks) ? 1 : 0;
    return n;
  }
  // Position of member b among the members (block order), or -1.
  constexpr int index(int b, int blocks) const {
    if (!contains(b, blocks)) return -1;
    int n = 0;
    for (int u = 0; u < b; ++u) n += contains(u, blocks) ? 1 : 0;
    return n;
  }
  // Every named block exists.
  constexpr bool within(int blocks) const {
    return last >= 0 && last <= blocks && (blocks >= 32 || (mask >> unsigned(blocks)) == 0);
  }
  constexpr bool operator==(const BlockSet&) const = default;
};
template <class... I>
constexpr BlockSet blocks_of(I... b) {
  BlockSet s;
  ((s.mask |= (int(b) >= 0 && int(b) < 32) ? 1u << unsigned(b) : 0u), ...);
  if (((int(b) < 0 || int(b) >= 32) || ...)) throw "blocks_of: a block index must be in 0..31";
  return s;
}
constexpr BlockSet last_blocks(int n) { return BlockSet{.last = n}; }
constexpr BlockSet all_blocks() { return BlockSet{.all = true}; }

template <class... I>
constexpr Schedule schedule_of(I... blocks) {
  Schedule s;
  (s.push(int(blocks)), ...);
  return s;
}

// What a model derives from its schedules: per phase (0: the schedule, 1: the loop-on schedule when
// there is one) the block, use and per-layer tensor slot of every virtual layer, and the U-Net split.
struct DepthPlan {
  Schedule phase[2]{};
  int phases = 1;
  bool unet = false;

  constexpr const Schedule& canonical() const { return phase[phases - 1]; }
  constexpr int blocks() const { return phase[0].blocks(); }
  constexpr int layers(int p) const { return phase[p].count; }
  constexpr int max_layers() const { return phase[0].count > phase[phases - 1].count ? phase[0].count : phase[phases - 1].count; }
  // Per-layer tensors: one slot per virtual layer of the loop-on schedule.
  constexpr int layer_slots() const { return canonical().count; }
  // The slot of virtual layer v of phase p: the same (block, use) in the loop-on schedule.
  constexpr int slot(int p, int v) const {
    return canonical().layer_of_use(phase[p][v], phase[p].use_index(v));
  }
  // U-Net segments: the whole virtual sequence, or consecutive segments of loop_len layers (skips
  // inside each loop), each split into encoder (first half) and decoder; the skip weights are indexed
  // by the skip's position in its segment, so every segment shares them.
  int loop_len = 0;
  constexpr int segment(int p) const { return loop_len > 0 ? loop_len : phase[p].count; }
  constexpr int encoder_layers(int p) const { return unet ? segment(p) / 2 : 0; }
  constexpr int skip_count(int p) const {
    const int e = encoder_layers(p), d = segment(p) - e;
    return unet ? (e < d ? e : d) : 0;
  }
  constexpr int max_skips() const {
    return skip_count(0) > skip_count(phases - 1) ? skip_count(0) : skip_count(phases - 1);
  }
  // The skip decoder layer v adds before its block (its index in the skip weights), or -1.
  constexpr int skip_into(int p, int v) const {
    if (!unet || segment(p) <= 0) return -1;
    const int i = v % segment(p) - encoder_layers(p);
    return i >= 0 && i < skip_count(p) ? i : -1;
  }
  // The encoder layer whose output skip_into(p, v) adds.
  constexpr int skip_source(int p, int v) const {
    return v - v % segment(p) + encoder_layers(p) - 1 - skip_into(p, v);
  }
  // The skip encoder layer v's output feeds, or -1.
  constexpr int skip_from(int p, int v) const {
    if (!unet || segment(p) <= 0) return -1;
    const int i = encoder_layers(p) - 1 - v % segment(p);
    return i >= 0 && i < skip_count(p) ? i : -1;
  }
  // Each block's uses in phase 0 are a subset of its uses in the loop-on phase (a per-use tensor of
  // the loop-off schedule then exists in both).
  constexpr bool phases_nest() const {
    if (phase[0].blocks() != canonical().blocks()) return false;
    for (int b = 0; b < blocks(); ++b)
      if (phase[0].uses(b) > canonical().uses(b)) return false;
    return true;
  }
};

}  // namespace pgolf
