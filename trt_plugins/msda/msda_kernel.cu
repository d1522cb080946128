// MSDA sampling kernels and typed launchers. The per-item maths is compute_item() in msda_kernel.cuh.
//
// Thread mapping: one thread per (n, q, m, group of VEC channels), channel groups fastest. With D = 32 and
// VEC = 2 (FP32) sixteen consecutive threads share one (n, q, m): they read the same location/weight (one
// broadcast transaction) and, per bilinear tap, one contiguous 128-byte row segment of `value`.
#include "msda_kernel.cuh"

#include <cstdint>
#include <limits>
#include <type_traits>

namespace actionvos {
namespace msda {
namespace {

constexpr int kThreads = 256;

template <typename scalar_t, int VEC, typename item_t>
__global__ void __launch_bounds__(kThreads)
    msda_kernel(Dims const d, void const* __restrict__ spatial_shapes, bool const shapes_int64,
                void const* __restrict__ level_start_index, bool const start_int64,
                scalar_t const* __restrict__ value, scalar_t const* __restrict__ sampling_locations,
                scalar_t const* __restrict__ attention_weights, scalar_t* __restrict__ output, item_t const total) {
    __shared__ LevelMeta levels[kMaxLevels];
    if (threadIdx.x < d.L) {
        levels[threadIdx.x] = load_level_meta(spatial_shapes, shapes_int64, level_start_index, start_int64,
                                              static_cast<int32_t>(threadIdx.x), d.S);
    }
    __syncthreads();
    item_t const stride = static_cast<item_t>(gridDim.x) * blockDim.x;
    for (item_t item = static_cast<item_t>(blockIdx.x) * blockDim.x + threadIdx.x; item < total; item += stride) {
        compute_item<scalar_t, VEC, item_t>(item, d, levels, value, sampling_locations, attention_weights, output);
    }
}

bool aligned(void const* p, int64_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

template <typename scalar_t, int VEC>
cudaError_t launch(Dims const& d, void const* shapes, bool shapes_int64, void const* starts, bool start_int64,
                   scalar_t const* value, scalar_t const* loc, scalar_t const* aw, scalar_t* out,
                   cudaStream_t stream) {
    int64_t const total = num_items(d, VEC);
    // Grid-stride loop; 2^20 blocks of 256 threads saturate any current GPU.
    int64_t const blocks = (total + kThreads - 1) / kThreads;
    unsigned const grid = static_cast<unsigned>(blocks < (1 << 20) ? blocks : (1 << 20));
    // 32-bit item arithmetic when no item index (including the last grid-stride step) can overflow it.
    if (total + int64_t{grid} * kThreads <= std::numeric_limits<int32_t>::max()) {
        msda_kernel<scalar_t, VEC, int32_t><<<grid, kThreads, 0, stream>>>(
            d, shapes, shapes_int64, starts, start_int64, value, loc, aw, out, static_cast<int32_t>(total));
    } else {
        msda_kernel<scalar_t, VEC, int64_t><<<grid, kThreads, 0, stream>>>(
            d, shapes, shapes_int64, starts, start_int64, value, loc, aw, out, total);
    }
    return cudaGetLastError();
}

bool valid_dims(Dims const& d) {
    return d.N >= 0 && d.Lq >= 0 && d.S >= 1 && d.M >= 1 && d.D >= 1 && d.L >= 1 && d.L <= kMaxLevels && d.P >= 1;
}

template <typename scalar_t, typename shape_t, typename start_t>
cudaError_t forward(scalar_t const* value, shape_t const* shapes, start_t const* starts, scalar_t const* loc,
                    scalar_t const* aw, scalar_t* out, Dims const& d, cudaStream_t stream, int32_t vec) {
    static_assert(std::is_same<shape_t, int32_t>::value || std::is_same<shape_t, int64_t>::value, "index type");
    static_assert(std::is_same<start_t, int32_t>::value || std::is_same<start_t, int64_t>::value, "index type");
    if (d.N == 0 || d.Lq == 0) return cudaSuccess;
    if (!valid_dims(d)) return cudaErrorInvalidValue;
    if (!value || !shapes || !starts || !loc || !aw || !out) return cudaErrorInvalidValue;
    bool const fp16 = std::is_same<scalar_t, __half>::value;
    int32_t const v = choose_vec(vec, fp16, d.D, value, out);
    bool const s64 = std::is_same<shape_t, int64_t>::value;
    bool const i64 = std::is_same<start_t, int64_t>::value;
    switch (v) {
    case 4: return launch<scalar_t, 4>(d, shapes, s64, starts, i64, value, loc, aw, out, stream);
    case 2: return launch<scalar_t, 2>(d, shapes, s64, starts, i64, value, loc, aw, out, stream);
    case 1: return launch<scalar_t, 1>(d, shapes, s64, starts, i64, value, loc, aw, out, stream);
    default: return cudaErrorInvalidValue;
    }
}

}  // namespace

int32_t choose_vec(int32_t requested, bool fp16, int32_t D, void const* value, void const* output) {
    int32_t const elem = fp16 ? 2 : 4;
    auto ok = [&](int32_t v) {
        return D % v == 0 && aligned(value, int64_t{v} * elem) && aligned(output, int64_t{v} * elem);
    };
    if (requested != 0) {
        return (requested == 1 || requested == 2 || requested == 4) && ok(requested) ? requested : 0;
    }
    for (int32_t v = fp16 ? 4 : 2; v > 1; v /= 2) {
        if (ok(v)) return v;
    }
    return 1;
}

template <typename shape_t, typename start_t>
cudaError_t msda_forward_fp32(float const* value, shape_t const* spatial_shapes, start_t const* level_start_index,
                              float const* sampling_locations, float const* attention_weights, float* output,
                              Dims const& dims, cudaStream_t stream, int32_t vec) {
    return forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, output, dims,
                   stream, vec);
}

template <typename shape_t, typename start_t>
cudaError_t msda_forward_fp16(__half const* value, shape_t const* spatial_shapes, start_t const* level_start_index,
                              __half const* sampling_locations, __half const* attention_weights, __half* output,
                              Dims const& dims, cudaStream_t stream, int32_t vec) {
    return forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, output, dims,
                   stream, vec);
}

#define MSDA_INSTANTIATE(SHAPE_T, START_T)                                                                        \
    template cudaError_t msda_forward_fp32<SHAPE_T, START_T>(float const*, SHAPE_T const*, START_T const*,         \
                                                             float const*, float const*, float*, Dims const&,      \
                                                             cudaStream_t, int32_t);                               \
    template cudaError_t msda_forward_fp16<SHAPE_T, START_T>(__half const*, SHAPE_T const*, START_T const*,        \
                                                             __half const*, __half const*, __half*, Dims const&,   \
                                                             cudaStream_t, int32_t);

MSDA_INSTANTIATE(int32_t, int32_t)
MSDA_INSTANTIATE(int32_t, int64_t)
MSDA_INSTANTIATE(int64_t, int32_t)
MSDA_INSTANTIATE(int64_t, int64_t)
#undef MSDA_INSTANTIATE

}  // namespace msda
}  // namespace actionvos
