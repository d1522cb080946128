// Multi-scale deformable attention (MSDA) sampling core: CUDA kernels and their host-testable maths.
//
// Contract (see README.md; PyTorch oracle: actionvos/model/msda.py::ms_deform_attn_core):
//   value               [N, S, M, D]          float32 | float16, S = sum_l H_l * W_l (levels row-major, concatenated)
//   spatial_shapes      [L, 2]                int32 | int64, (H_l, W_l)
//   level_start_index   [L]                   int32 | int64, offset of level l in S
//   sampling_locations  [N, Lq, M, L, P, 2]   same float type as value, (x, y) normalised to [0, 1]
//   attention_weights   [N, Lq, M, L, P]      same float type as value, already soft-maxed
//   output              [N, Lq, M * D]        same float type as value
// Bilinear sampling, zero padding, align_corners=False: x maps to the pixel coordinate x * W_l - 0.5.
// All arithmetic is FP32 (FP16 tensors are converted on load and rounded once on store).
//
// Everything a kernel thread computes is in MSDA_HD (__host__ __device__) functions below, so the exact
// index arithmetic can be compiled by a host C++ compiler and checked against the oracle on a CPU
// (trt_plugins/msda/tests/host_harness.cpp). The header compiles with nvcc and with g++/clang++
// (CUDA include directory on the include path, for cuda_fp16.h / cuda_runtime_api.h).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>
#include <math.h>

#if defined(__CUDACC__)
#define MSDA_HD __host__ __device__ __forceinline__
#else
#define MSDA_HD inline
#endif
#if defined(__CUDA_ARCH__)
#define MSDA_UNROLL _Pragma("unroll")
#else
#define MSDA_UNROLL
#endif

