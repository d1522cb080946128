// TensorRT IPluginV3 plugin "ActionVOS_MSDeformAttn" (version "1", namespace ""): multi-scale deformable
// attention sampling core. Contract: README.md in this directory.
//
// Inputs  0 value [N, S, M, D] (FP32|FP16), 1 spatial_shapes [L, 2] (INT32|INT64),
//         2 level_start_index [L] (INT32|INT64), 3 sampling_locations [N, Lq, M, L, P, 2] (as value),
//         4 attention_weights [N, Lq, M, L, P] (as value)
// Output  0 [N, Lq, M * D] (as value). Linear (row-major, contiguous) format only. No attributes.
//
// Built against TensorRT 10.x headers (checked: 10.14.1); only IPluginV3 interfaces are used, which TensorRT
// 11 keeps (it removes the IPluginV2 family). The library needs no libnvinfer at link or load time.
#pragma once

#include <NvInferRuntime.h>

#include <cstdint>
#include <string>

#if !defined(NV_TENSORRT_MAJOR) || NV_TENSORRT_MAJOR < 10
#error "ActionVOS MSDA plugin needs TensorRT >= 10 headers (IPluginV3)."
#endif

namespace actionvos {
namespace msda {

constexpr char const* kPluginName = "ActionVOS_MSDeformAttn";
constexpr char const* kPluginVersion = "1";
constexpr char const* kPluginNamespace = "";

class MsdaPlugin : public nvinfer1::IPluginV3,
                   public nvinfer1::IPluginV3OneCore,
                   public nvinfer1::IPluginV3OneBuild,
                   public nvinfer1::IPluginV3OneRuntime {
public:
    MsdaPlugin() = default;
    MsdaPlugin(MsdaPlugin const&) = default;
    ~MsdaPlugin() override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override { return kPluginName; }
    char const* getPluginVersion() const noexcept override { return kPluginVersion; }
    char const* getPluginNamespace() const noexcept override { return kPluginNamespace; }

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override { return 1; }
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
                               nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
                            nvinfer1::DimsExprs const* shapeInputs, int32_t nbShapeInputs,
                            nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                            nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                   int32_t nbOutputs) noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                            nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                            nvinfer1::DynamicPluginTensorDesc const* outputs,
                            int32_t nbOutputs) const noexcept override {
        return 0;
    }

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
                          nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
                    void const* const* inputs, void* const* outputs, void* workspace,
                    cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    nvinfer1::PluginFieldCollection mSerialized{0, nullptr};
};

class MsdaPluginCreator : public nvinfer1::IPluginCreatorV3One {
public:
    MsdaPluginCreator() = default;
    ~MsdaPluginCreator() override = default;

    char const* getPluginName() const noexcept override { return kPluginName; }
    char const* getPluginVersion() const noexcept override { return kPluginVersion; }
    char const* getPluginNamespace() const noexcept override { return kPluginNamespace; }
    //! Empty: the op has no attributes (unknown fields passed by a parser are ignored).
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override { return &mFields; }
    nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
                                      nvinfer1::TensorRTPhase phase) noexcept override;

private:
    nvinfer1::PluginFieldCollection mFields{0, nullptr};
};

//! Checks input/output descriptors against the contract. `dims` may hold -1 (unknown at build time) where
//! `allow_unknown`; relations are then checked only between known extents. Returns an empty string when
//! valid, else a message naming the offending tensor and dimension.
std::string validate(nvinfer1::Dims const* in, nvinfer1::DataType const* in_types, int32_t nbInputs,
                     nvinfer1::Dims const* out, nvinfer1::DataType const* out_types, int32_t nbOutputs,
                     bool allow_unknown);

}  // namespace msda
}  // namespace actionvos

// Plugin-library entry points used by IPluginRegistry::loadLibrary (trtexec --dynamicPlugins, Python
// registry.load_library, engines with setPluginsToSerialize), plus the build's TensorRT version.
#define ACTIONVOS_MSDA_EXPORT extern "C" __attribute__((visibility("default")))
ACTIONVOS_MSDA_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder);
ACTIONVOS_MSDA_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);
//! NV_TENSORRT_MAJOR * 10000 + NV_TENSORRT_MINOR * 100 + NV_TENSORRT_PATCH of the headers the library was
//! built with (e.g. 101401 for 10.14.1). A plugin built for TensorRT 10 must not be loaded by TensorRT 11.
ACTIONVOS_MSDA_EXPORT int actionvos_msda_trt_version();
