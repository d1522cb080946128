// TensorRT IPluginV3 implementation of ActionVOS_MSDeformAttn (see msda_plugin.h and README.md).
#include "msda_plugin.h"

#include "msda_kernel.cuh"

#include <atomic>
#include <cstdio>
#include <limits>
#include <new>
#include <string>

using nvinfer1::DataType;
using nvinfer1::DimsExprs;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::IPluginCapability;
using nvinfer1::IPluginV3;
using nvinfer1::PluginCapabilityType;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginTensorDesc;
using nvinfer1::TensorFormat;

namespace actionvos {
namespace msda {
namespace {

enum Input : int32_t { kValue = 0, kShapes = 1, kStarts = 2, kLocations = 3, kWeights = 4, kNbInputs = 5 };
constexpr int32_t kNbOutputs = 1;

std::atomic<nvinfer1::ILoggerFinder*> gLoggerFinder{nullptr};

//! Reports through TensorRT's logger when the library was loaded by IPluginRegistry::loadLibrary (which
//! passes an ILoggerFinder), else on stderr. Must be called from inside a plugin method (ILoggerFinder rule).
void log_error(std::string const& msg) noexcept {
    try {
        std::string const text = std::string(kPluginName) + ": " + msg;
        nvinfer1::ILoggerFinder* finder = gLoggerFinder.load();
        nvinfer1::ILogger* logger = finder ? finder->findLogger() : nullptr;
        if (logger) {
            logger->log(nvinfer1::ILogger::Severity::kERROR, text.c_str());
        } else {
            std::fprintf(stderr, "[E] %s\n", text.c_str());
        }
    } catch (...) {
    }
}

bool is_float(DataType t) { return t == DataType::kFLOAT || t == DataType::kHALF; }
bool is_index(DataType t) { return t == DataType::kINT32 || t == DataType::kINT64; }

char const* input_name(int32_t i) {
    static char const* const names[] = {"value", "spatial_shapes", "level_start_index", "sampling_locations",
                                        "attention_weights"};
    return i >= 0 && i < kNbInputs ? names[i] : "output";
}

struct Extent {
    int32_t tensor;  //!< input index, or kNbInputs for the output
    int32_t axis;
};

}  // namespace

std::string validate(nvinfer1::Dims const* in, DataType const* in_types, int32_t nbInputs, nvinfer1::Dims const* out,
                     DataType const* out_types, int32_t nbOutputs, bool allow_unknown) {
    if (nbInputs != kNbInputs || nbOutputs != kNbOutputs) {
        return "expects 5 inputs and 1 output, got " + std::to_string(nbInputs) + " and " + std::to_string(nbOutputs);
    }
    auto dims = [&](int32_t t) -> nvinfer1::Dims const& { return t == kNbInputs ? out[0] : in[t]; };
    static int32_t const ranks[kNbInputs + 1] = {4, 2, 1, 6, 5, 3};
    for (int32_t t = 0; t <= kNbInputs; ++t) {
        if (dims(t).nbDims != ranks[t]) {
            return std::string(input_name(t)) + " must have rank " + std::to_string(ranks[t]) + ", got " +
                   std::to_string(dims(t).nbDims);
        }
        for (int32_t a = 0; a < ranks[t]; ++a) {
            int64_t const v = dims(t).d[a];
            if ((v < 0 && !allow_unknown) || v > std::numeric_limits<int32_t>::max()) {
                return std::string(input_name(t)) + " dim " + std::to_string(a) + " = " + std::to_string(v) +
                       " is not a valid extent";
            }
        }
    }
    // Types (output type checked only when given).
    if (!is_float(in_types[kValue])) return "value must be FP32 or FP16";
    for (int32_t t : {kLocations, kWeights}) {
        if (in_types[t] != in_types[kValue]) return std::string(input_name(t)) + " must have value's type";
    }
    if (out_types && out_types[0] != in_types[kValue]) return "output must have value's type";
    for (int32_t t : {kShapes, kStarts}) {
        if (!is_index(in_types[t])) return std::string(input_name(t)) + " must be INT32 or INT64";
    }
    // Extents that must agree: N, M, L, P, Lq, and the constant 2s.
    struct Group {
        char const* what;
        Extent e[4];
        int32_t n;
    };
    Group const groups[] = {
        {"N", {{kValue, 0}, {kLocations, 0}, {kWeights, 0}, {kNbInputs, 0}}, 4},
        {"M", {{kValue, 2}, {kLocations, 2}, {kWeights, 2}}, 3},
        {"L", {{kShapes, 0}, {kStarts, 0}, {kLocations, 3}, {kWeights, 3}}, 4},
        {"P", {{kLocations, 4}, {kWeights, 4}}, 2},
        {"Lq", {{kLocations, 1}, {kWeights, 1}, {kNbInputs, 1}}, 3},
    };
    for (Group const& g : groups) {
        int64_t known = -1;
        Extent first{};
        for (int32_t i = 0; i < g.n; ++i) {
            int64_t const v = dims(g.e[i].tensor).d[g.e[i].axis];
            if (v < 0) continue;
            if (known >= 0 && v != known) {
                return std::string(g.what) + " mismatch: " + input_name(first.tensor) + " dim " +
                       std::to_string(first.axis) + " = " + std::to_string(known) + " but " +
                       input_name(g.e[i].tensor) + " dim " + std::to_string(g.e[i].axis) + " = " + std::to_string(v);
            }
            if (known < 0) {
                known = v;
                first = g.e[i];
            }
        }
    }
    if (in[kLocations].d[5] >= 0 && in[kLocations].d[5] != 2) return "sampling_locations last dim must be 2 (x, y)";
    if (in[kShapes].d[1] >= 0 && in[kShapes].d[1] != 2) return "spatial_shapes must be [L, 2] (H, W)";
    int64_t const L = in[kShapes].d[0];
    if (L == 0 || L > kMaxLevels) {
        return "number of levels L = " + std::to_string(L) + " must be in 1.." + std::to_string(kMaxLevels);
    }
    for (Extent e : {Extent{kValue, 1}, Extent{kValue, 2}, Extent{kValue, 3}, Extent{kLocations, 4}}) {
        if (dims(e.tensor).d[e.axis] == 0) {
            return std::string(input_name(e.tensor)) + " dim " + std::to_string(e.axis) + " must not be 0";
        }
    }
    int64_t const M = in[kValue].d[2], D = in[kValue].d[3], MD = out[0].d[2];
    if (M >= 0 && D >= 0 && MD >= 0 && MD != M * D) {
        return "output last dim " + std::to_string(MD) + " must be M * D = " + std::to_string(M * D);
    }
    return {};
}

// ----------------------------------------------------------------------------------------------- MsdaPlugin

IPluginCapability* MsdaPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept {
    switch (type) {
    case PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    case PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    }
    return nullptr;
}

IPluginV3* MsdaPlugin::clone() noexcept { return new (std::nothrow) MsdaPlugin(*this); }

int32_t MsdaPlugin::getOutputDataTypes(DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes,
                                       int32_t nbInputs) const noexcept {
    if (nbOutputs != kNbOutputs || nbInputs != kNbInputs || !is_float(inputTypes[kValue])) {
        log_error("getOutputDataTypes: expects 5 inputs, 1 output and an FP32/FP16 value");
        return -1;
    }
    outputTypes[0] = inputTypes[kValue];
    return 0;
}

int32_t MsdaPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
                                    int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs,
                                    nvinfer1::IExprBuilder& exprBuilder) noexcept {
    if (nbInputs != kNbInputs || nbOutputs != kNbOutputs || inputs[kValue].nbDims != 4 ||
        inputs[kLocations].nbDims != 6) {
        log_error("getOutputShapes: expects value [N, S, M, D] and sampling_locations [N, Lq, M, L, P, 2]");
        return -1;
    }
    outputs[0].nbDims = 3;
    outputs[0].d[0] = inputs[kValue].d[0];
    outputs[0].d[1] = inputs[kLocations].d[1];
    outputs[0].d[2] =
        exprBuilder.operation(nvinfer1::DimensionOperation::kPROD, *inputs[kValue].d[2], *inputs[kValue].d[3]);
    return outputs[0].d[2] ? 0 : -1;
}

bool MsdaPlugin::supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                           int32_t nbOutputs) noexcept {
    if (nbInputs != kNbInputs || nbOutputs != kNbOutputs || pos < 0 || pos >= kNbInputs + kNbOutputs) return false;
    PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != TensorFormat::kLINEAR) return false;
    switch (pos) {
    case kValue: return is_float(desc.type);
    case kShapes:
    case kStarts: return is_index(desc.type);
    default: return desc.type == inOut[kValue].desc.type;  // locations, weights, output
    }
}