namespace actionvos {
namespace msda {

//! Largest number of feature levels L supported (level metadata lives in shared memory).
constexpr int32_t kMaxLevels = 16;

//! Problem sizes; every field must be >= 1 for a launch (a zero N or Lq is an empty no-op launch).
struct Dims {
    int32_t N;   //!< batch (frames x prompts)
    int32_t S;   //!< total value positions, sum_l H_l * W_l
    int32_t M;   //!< heads
    int32_t D;   //!< channels per head
    int32_t L;   //!< levels, 1..kMaxLevels
    int32_t P;   //!< points per level
    int32_t Lq;  //!< queries
};

//! One level's geometry after validation. h == 0 marks a level that is skipped (contributes zeros).
struct LevelMeta {
    int32_t h;
    int32_t w;
    int64_t start;  //!< offset of the level's first position in S
};

//! Reads element i of an int32 or int64 index tensor (type chosen at run time, so one kernel serves
//! every combination of spatial_shapes / level_start_index dtypes).
MSDA_HD int64_t read_index(void const* p, int64_t i, bool is_int64) {
    return is_int64 ? static_cast<int64_t const*>(p)[i] : static_cast<int64_t>(static_cast<int32_t const*>(p)[i]);
}

//! Level l's metadata from the raw index tensors. A level whose extent is not positive, or that does not lie
//! inside [0, S), gets h = 0 (skipped) so malformed shape tensors can never cause out-of-bounds reads.
MSDA_HD LevelMeta load_level_meta(void const* spatial_shapes, bool shapes_int64, void const* level_start_index,
                                  bool start_int64, int32_t l, int32_t S) {
    int64_t const h = read_index(spatial_shapes, 2 * static_cast<int64_t>(l), shapes_int64);
    int64_t const w = read_index(spatial_shapes, 2 * static_cast<int64_t>(l) + 1, shapes_int64);
    int64_t const start = read_index(level_start_index, l, start_int64);
    LevelMeta meta{0, 0, 0};
    if (h > 0 && w > 0 && h <= S && w <= S && start >= 0 && start + h * w <= S) {
        meta.h = static_cast<int32_t>(h);
        meta.w = static_cast<int32_t>(w);
        meta.start = start;
    }
    return meta;
}

//! The four bilinear taps of one sampling location. pos[k] is the row-major position y * W + x inside the
//! level, or -1 when that neighbour lies outside the level (its weight is then 0: zero padding).
//! Tap order: (y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1).
struct Taps {
    int32_t pos[4];
    float w[4];
};

//! Bilinear taps for normalised location (x, y) on an H x W level, grid_sample semantics with
//! align_corners=False and zero padding. Returns false (all taps invalid) when no neighbour is inside the
//! level, including for NaN or huge coordinates, so callers may skip the sample.
MSDA_HD bool bilinear_taps(float x, float y, int32_t H, int32_t W, Taps& t) {
    float const px = x * static_cast<float>(W) - 0.5f;  // pixel coordinate; pixel centres at integers
    float const py = y * static_cast<float>(H) - 0.5f;
    // Written so that NaN fails the test; beyond these bounds every neighbour is outside.
    if (!(px > -1.f && py > -1.f && px < static_cast<float>(W) && py < static_cast<float>(H))) {
        return false;
    }
    float const fx0 = floorf(px);
    float const fy0 = floorf(py);
    int32_t const x0 = static_cast<int32_t>(fx0);
    int32_t const y0 = static_cast<int32_t>(fy0);
    float const lx = px - fx0;
    float const ly = py - fy0;
    float const hx = 1.f - lx;
    float const hy = 1.f - ly;
    bool const x0_in = x0 >= 0;
    bool const x1_in = x0 + 1 < W;
    bool const y0_in = y0 >= 0;
    bool const y1_in = y0 + 1 < H;
    int32_t const row0 = y0 * W;
    int32_t const row1 = row0 + W;
    t.pos[0] = (y0_in && x0_in) ? row0 + x0 : -1;
    t.pos[1] = (y0_in && x1_in) ? row0 + x0 + 1 : -1;
    t.pos[2] = (y1_in && x0_in) ? row1 + x0 : -1;
    t.pos[3] = (y1_in && x1_in) ? row1 + x0 + 1 : -1;
    t.w[0] = t.pos[0] >= 0 ? hy * hx : 0.f;
    t.w[1] = t.pos[1] >= 0 ? hy * lx : 0.f;
    t.w[2] = t.pos[2] >= 0 ? ly * hx : 0.f;
    t.w[3] = t.pos[3] >= 0 ? ly * lx : 0.f;
    return true;
}

MSDA_HD float to_float(float v) { return v; }
MSDA_HD float to_float(__half v) { return __half2float(v); }

//! Loads VEC consecutive channels as float. On the device, VEC > 1 uses vector loads (the caller guarantees
//! alignment: channel offset a multiple of VEC, base pointer aligned to VEC elements); on the host, and for
//! VEC == 1, scalar loads. Results are identical: only the memory transactions differ.
template <int VEC>
MSDA_HD void load_vec(float const* p, float (&v)[VEC]) {
#if defined(__CUDA_ARCH__)
    if constexpr (VEC == 4) {
        float4 const q = *reinterpret_cast<float4 const*>(p);
        v[0] = q.x; v[1] = q.y; v[2] = q.z; v[3] = q.w;
    } else if constexpr (VEC == 2) {
        float2 const q = *reinterpret_cast<float2 const*>(p);
        v[0] = q.x; v[1] = q.y;
    } else {
        v[0] = p[0];
    }
#else
    for (int i = 0; i < VEC; ++i) v[i] = p[i];
#endif
}

template <int VEC>
MSDA_HD void load_vec(__half const* p, float (&v)[VEC]) {
#if defined(__CUDA_ARCH__)
    if constexpr (VEC % 2 == 0) {
MSDA_UNROLL
        for (int i = 0; i < VEC; i += 2) {
            float2 const q = __half22float2(reinterpret_cast<__half2 const*>(p)[i / 2]);
            v[i] = q.x;
            v[i + 1] = q.y;
        }
    } else {
        v[0] = __half2float(p[0]);
    }
#else
    for (int i = 0; i < VEC; ++i) v[i] = __half2float(p[i]);
#endif
}

template <int VEC>
MSDA_HD void store_vec(float const (&v)[VEC], float* p) {
MSDA_UNROLL
    for (int i = 0; i < VEC; ++i) p[i] = v[i];
}

//! Stores VEC channels rounded to FP16 (round-to-nearest-even), as __half2 pairs on the device.
template <int VEC>
MSDA_HD void store_vec(float const (&v)[VEC], __half* p) {
#if defined(__CUDA_ARCH__)
    if constexpr (VEC % 2 == 0) {
MSDA_UNROLL
        for (int i = 0; i < VEC; i += 2) reinterpret_cast<__half2*>(p)[i / 2] = __floats2half2_rn(v[i], v[i + 1]);
    } else {
        p[0] = __float2half_rn(v[0]);
    }
#else
    for (int i = 0; i < VEC; ++i) p[i] = __float2half_rn(v[i]);
#endif
}

//! Total work items: one per (n, q, m, group of VEC channels).
MSDA_HD int64_t num_items(Dims const& d, int32_t vec) {
    return static_cast<int64_t>(d.N) * d.Lq * d.M * (d.D / vec);
}

//! The whole computation of one work item `item` in [0, num_items): output channels [c, c + VEC) of
//! (n, q, m). `levels` holds L validated LevelMeta. This is the kernel body; the CPU harness calls it too.
//! item_t (int32_t or int64_t) is the type of the item decomposition (three divisions per thread); the
//! launchers use int32_t whenever every item index fits, since 64-bit division is slow on the GPU.
template <typename scalar_t, int VEC, typename item_t = int64_t>
MSDA_HD void compute_item(item_t item, Dims const& d, LevelMeta const* levels, scalar_t const* value,
                          scalar_t const* sampling_locations, scalar_t const* attention_weights,
                          scalar_t* output) {
    item_t const groups = d.D / VEC;
    int32_t const c = static_cast<int32_t>(item % groups) * VEC;  // first channel of this item
    item_t const nqm_i = item / groups;                            // ((n * Lq) + q) * M + m
    int32_t const m = static_cast<int32_t>(nqm_i % d.M);
    int64_t const n = nqm_i / (static_cast<item_t>(d.Lq) * d.M);
    int64_t const nqm = nqm_i;
    int64_t const row = static_cast<int64_t>(d.M) * d.D;  // stride between value positions

    scalar_t const* v_nm = value + n * d.S * row + static_cast<int64_t>(m) * d.D + c;
    scalar_t const* loc = sampling_locations + nqm * d.L * d.P * 2;
    scalar_t const* aw = attention_weights + nqm * d.L * d.P;

    float acc[VEC];
MSDA_UNROLL
    for (int i = 0; i < VEC; ++i) acc[i] = 0.f;

    for (int32_t l = 0; l < d.L; ++l) {
        LevelMeta const lv = levels[l];
        if (lv.h == 0) {
            loc += 2 * d.P;
            aw += d.P;
            continue;
        }
        scalar_t const* v_level = v_nm + lv.start * row;
        for (int32_t p = 0; p < d.P; ++p, loc += 2, ++aw) {
            Taps t;
            if (!bilinear_taps(to_float(loc[0]), to_float(loc[1]), lv.h, lv.w, t)) continue;
            float const a = to_float(*aw);
MSDA_UNROLL
            for (int k = 0; k < 4; ++k) {
                if (t.pos[k] < 0) continue;
                float v[VEC];
                load_vec<VEC>(v_level + static_cast<int64_t>(t.pos[k]) * row, v);
                float const wk = t.w[k] * a;
MSDA_UNROLL
                for (int i = 0; i < VEC; ++i) acc[i] += wk * v[i];
            }
        }
    }
    store_vec<VEC>(acc, output + nqm * d.D + c);
}

// ---------------------------------------------------------------------------------------------------------
// Typed launchers (defined in msda_kernel.cu, explicitly instantiated for int32_t / int64_t index tensors,
// independently for spatial_shapes and level_start_index).
//
// All pointers are device pointers to contiguous tensors of the contract's shapes. `vec` selects how many
// channels one thread handles: 0 = automatic (FP32: 2, FP16: 4, reduced while D or pointer alignment does
// not allow it), else 1, 2 or 4 (must divide D; rejected if the pointers are not aligned for it).
// Returns cudaErrorInvalidValue for bad sizes (any size < 0, L or D or M or P == 0 with work to do,
// L > kMaxLevels), cudaSuccess without launching when N * Lq == 0, else the launch status.
// The call is asynchronous on `stream`.
// ---------------------------------------------------------------------------------------------------------
template <typename shape_t, typename start_t>
cudaError_t msda_forward_fp32(float const* value, shape_t const* spatial_shapes, start_t const* level_start_index,
                              float const* sampling_locations, float const* attention_weights, float* output,
                              Dims const& dims, cudaStream_t stream, int32_t vec = 0);

template <typename shape_t, typename start_t>
cudaError_t msda_forward_fp16(__half const* value, shape_t const* spatial_shapes, start_t const* level_start_index,
                              __half const* sampling_locations, __half const* attention_weights, __half* output,
                              Dims const& dims, cudaStream_t stream, int32_t vec = 0);

//! Channel-group width the launchers would use: 0 when `requested` is impossible for these sizes/pointers.
int32_t choose_vec(int32_t requested, bool fp16, int32_t D, void const* value, void const* output);

}  // namespace msda
}  // namespace actionvos
