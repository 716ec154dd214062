#include "models.hpp"

std::vector<pgolf::app::CompareRow> prism_compare::compare_vocab12(const pgolf::app::CompareOptions& o) {
  return compare_all<12>(o);
}
