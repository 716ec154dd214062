// pgolf-race: trains every variant of an ablation (a pgolf_add_ablation manifest and/or variant
// binaries) on the same data, seeds and recipe, N runs at a time, and writes a results folder:
// results.md (the table), results.json (the same plus every run's validation curve) and two SVG
// plots (val_bpb against step and against training time).
//
//   pgolf-race --manifest build/tiny-mlp.ablation.json --seeds 1337,1338,1339 --jobs 2
//              --out race/ -- --iterations 300 --val-loss-every 50
//
// Each run is `<binary> train --seed S --out-dir OUT/runs/<variant>/seed<S> --no-progress --overwrite
// <flags>` with its stdout and stderr in that folder (--overwrite because the folder, the race's
// own and fresh or moved aside, already holds them when the binary starts). Resumable: a run whose completion record (race.json)
// matches is not run again; a partial, failed or stale run folder is moved under OUT/stale/ and
// the run starts over. A variant that cannot run, or a run that fails, is a row with its error.
// Exit status: 0 all runs ok, 2 results written but some runs failed, 1 bad input.
#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include <CLI/CLI.hpp>

#include "race.hpp"

extern char** environ;

namespace fs = std::filesystem;
using namespace pgolf::race;

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text(const fs::path& p, const std::string& text) {
  const fs::path tmp = p.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.good()) throw Error("cannot write " + tmp.string());
  }
  fs::rename(tmp, p);  // readers (and a resumed race) never see half a file
}

std::string shell_quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-./=,:+@%") ==
                        std::string::npos)
    return s;
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string capture(const std::string& cmd) {
  std::string out;
  if (FILE* f = ::popen(cmd.c_str(), "r")) {
    char buf[256];
    while (std::fgets(buf, sizeof buf, f)) out += buf;
    ::pclose(f);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

std::string git_commit(const std::string& dir) {
  const std::string g = "git -C " + shell_quote(dir.empty() ? "." : dir);
  const std::string head = capture(g + " rev-parse --short=12 HEAD 2>/dev/null");
  if (head.empty()) return {};
  return head + (capture(g + " status --porcelain --untracked-files=no 2>/dev/null").empty() ? "" : " (with local changes)");
}

// Size and modification time: a rebuilt binary is a different variant for resume.
std::string binary_stamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return std::to_string(st.st_size) + "@" + std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
}

// A child with stdout and stderr sent to files; returns its pid, or the spawn's errno as negative.
pid_t spawn(const std::vector<std::string>& argv, const fs::path& out, const fs::path& err, char** envp) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, args[0], &fa, nullptr, args.data(), envp);
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -rc;
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = ::sigabbrev_np(sig);
    return "killed by signal " + std::to_string(sig) + (name ? std::string(" (SIG") + name + ")" : "");
  }
  return "exit status " + std::to_string(WEXITSTATUS(status));
}

std::string with_stderr(std::string what, const fs::path& err) {
  const std::string line = last_line(read_text(err));
  return line.empty() ? what : what + ": " + line;
}

// `<binary> info` -> parameter count, or the variant's error.
void characterise(VariantResult& v, const fs::path& dir, char** envp) {
  const std::string& bin = v.variant.binary;
  std::error_code ec;
  if (!fs::exists(bin, ec)) {
    v.error = "binary not found: " + bin;
    return;
  }
  if (!fs::is_regular_file(bin, ec) || ::access(bin.c_str(), X_OK) != 0) {
    v.error = "not an executable file: " + bin;
    return;
  }
  fs::create_directories(dir);
  const pid_t pid = spawn({bin, "info"}, dir / "info.txt", dir / "info.stderr.txt", envp);
  if (pid < 0) {
    v.error = "cannot start " + bin + ": " + std::strerror(-pid);
    return;
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    v.error = with_stderr("`info` failed with " + describe_status(status), dir / "info.stderr.txt");
    return;
  }
  const std::string info = read_text(dir / "info.txt");
  v.params = parse_info_params(info);
  if (v.variant.overrides.empty()) v.variant.overrides = parse_info_overrides(info);  // a point raced without its manifest
  if (!v.params) v.error = "`info` printed no \"total parameters:\" line: is " + bin + " a pgolf variant?";
}

struct Job {
  VariantResult* variant;
  std::size_t run;
  std::vector<std::string> argv;
  std::string stamp;
  fs::path dir;
  std::chrono::steady_clock::time_point start;
};

}  // namespace

