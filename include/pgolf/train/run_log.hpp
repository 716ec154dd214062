// RunLog: where a run reports. Human lines (the reference trainer's format, so existing log parsers
// work) go to stdout and to <out_dir>/train.log; machine records go to <out_dir>/metrics.jsonl, one
// JSON object per line; on a terminal a progress bar with an ETA sits below the log lines.
// In a data-parallel run only rank 0 reports: on the other ranks (dist::world()) a RunLog writes
// nothing.
#pragma once

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

#include "pgolf/core/error.hpp"
#include "pgolf/dist/communicator.hpp"

namespace pgolf {

class RunLog {
 public:
  struct Options {
    std::filesystem::path out_dir;  // empty: no files
    bool console = true;            // print lines to stdout
    bool progress = true;           // draw a bar when stdout is a terminal
  };

  RunLog() : RunLog(Options{.console = false, .progress = false}) {}
  explicit RunLog(Options o)
      : console_(o.console && dist::world().is_root()), bar_(o.progress && console_ && ::isatty(STDOUT_FILENO)) {
    if (!o.out_dir.empty() && dist::world().is_root()) {
      std::filesystem::create_directories(o.out_dir);
      log_.open(o.out_dir / "train.log", std::ios::app);
      metrics_.open(o.out_dir / "metrics.jsonl", std::ios::app);
      PGOLF_CHECK(log_.good() && metrics_.good(), "cannot write logs under ", o.out_dir.string());
    }
  }

  void print(const std::string& line) {
    if (console_) {
      clear_bar();
      std::fprintf(stdout, "%s\n", line.c_str());
      std::fflush(stdout);
    }
    if (log_.is_open()) log_ << line << '\n' << std::flush;
  }

  void metric(const std::string& json) {
    if (metrics_.is_open()) metrics_ << json << '\n' << std::flush;
  }

  // Redraws the bar: done/total steps, the last loss, and the time left at the current pace.
  void progress(long long done, long long total, double elapsed_ms, double loss) {
    if (!bar_ || total <= 0) return;
    constexpr int width = 30;
    const double f = std::min(1.0, double(done) / double(total));
    const int filled = int(f * width);
    const double eta_s = done > 0 ? elapsed_ms / double(done) * double(total - done) / 1000.0 : 0.0;
    std::string bar(std::size_t(filled), '=');
    if (filled < width) bar += '>';
    bar.resize(width, ' ');
    std::fprintf(stdout, "\r[%s] %lld/%lld loss %.4f eta %02d:%02d ", bar.c_str(), done, total, loss,
                 int(eta_s) / 60, int(eta_s) % 60);
    std::fflush(stdout);
    bar_drawn_ = true;
  }

  void finish_progress() { clear_bar(); }

 private:
  void clear_bar() {
    if (!bar_drawn_) return;
    std::fprintf(stdout, "\r%*s\r", 80, "");
    bar_drawn_ = false;
  }

  bool console_, bar_, bar_drawn_ = false;
  std::ofstream log_, metrics_;
};

}  // namespace pgolf
