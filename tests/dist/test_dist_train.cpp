// Data-parallel training over MPI against one process, run under mpiexec (CTest label `mpi`):
//
//   mpiexec -np N test_dist_train equality   N ranks train a small GPT for a few steps with a
//       global batch of 12 sequences (2 per micro-batch: 6 micro-steps in one process, 3 per rank
//       on 2 ranks, 2 per rank on 3); then rank 0 trains the same config as a single process and
//       compares, in float and in double:
//         - every rank holds bit-identical weights (the MPI all-reduce is reduce + broadcast);
//         - Muon split over the ranks by matrix (muon_shard, the default) gives bit for bit the
//           weights and losses of Muon run whole on every rank;
//         - the first step's loss is equal up to double rounding (the same micro-batches, forwards
//           bit for bit equal; only the order of the double additions of their losses differs);
//         - later losses, the final validation loss and the final weights are equal within float
//           (resp. double) rounding, not bit for bit: one process accumulates its micro-batches'
//           gradients inside the backward's products (beta = 1), the ranks add finished sums, and
//           float addition is not associative. The tolerances are orders of magnitude below what a
//           wrong data slice or a wrong gradient scale gives (the loss moves by ~1e-2 per step).
//         - every rank reports the time it spent in the gradient all-reduce (and sharded Muon's).
//   mpiexec -np N test_dist_train wallclock  a wall-clock cap far below the iterations: every rank
//       stops at the same step (rank 0's clock decides), so none is left waiting in a collective,
//       and, the warmdown running by that clock, every rank ends with the same weights.
//   mpiexec -np N test_dist_train fail R     rank R is given a missing data path: the job must end
//       non-zero with "rank R/N" in the message (CTest checks the output and a timeout).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "pgolf/dist/launch.hpp"
#include "pgolf/model/gpt.hpp"
#include "pgolf/train/trainer.hpp"

using namespace pgolf;

namespace {

constexpr GptSpec kSpec{.vocab = 1024, .dim = 64, .depth = {.layers = 2},
                        .attention = {.heads = 2, .kv_heads = 1, .rope_dims = 16}};

TrainConfig config() {
  TrainConfig c;
  c.data_path = (std::filesystem::path(PGOLF_DATA_DIR) / "fineweb_sp1024_mini").string();
  c.tokenizer_path = (std::filesystem::path(PGOLF_DATA_DIR) / "tokenizers/fineweb_1024_bpe.model").string();
  c.iterations = 6;
  c.warmdown_iters = 3;
  c.max_wallclock_seconds = 0;
  c.val_loss_every = 3;
  c.train_log_every = 0;
  c.train_seq_len = 64;
  c.train_batch_tokens = 12 * 64;  // 12 sequences: divisible by 1, 2, 3, 4, 6 ranks
  c.micro_batch_tokens = 2 * 64;   // 2 sequences per micro-batch on every rank count
  c.muon_momentum_warmup_steps = 4;
  c.val_tokens = 64 * 30 + 1;  // 30 validation sequences: uneven shares on 4 ranks
  return c;
}

template <class T>
struct Run {
  std::vector<double> train_loss, val_loss;
  std::vector<T> params;
  long long steps = 0;
  std::vector<typename Trainer<Gpt<kSpec, T>>::CommTime> comm;
};

template <class T>
Run<T> train(const TrainConfig& c) {
  RunLog log;
  Trainer<Gpt<kSpec, T>> tr(c, log);
  const auto res = tr.run();
  Run<T> r;
  for (const auto& t : res.train) r.train_loss.push_back(t.train_loss);
  for (const auto& v : res.val) r.val_loss.push_back(v.val_loss);
  r.params = Trainer<Gpt<kSpec, T>>::Policy::params_to_host(tr.model());
  r.steps = res.steps;
  r.comm = res.comm;
  return r;
}

double rel(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-30); }