int32_t MsdaPlugin::configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs,
                                    DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept {
    if (nbInputs != kNbInputs || nbOutputs != kNbOutputs) {
        log_error("configurePlugin: expects 5 inputs and 1 output");
        return -1;
    }
    nvinfer1::Dims in_dims[kNbInputs];
    DataType in_types[kNbInputs];
    for (int32_t i = 0; i < kNbInputs; ++i) {
        in_dims[i] = in[i].desc.dims;
        in_types[i] = in[i].desc.type;
    }
    DataType const out_type = out[0].desc.type;
    std::string err = validate(in_dims, in_types, nbInputs, &out[0].desc.dims, &out_type, nbOutputs, true);
    if (err.empty() && in[kShapes].max.nbDims == 2 && in[kShapes].max.d[0] > kMaxLevels) {
        err = "the optimisation profile allows L up to " + std::to_string(in[kShapes].max.d[0]) + " levels; max is " +
              std::to_string(kMaxLevels);
    }
    if (!err.empty()) {
        log_error("configurePlugin: " + err);
        return -1;
    }
    return 0;
}

int32_t MsdaPlugin::onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out,
                                  int32_t nbOutputs) noexcept {
    if (nbInputs != kNbInputs || nbOutputs != kNbOutputs) {
        log_error("onShapeChange: expects 5 inputs and 1 output");
        return -1;
    }
    nvinfer1::Dims in_dims[kNbInputs];
    DataType in_types[kNbInputs];
    for (int32_t i = 0; i < kNbInputs; ++i) {
        in_dims[i] = in[i].dims;
        in_types[i] = in[i].type;
    }
    std::string const err = validate(in_dims, in_types, nbInputs, &out[0].dims, &out[0].type, nbOutputs, false);
    if (!err.empty()) {
        log_error("onShapeChange: " + err);
        return -1;
    }
    return 0;
}

