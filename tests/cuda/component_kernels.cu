#include "component_kernels.hpp"

#include "../nn/component_cases.hpp"
#include "lone_layout.cuh"

pgolf::test::LoneResult run_case_cuda(std::string_view name, const pgolf::test::LoneInput& in) {
  pgolf::test::LoneResult out;
  bool found = false;
  pgolf::test::for_each_case([&]<class C>(std::type_identity<C>) {
    if constexpr (C::cuda) {
      if (C::name == name) {
        out = pgolf::test::run_lone<typename C::Arch, typename C::Run, pgolf::Cuda, typename C::Table, C::outputs>(in);
        found = true;
      }
    }
  });
  PGOLF_CHECK(found, "run_case_cuda: no CUDA case named ", std::string(name));
  return out;
}
