#include "models.hpp"

std::vector<pgolf::app::CompareRow> prism_compare::compare_vocab18(const pgolf::app::CompareOptions& o) {
  return compare_all<18>(o);
}