// N ranks against one process; returns the number of failed checks (on rank 0; 0 elsewhere).
template <class T>
int equality(const char* name, double first_tol, double loss_tol, double weight_tol) {
  auto& comm = dist::world();
  const Run<T> d = train<T>(config());  // Muon split over the ranks (muon_shard, the default)
  TrainConfig whole = config();
  whole.muon_shard = false;
  const Run<T> w = train<T>(whole);     // every rank runs all of Muon

  // Every rank holds rank 0's weights bit for bit.
  std::vector<T> root = d.params;
  comm.broadcast(std::as_writable_bytes(std::span<T>(root)), 0);
  double differ = std::equal(root.begin(), root.end(), d.params.begin()) ? 0 : 1;
  differ = comm.sum(differ);
  const double unsplit_differ = comm.sum(d.params == w.params && d.train_loss == w.train_loss ? 0.0 : 1.0);
  if (!comm.is_root()) return 0;

  int failed = 0;
  auto check = [&](bool ok, const std::string& what) {
    std::printf("%s %s: %s\n", ok ? "ok  " : "FAIL", name, what.c_str());
    if (!ok) ++failed;
  };
  check(differ == 0, "weights identical on all " + std::to_string(comm.size()) + " ranks (" +
                         std::to_string(int(differ)) + " differ)");
  check(unsplit_differ == 0, "Muon split over the ranks gives bit for bit the weights and losses of Muon run whole on "
                             "every rank (" + std::to_string(int(unsplit_differ)) + " ranks differ)");

  Run<T> s;
  {
    dist::ScopedWorld single(std::make_unique<dist::SingleProcess>());
    s = train<T>(config());
  }
  check(d.train_loss.size() == s.train_loss.size() && d.val_loss.size() == s.val_loss.size(), "same number of records");
  // The communication time every rank reports: one gradient all-reduce per step, timed on each rank;
  // sharded Muon's all-reduce only where Muon is split; nothing on one process.
  auto comm_ok = [&](const Run<T>& r, bool muon_split) {
    if (r.comm.size() != std::size_t(comm.size())) return false;
    for (const auto& t : r.comm)
      if (t.steps != r.steps || !(t.grad_ms > 0) || (muon_split ? !(t.muon_ms > 0) : t.muon_ms != 0)) return false;
    return true;
  };
  check(comm_ok(d, true) && comm_ok(w, false) && s.comm.empty(),
        "every rank reports its all-reduce time for every step (gradients; Muon's only when split), one process none");
  if (failed) return failed;
  char buf[256];
  std::snprintf(buf, sizeof buf, "step 1 loss %.17g vs %.17g (rel %.3g, tol %.1g)", d.train_loss[0], s.train_loss[0],
                rel(d.train_loss[0], s.train_loss[0]), first_tol);
  check(rel(d.train_loss[0], s.train_loss[0]) <= first_tol, buf);
  double worst = 0;
  for (std::size_t i = 0; i < s.train_loss.size(); ++i) worst = std::max(worst, rel(d.train_loss[i], s.train_loss[i]));
  std::snprintf(buf, sizeof buf, "train losses, worst rel diff %.3g (tol %.1g)", worst, loss_tol);
  check(worst <= loss_tol, buf);
  worst = 0;
  for (std::size_t i = 0; i < s.val_loss.size(); ++i) worst = std::max(worst, rel(d.val_loss[i], s.val_loss[i]));
  std::snprintf(buf, sizeof buf, "val losses (%zu evaluations), worst rel diff %.3g (tol %.1g)", s.val_loss.size(),
                worst, loss_tol);
  check(worst <= loss_tol, buf);
  double wmax = 0, wscale = 0;
  for (std::size_t i = 0; i < s.params.size(); ++i) {
    wmax = std::max(wmax, std::abs(double(d.params[i]) - double(s.params[i])));
    wscale = std::max(wscale, std::abs(double(s.params[i])));
  }
  std::snprintf(buf, sizeof buf, "final weights, max abs diff %.3g of max |w| %.3g (tol %.1g)", wmax, wscale, weight_tol);
  check(wmax <= weight_tol, buf);
  return failed;
}

int wallclock() {
  auto& comm = dist::world();
  TrainConfig c = config();
  c.iterations = 100000;
  c.val_loss_every = 0;
  c.warmdown_iters = 1000;  // by the clock: the learning rate falls from the first step
  c.max_wallclock_seconds = 1.0;
  const Run<float> r = train<float>(c);
  const double mine = double(r.steps), total = comm.sum(mine);
  std::vector<float> root = r.params;
  comm.broadcast(std::as_writable_bytes(std::span<float>(root)), 0);
  const double differ = comm.sum(root == r.params ? 0.0 : 1.0);
  const bool same = total == mine * comm.size() && differ == 0;
  if (comm.is_root())
    std::printf("%s wallclock: every rank stopped at step %lld (sum over ranks %.0f) with the same weights (%.0f "
                "ranks differ)\n", same ? "ok  " : "FAIL", r.steps, total, differ);
  // A rank that disagreed would have hung above or shows here; all ranks agree on the verdict.
  return comm.sum(same ? 0.0 : 1.0) == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "equality";
  dist::ScopedWorld world;
  try {
    world.install(dist::from_environment(false));
    auto& comm = dist::world();
    if (mode == "fail") {
      const int bad = argc > 2 ? std::atoi(argv[2]) : 1;
      TrainConfig c = config();
      if (comm.rank() == bad) c.data_path = "/nonexistent/pgolf-dist-test";
      train<float>(c);  // rank `bad` throws; the others wait in the first collective
      std::printf("rank %d: training finished, but rank %d should have failed\n", comm.rank(), bad);
      return 0;
    }
    if (mode == "wallclock") return wallclock();
    PGOLF_CHECK(mode == "equality", "unknown mode '", mode, "' (equality, wallclock, fail R)");
    if (comm.is_root()) std::printf("%d ranks against one process\n", comm.size());
    int failed = equality<double>("double", 1e-15, 1e-11, 1e-11);
    failed += equality<float>("float", 1e-15, 1e-6, 1e-4);
    if (comm.is_root()) std::printf("%s\n", failed ? "FAILED" : "PASSED");
    return comm.sum(double(failed)) == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    if (world.distributed()) dist::world().fail(e.what());
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
