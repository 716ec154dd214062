#include "models.hpp"

std::vector<pgolf::app::CompareRow> prism_compare::compare_mixture(const pgolf::app::CompareOptions& o) {
  return compare_all<20, pgolf::data::ToyTaskMixture>(o);
}
