#include "models.hpp"

std::vector<pgolf::app::CompareRow> prism_compare::compare_vocab257(const pgolf::app::CompareOptions& o) {
  return compare_all<257>(o);
}
