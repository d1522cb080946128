// PyTorch binding of the MSDA CUDA kernels (the same msda_kernel.cu the TensorRT plugin uses), for testing and
// benchmarking against the oracle. Built on demand by actionvos/export/msda_cuda.py (torch cpp_extension).
//
// msda_forward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, out=None, vec=0)
//   value [N, S, M, D] float32|float16 CUDA; spatial_shapes [L, 2] and level_start_index [L] int32|int64 CUDA;
//   sampling_locations [N, Lq, M, L, P, 2] and attention_weights [N, Lq, M, L, P] of value's dtype.
//   out: optional contiguous [N, Lq, M*D] tensor of value's dtype/device to write into (every element is
//   written). vec: channels per thread (0 = automatic, else 1, 2 or 4). Returns the output.
//   Raises RuntimeError (c10::Error) on bad shapes/dtypes/devices or a failed launch.
#include <torch/extension.h>

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <limits>

#include "msda_kernel.cuh"

namespace {

namespace am = actionvos::msda;

template <typename shape_t, typename start_t>
cudaError_t run(torch::Tensor const& value, torch::Tensor const& shapes, torch::Tensor const& starts,
                torch::Tensor const& loc, torch::Tensor const& aw, torch::Tensor& out, am::Dims const& d,
                cudaStream_t stream, int32_t vec) {
    auto const* sp = shapes.data_ptr<shape_t>();
    auto const* st = starts.data_ptr<start_t>();
    if (value.scalar_type() == torch::kFloat32) {
        return am::msda_forward_fp32(value.data_ptr<float>(), sp, st, loc.data_ptr<float>(), aw.data_ptr<float>(),
                                     out.data_ptr<float>(), d, stream, vec);
    }
    auto half = [](torch::Tensor const& t) { return reinterpret_cast<__half*>(t.data_ptr<at::Half>()); };
    return am::msda_forward_fp16(half(value), sp, st, half(loc), half(aw), half(out), d, stream, vec);
}

int32_t checked_int(int64_t v, char const* what) {
    TORCH_CHECK(v >= 0 && v <= std::numeric_limits<int32_t>::max(), "msda_forward: ", what, " = ", v,
                " out of range");
    return static_cast<int32_t>(v);
}

torch::Tensor msda_forward(torch::Tensor value, torch::Tensor spatial_shapes, torch::Tensor level_start_index,
                           torch::Tensor sampling_locations, torch::Tensor attention_weights,
                           c10::optional<torch::Tensor> out, int64_t vec) {
    TORCH_CHECK(value.is_cuda(), "msda_forward: value must be a CUDA tensor");
    for (auto const* t : {&spatial_shapes, &level_start_index, &sampling_locations, &attention_weights}) {
        TORCH_CHECK(t->device() == value.device(), "msda_forward: all inputs must be on ", value.device());
    }
    auto const ft = value.scalar_type();
    TORCH_CHECK(ft == torch::kFloat32 || ft == torch::kFloat16, "msda_forward: value must be float32 or float16");
    TORCH_CHECK(sampling_locations.scalar_type() == ft && attention_weights.scalar_type() == ft,
                "msda_forward: sampling_locations and attention_weights must have value's dtype");
    for (auto const* t : {&spatial_shapes, &level_start_index}) {
        TORCH_CHECK(t->scalar_type() == torch::kInt32 || t->scalar_type() == torch::kInt64,
                    "msda_forward: spatial_shapes / level_start_index must be int32 or int64");
    }
    TORCH_CHECK(value.dim() == 4, "msda_forward: value must be [N, S, M, D]");
    TORCH_CHECK(sampling_locations.dim() == 6 && sampling_locations.size(5) == 2,
                "msda_forward: sampling_locations must be [N, Lq, M, L, P, 2]");
    TORCH_CHECK(attention_weights.dim() == 5, "msda_forward: attention_weights must be [N, Lq, M, L, P]");
    TORCH_CHECK(spatial_shapes.dim() == 2 && spatial_shapes.size(1) == 2,
                "msda_forward: spatial_shapes must be [L, 2]");
    TORCH_CHECK(level_start_index.dim() == 1, "msda_forward: level_start_index must be [L]");

    am::Dims d{};
    d.N = checked_int(value.size(0), "N");
    d.S = checked_int(value.size(1), "S");
    d.M = checked_int(value.size(2), "M");
    d.D = checked_int(value.size(3), "D");
    d.Lq = checked_int(sampling_locations.size(1), "Lq");
    d.L = checked_int(sampling_locations.size(3), "L");
    d.P = checked_int(sampling_locations.size(4), "P");
    TORCH_CHECK(sampling_locations.size(0) == d.N && sampling_locations.size(2) == d.M,
                "msda_forward: sampling_locations N/M differ from value's");
    TORCH_CHECK(attention_weights.sizes() == sampling_locations.sizes().slice(0, 5),
                "msda_forward: attention_weights must be [N, Lq, M, L, P] matching sampling_locations");
    TORCH_CHECK(spatial_shapes.size(0) == d.L && level_start_index.size(0) == d.L,
                "msda_forward: spatial_shapes / level_start_index must have L = ", d.L, " rows");
    TORCH_CHECK(d.L >= 1 && d.L <= am::kMaxLevels, "msda_forward: L must be in 1..", am::kMaxLevels);

    c10::cuda::CUDAGuard guard(value.device());
    value = value.contiguous();
    spatial_shapes = spatial_shapes.contiguous();
    level_start_index = level_start_index.contiguous();
    sampling_locations = sampling_locations.contiguous();
    attention_weights = attention_weights.contiguous();
    std::vector<int64_t> const out_shape{d.N, d.Lq, int64_t{d.M} * d.D};
    torch::Tensor result;
    if (out.has_value()) {
        result = *out;
        TORCH_CHECK(result.device() == value.device() && result.scalar_type() == ft && result.is_contiguous() &&
                        result.sizes() == torch::IntArrayRef(out_shape),
                    "msda_forward: out must be a contiguous [N, Lq, M*D] tensor of value's dtype and device");
    } else {
        result = torch::empty(out_shape, value.options());
    }
    TORCH_CHECK(vec == 0 || am::choose_vec(static_cast<int32_t>(vec), ft == torch::kFloat16, d.D, value.data_ptr(),
                                           result.data_ptr()) != 0,
                "msda_forward: vec=", vec, " impossible for D=", d.D, " or these pointers' alignment");

    cudaStream_t const stream = c10::cuda::getCurrentCUDAStream(value.device().index()).stream();
    bool const s64 = spatial_shapes.scalar_type() == torch::kInt64;
    bool const i64 = level_start_index.scalar_type() == torch::kInt64;
    cudaError_t err;
    int32_t const v = static_cast<int32_t>(vec);
    if (s64) {
        err = i64 ? run<int64_t, int64_t>(value, spatial_shapes, level_start_index, sampling_locations,
                                          attention_weights, result, d, stream, v)
                  : run<int64_t, int32_t>(value, spatial_shapes, level_start_index, sampling_locations,
                                          attention_weights, result, d, stream, v);
    } else {
        err = i64 ? run<int32_t, int64_t>(value, spatial_shapes, level_start_index, sampling_locations,
                                          attention_weights, result, d, stream, v)
                  : run<int32_t, int32_t>(value, spatial_shapes, level_start_index, sampling_locations,
                                          attention_weights, result, d, stream, v);
    }
    TORCH_CHECK(err == cudaSuccess, "msda_forward: kernel launch failed: ", cudaGetErrorString(err));
    return result;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "ActionVOS multi-scale deformable attention sampling (CUDA kernels of the TensorRT plugin)";
    m.def("msda_forward", &msda_forward, "MSDA sampling core -> [N, Lq, M*D]", py::arg("value"),
          py::arg("spatial_shapes"), py::arg("level_start_index"), py::arg("sampling_locations"),
          py::arg("attention_weights"), py::arg("out") = py::none(), py::arg("vec") = 0);
}