int main(int argc, char** argv) {
  // Everything after the first "--" is passed to every run's `train`.
  std::vector<std::string> train_flags;
  int own_argc = argc;
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--") {
      own_argc = i;
      for (int k = i + 1; k < argc; ++k) train_flags.emplace_back(argv[k]);
      break;
    }

  std::string manifest_path, seeds_text, out_dir, label;
  std::vector<std::string> binaries;
  int jobs = 1;
  CLI::App app("pgolf-race: train every variant of an ablation on the same data, seeds and recipe; "
               "a results table, JSON and plots", "pgolf-race");
  app.footer("Usage: pgolf-race [--manifest M.json] [BIN...] --seeds 1337,1338 --jobs N --out DIR -- <train flags>");
  app.add_option("--manifest", manifest_path, "a pgolf_add_ablation manifest (<build>/<name>.ablation.json)");
  std::string source_dir_opt;
  app.add_option("--source-dir", source_dir_opt,
                 "the source tree the binaries were built from, for the commit in the results (default: the manifest's)");
  app.add_option("binaries", binaries, "variant binaries (besides or instead of the manifest's)");
  app.add_option("--seeds", seeds_text, "comma-separated seeds, every variant runs each")->required();
  app.add_option("--jobs", jobs, "runs at a time (each gets cores/jobs OpenMP threads unless OMP_NUM_THREADS is set)")
      ->capture_default_str();
  app.add_option("--out", out_dir, "results folder (runs/, results.md, results.json, *.svg)")->required();
  app.add_option("--name", label, "the race's title (default: the manifest's name, else \"race\")");
  try {
    app.parse(own_argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  std::vector<VariantResult> variants;
  std::size_t from_manifest = 0;  // the first variants come from the manifest
  std::string manifest_name;
  RaceInfo info;
  try {
    if (jobs < 1) throw Error("--jobs must be >= 1, got " + std::to_string(jobs));
    info.seeds = parse_seeds(seeds_text);
    check_train_flags(train_flags);
    std::string source_dir;
    if (!manifest_path.empty()) {
      if (!fs::is_regular_file(manifest_path)) throw Error("manifest " + manifest_path + " does not exist");
      Manifest m = parse_manifest(read_text(manifest_path), manifest_path);
      if (label.empty()) label = m.name;
      source_dir = m.source_dir;
      for (auto& v : m.variants) variants.push_back({std::move(v), {}, {}, {}});
      from_manifest = variants.size();
      manifest_name = m.name;
    }
    for (const auto& b : binaries) variants.push_back({variant_from_binary(b), {}, {}, {}});
    std::vector<Variant> all;
    for (const auto& v : variants) all.push_back(v.variant);
    check_unique_names(all);
    if (!source_dir_opt.empty()) source_dir = source_dir_opt;
    info.commit = git_commit(source_dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pgolf-race: error: %s\n", e.what());
    return 1;
  }
  info.label = label.empty() ? "race" : label;
  info.jobs = jobs;
  info.train_flags = train_flags;
  for (int i = 0; i < argc; ++i) info.command += (i ? " " : "") + shell_quote(argv[i]);
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  info.host = host;
  info.cores = std::thread::hardware_concurrency();
  {
    const std::time_t now = std::time(nullptr);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S %Z", std::localtime(&now));
    info.date = buf;
  }

  const fs::path out = out_dir;
  try {
    fs::create_directories(out / "runs");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pgolf-race: error: cannot create the results folder %s: %s\n", out_dir.c_str(), e.what());
    return 1;
  }

  // Parallel runs share the cores: without a thread count of their own each would take them all.
  std::vector<std::string> env_store;
  for (char** e = environ; *e; ++e) env_store.emplace_back(*e);
  if (!std::getenv("OMP_NUM_THREADS")) {
    const unsigned threads = std::max(1u, info.cores / unsigned(jobs));
    env_store.push_back("OMP_NUM_THREADS=" + std::to_string(threads));
    if (jobs > 1) std::printf("pgolf-race: %d runs at a time, OMP_NUM_THREADS=%u each\n", jobs, threads);
  }
  std::vector<char*> envp;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);

  // Characterise every variant, then decide each run: skip (done), redo (moved aside) or run.
  std::vector<Job> queue;
  int reused = 0;
  for (auto& v : variants) {
    const fs::path vdir = out / "runs" / v.variant.name;
    characterise(v, vdir, envp.data());
    if (&v - variants.data() < std::ptrdiff_t(from_manifest) && v.error.rfind("binary not found", 0) == 0)
      v.error += " (not built yet? cmake --build <build> --target " + manifest_name + ")";
    if (!v.error.empty()) {
      std::printf("pgolf-race: %s: %s (its row will show this)\n", v.variant.name.c_str(), v.error.c_str());
      continue;
    }
    const std::string stamp = binary_stamp(v.variant.binary);
    for (const auto seed : info.seeds) {
      const fs::path dir = vdir / ("seed" + std::to_string(seed));
      std::vector<std::string> cmd = {v.variant.binary, "train", "--seed", std::to_string(seed), "--out-dir",
                                      dir.string(), "--no-progress", "--overwrite"};
      cmd.insert(cmd.end(), train_flags.begin(), train_flags.end());
      RunDirState st;
      std::error_code ec;
      st.exists = fs::is_directory(dir, ec);
      st.empty = !st.exists || fs::is_empty(dir, ec);
      if (fs::exists(dir / "race.json")) st.record = read_text(dir / "race.json");
      const RunMetrics metrics = parse_metrics(read_text(dir / "metrics.jsonl"));
      st.metrics_complete = metrics.complete();
      const Decision d = decide_resume(st, cmd, stamp);
      RunResult r;
      r.seed = seed;
      r.dir = fs::relative(dir, out).string();
      if (d.action == Action::skip) {
        const auto rec = parse_record(*st.record);
        r.ok = true, r.reused = true, r.metrics = metrics, r.wall_s = rec ? rec->wall_s : 0;
        v.runs.push_back(r);
        ++reused;
        std::printf("pgolf-race: %s seed %llu: complete, not rerun (val_bpb %.4f)\n", v.variant.name.c_str(),
                    (unsigned long long)seed, metrics.final_val_bpb());
        continue;
      }
      if (d.action == Action::redo) {
        fs::path aside = out / "stale" / v.variant.name / ("seed" + std::to_string(seed));
        for (int k = 1; fs::exists(aside); ++k)
          aside = out / "stale" / v.variant.name / ("seed" + std::to_string(seed) + "." + std::to_string(k));
        fs::create_directories(aside.parent_path());
        fs::rename(dir, aside);
        std::printf("pgolf-race: %s seed %llu: %s; moved to %s, running again\n", v.variant.name.c_str(),
                    (unsigned long long)seed, d.reason.c_str(), aside.c_str());
      }
      v.runs.push_back(r);
      queue.push_back({&v, v.runs.size() - 1, std::move(cmd), stamp, dir, {}});
    }
  }
  std::fflush(stdout);

  // Run the queue, `jobs` at a time.
  std::map<pid_t, Job> running;
  std::size_t next = 0, finished = 0;
  const std::size_t total = queue.size();
  std::printf("pgolf-race: %zu runs to do, %d already complete\n", total, reused);
  std::fflush(stdout);
  const auto finish = [&](Job& job, bool ok, std::string error) {
    RunResult& r = job.variant->runs[job.run];
    r.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - job.start).count();
    r.metrics = parse_metrics(read_text(job.dir / "metrics.jsonl"));
    if (ok && !r.metrics.complete()) ok = false, error = "exited 0 but metrics.jsonl lacks its validation or export record";
    r.ok = ok, r.error = error;
    RunRecord rec{ok, error, job.argv, job.stamp, r.wall_s};
    try {
      write_text(job.dir / "race.json", to_json(rec).dump(2) + "\n");
    } catch (const std::exception& e) {
      std::fprintf(stderr, "pgolf-race: warning: %s\n", e.what());
    }
    ++finished;
    if (ok)
      std::printf("pgolf-race: [%zu/%zu] %s seed %llu: val_bpb %.4f, round trip %.4f (%.1f s)\n", finished, total,
                  job.variant->variant.name.c_str(), (unsigned long long)r.seed, r.metrics.final_val_bpb(),
                  r.metrics.roundtrip_val_bpb.value_or(NAN), r.wall_s);
    else
      std::printf("pgolf-race: [%zu/%zu] %s seed %llu: FAILED: %s\n", finished, total, job.variant->variant.name.c_str(),
                  (unsigned long long)r.seed, error.c_str());
    std::fflush(stdout);
  };
  while (next < total || !running.empty()) {
    while (next < total && running.size() < std::size_t(jobs)) {
      Job& job = queue[next++];
      fs::create_directories(job.dir);
      job.start = std::chrono::steady_clock::now();
      const pid_t pid = spawn(job.argv, job.dir / "stdout.txt", job.dir / "stderr.txt", envp.data());
      if (pid < 0) {
        finish(job, false, "cannot start " + job.argv[0] + ": " + std::strerror(-pid));
        continue;
      }
      std::printf("pgolf-race: start %s seed %s\n", job.variant->variant.name.c_str(), job.argv[3].c_str());
      std::fflush(stdout);
      running.emplace(pid, job);
    }
    if (running.empty()) continue;
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "pgolf-race: error: waitpid: %s\n", std::strerror(errno));
      return 1;
    }
    const auto it = running.find(pid);
    if (it == running.end()) continue;
    Job job = it->second;
    running.erase(it);
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    finish(job, ok, ok ? std::string() : with_stderr(describe_status(status), job.dir / "stderr.txt"));
  }

  // Results.
  try {
    const std::string md = results_markdown(info, variants);
    write_text(out / "results.md", md);
    write_text(out / "results.json", results_json(info, variants).dump(2) + "\n");
    write_text(out / "val_bpb_by_step.svg", svg_plot(race_plot(info.label, variants, false)));
    write_text(out / "val_bpb_by_time.svg", svg_plot(race_plot(info.label, variants, true)));
    std::printf("\n%s\npgolf-race: wrote %s/results.md, results.json, val_bpb_by_step.svg, val_bpb_by_time.svg\n",
                md.c_str(), out_dir.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pgolf-race: error: writing the results: %s\n", e.what());
    return 1;
  }
  for (const auto& v : variants) {
    if (!v.error.empty()) return 2;
    for (const auto& r : v.runs)
      if (!r.ok) return 2;
  }
  return 0;
}
