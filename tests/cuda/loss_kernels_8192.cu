// The head's row kernels at the records' vocabulary (8192), for ptxas's resource report
// (tests/cuda/resource_usage.cmake): a lane that held its row in registers would spill here.
// Compiled by that test only; nothing runs.
#include "pgolf/ops/cuda/asym_softcap.cuh"
#include "pgolf/ops/cuda/cross_entropy.cuh"
#include "pgolf/ops/cuda/distill.cuh"

namespace d = pgolf::ops::cuda::detail;
constexpr int kVocab = 8192;
// Taking each kernel's address instantiates it.
void* const pgolf_loss_kernels_8192[] = {
    reinterpret_cast<void*>(&d::softcap_ce_forward_kernel<kVocab>),
    reinterpret_cast<void*>(&d::softcap_ce_backward_kernel<kVocab>),
    reinterpret_cast<void*>(&d::asym_softcap_ce_forward_kernel<kVocab>),
    reinterpret_cast<void*>(&d::asym_softcap_ce_backward_kernel<kVocab>),
    reinterpret_cast<void*>(&d::softcap_distill_forward_kernel<kVocab>),
    reinterpret_cast<void*>(&d::softcap_distill_backward_kernel<kVocab>),
};