namespace {

template <typename shape_t, typename start_t>
cudaError_t run(DataType type, void const* const* in, void* out, Dims const& d, cudaStream_t stream) {
    auto const* shapes = static_cast<shape_t const*>(in[kShapes]);
    auto const* starts = static_cast<start_t const*>(in[kStarts]);
    if (type == DataType::kFLOAT) {
        return msda_forward_fp32(static_cast<float const*>(in[kValue]), shapes, starts,
                                 static_cast<float const*>(in[kLocations]), static_cast<float const*>(in[kWeights]),
                                 static_cast<float*>(out), d, stream);
    }
    return msda_forward_fp16(static_cast<__half const*>(in[kValue]), shapes, starts,
                             static_cast<__half const*>(in[kLocations]), static_cast<__half const*>(in[kWeights]),
                             static_cast<__half*>(out), d, stream);
}

}  // namespace

int32_t MsdaPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* /*outputDesc*/,
                            void const* const* inputs, void* const* outputs, void* /*workspace*/,
                            cudaStream_t stream) noexcept {
    // Shapes were validated by onShapeChange; the descriptors are authoritative for this call.
    nvinfer1::Dims const& v = inputDesc[kValue].dims;
    nvinfer1::Dims const& loc = inputDesc[kLocations].dims;
    Dims const d{static_cast<int32_t>(v.d[0]),   static_cast<int32_t>(v.d[1]),
                 static_cast<int32_t>(v.d[2]),   static_cast<int32_t>(v.d[3]),
                 static_cast<int32_t>(loc.d[3]), static_cast<int32_t>(loc.d[4]),
                 static_cast<int32_t>(loc.d[1])};
    DataType const type = inputDesc[kValue].type;
    bool const shapes64 = inputDesc[kShapes].type == DataType::kINT64;
    bool const starts64 = inputDesc[kStarts].type == DataType::kINT64;
    cudaError_t err;
    if (shapes64) {
        err = starts64 ? run<int64_t, int64_t>(type, inputs, outputs[0], d, stream)
                       : run<int64_t, int32_t>(type, inputs, outputs[0], d, stream);
    } else {
        err = starts64 ? run<int32_t, int64_t>(type, inputs, outputs[0], d, stream)
                       : run<int32_t, int32_t>(type, inputs, outputs[0], d, stream);
    }
    if (err != cudaSuccess) {
        log_error(std::string("enqueue: kernel launch failed: ") + cudaGetErrorName(err) + ": " +
                  cudaGetErrorString(err));
        return -1;
    }
    return 0;
}

IPluginV3* MsdaPlugin::attachToContext(nvinfer1::IPluginResourceContext* /*context*/) noexcept { return clone(); }

PluginFieldCollection const* MsdaPlugin::getFieldsToSerialize() noexcept { return &mSerialized; }

// ---------------------------------------------------------------------------------------- MsdaPluginCreator

IPluginV3* MsdaPluginCreator::createPlugin(char const* /*name*/, PluginFieldCollection const* /*fc*/,
                                           nvinfer1::TensorRTPhase /*phase*/) noexcept {
    return new (std::nothrow) MsdaPlugin();
}

}  // namespace msda
}  // namespace actionvos

// ------------------------------------------------------------------------------------ library entry points

void setLoggerFinder(nvinfer1::ILoggerFinder* finder) { actionvos::msda::gLoggerFinder.store(finder); }

nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators) {
    static actionvos::msda::MsdaPluginCreator creator;
    static nvinfer1::IPluginCreatorInterface* const creators[] = {&creator};
    nbCreators = 1;
    return creators;
}

int actionvos_msda_trt_version() { return NV_TENSORRT_MAJOR * 10000 + NV_TENSORRT_MINOR * 100 + NV_TENSORRT_PATCH; }

#if defined(ACTIONVOS_MSDA_STATIC_REGISTER)
// Opt-in (CMake -DACTIONVOS_MSDA_STATIC_REGISTER=ON, links libnvinfer): registers the creator when the library
// is dlopen'ed, for trtexec --staticPlugins / ctypes-only loading. Do not combine with loadLibrary of the same
// file: TensorRT refuses to load a library whose creators are already registered.
using actionvos::msda::MsdaPluginCreator;
REGISTER_TENSORRT_PLUGIN(MsdaPluginCreator);
#endif
