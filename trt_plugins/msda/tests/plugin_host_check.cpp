// Drives libactionvos_msda_plugin.so through TensorRT's plugin interfaces without TensorRT or a GPU.
//
// Loads the library with dlopen exactly as IPluginRegistry::loadLibrary would (getCreators, setLoggerFinder),
// then plays the builder: creator metadata, createPlugin, capability interfaces, output types, output shapes
// (through a stand-in IExprBuilder), supportsFormatCombination, configurePlugin / onShapeChange validation
// (valid and invalid shapes, checking the logged message), clone / attachToContext / serialization fields, and
// enqueue paths that need no device (empty batch; invalid pointers rejected before any CUDA call).
//
// Usage: plugin_host_check LIBRARY EXPECTED_TRT_VERSION   (prints one line per check; exit 0 = all passed)
#include <NvInferRuntime.h>

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace {

int gFailures = 0;

void check(bool ok, std::string const& what) {
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
    if (!ok) ++gFailures;
}

struct CaptureLogger : ILogger {
    std::string last;
    void log(Severity, AsciiChar const* msg) noexcept override { last = msg; }
};

struct Finder : ILoggerFinder {
    CaptureLogger logger;
    ILogger* findLogger() override { return &logger; }
};

// Stand-ins for TensorRT's symbolic dimension machinery: every expression is a known constant.
struct ConstImpl : apiv::VDimensionExpr {
    int64_t v;
    explicit ConstImpl(int64_t value) : v(value) {}
    bool isConstant() const override { return true; }
    int64_t getConstantValue() const override { return v; }
    bool isSizeTensor() const override { return false; }
};

struct ConstExpr : IDimensionExpr {
    ConstImpl impl;
    explicit ConstExpr(int64_t value) : impl(value) { mImpl = &impl; }
};

struct BuilderImpl : apiv::VExprBuilder {
    std::vector<std::unique_ptr<ConstExpr>> pool;
    IDimensionExpr const* constant(int64_t value) override {
        pool.push_back(std::make_unique<ConstExpr>(value));
        return pool.back().get();
    }
    IDimensionExpr const* operation(DimensionOperation op, IDimensionExpr const& a, IDimensionExpr const& b) override {
        int64_t const x = a.getConstantValue(), y = b.getConstantValue();
        switch (op) {
        case DimensionOperation::kSUM: return constant(x + y);
        case DimensionOperation::kPROD: return constant(x * y);
        default: return nullptr;
        }
    }
    IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override {
        return nullptr;
    }
};

struct ExprBuilder : IExprBuilder {
    BuilderImpl impl;
    ExprBuilder() { mImpl = &impl; }
};

Dims make_dims(std::vector<int64_t> const& v) {
    Dims d{};
    d.nbDims = static_cast<int32_t>(v.size());
    for (size_t i = 0; i < v.size(); ++i) d.d[i] = v[i];
    return d;
}

// Contract sizes used below: N=2, S=20 (4x4 + 2x2), M=8, D=32, L=2, P=4, Lq=5.
struct Io {
    DynamicPluginTensorDesc in[5]{};
    DynamicPluginTensorDesc out[1]{};
    Io(DataType ft, DataType st, DataType it, std::vector<std::vector<int64_t>> shapes) {
        DataType const types[6] = {ft, st, it, ft, ft, ft};
        for (int i = 0; i < 6; ++i) {
            DynamicPluginTensorDesc& t = i < 5 ? in[i] : out[0];
            t.desc.dims = make_dims(shapes[i]);
            t.desc.type = types[i];
            t.desc.format = TensorFormat::kLINEAR;
            t.min = t.opt = t.max = t.desc.dims;
        }
    }
    static std::vector<std::vector<int64_t>> good() {
        return {{2, 20, 8, 32}, {2, 2}, {2}, {2, 5, 8, 2, 4, 2}, {2, 5, 8, 2, 4}, {2, 5, 256}};
    }
};

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s LIBRARY EXPECTED_TRT_VERSION\n", argv[0]);
        return 2;
    }
    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        std::printf("FAIL dlopen: %s\n", dlerror());
        return 1;
    }
    using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);
    using SetLoggerFinder = void (*)(ILoggerFinder*);
    using Version = int (*)();
    auto get_creators = reinterpret_cast<GetCreators>(dlsym(lib, "getCreators"));
    auto set_finder = reinterpret_cast<SetLoggerFinder>(dlsym(lib, "setLoggerFinder"));
    auto version = reinterpret_cast<Version>(dlsym(lib, "actionvos_msda_trt_version"));
    check(get_creators && set_finder && version, "entry points getCreators / setLoggerFinder / version exported");
    if (!get_creators || !set_finder || !version) return 1;
    check(version() == std::atoi(argv[2]), "actionvos_msda_trt_version() == " + std::string(argv[2]) + " (got " +
                                               std::to_string(version()) + ")");
    static Finder finder;
    set_finder(&finder);

    int32_t n = -1;
    IPluginCreatorInterface* const* creators = get_creators(n);
    check(n == 1 && creators && creators[0], "getCreators returns one creator");
    if (n != 1 || !creators || !creators[0]) return 1;
    InterfaceInfo const ci = creators[0]->getInterfaceInfo();
    check(std::strcmp(ci.kind, "PLUGIN CREATOR_V3ONE") == 0 && ci.major == 1, "creator is IPluginCreatorV3One");
    auto* creator = static_cast<IPluginCreatorV3One*>(creators[0]);
    check(std::strcmp(creator->getPluginName(), "ActionVOS_MSDeformAttn") == 0, "creator name");
    check(std::strcmp(creator->getPluginVersion(), "1") == 0, "creator version");
    check(std::strcmp(creator->getPluginNamespace(), "") == 0, "creator namespace");
    check(creator->getFieldNames() && creator->getFieldNames()->nbFields == 0, "no attributes");

    int32_t const stray = 1;
    PluginField const field("plugin_version", &stray, PluginFieldType::kINT32, 1);
    PluginFieldCollection const fc{1, &field};
    IPluginV3* plugin = creator->createPlugin("msda", &fc, TensorRTPhase::kBUILD);
    check(plugin != nullptr, "createPlugin (build phase, unknown field ignored)");
    if (!plugin) return 1;
    auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* rt = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    check(core && build && rt, "core/build/runtime capabilities");
    check(std::strcmp(core->getInterfaceInfo().kind, "PLUGIN_V3ONE_CORE") == 0 &&
              std::strcmp(build->getInterfaceInfo().kind, "PLUGIN_V3ONE_BUILD") == 0 &&
              std::strcmp(rt->getInterfaceInfo().kind, "PLUGIN_V3ONE_RUNTIME") == 0,
          "capability interface kinds");
    check(std::strcmp(core->getPluginName(), "ActionVOS_MSDeformAttn") == 0 &&
              std::strcmp(core->getPluginVersion(), "1") == 0,
          "plugin name/version");
    check(build->getNbOutputs() == 1, "one output");

    // Output types follow value's type.
    for (DataType ft : {DataType::kFLOAT, DataType::kHALF}) {
        DataType const ins[5] = {ft, DataType::kINT64, DataType::kINT32, ft, ft};
        DataType outt = DataType::kINT8;
        check(build->getOutputDataTypes(&outt, 1, ins, 5) == 0 && outt == ft, "getOutputDataTypes follows value");
    }
    {
        DataType const ins[5] = {DataType::kINT32, DataType::kINT64, DataType::kINT64, DataType::kFLOAT,
                                 DataType::kFLOAT};
        DataType outt{};
        check(build->getOutputDataTypes(&outt, 1, ins, 5) != 0, "getOutputDataTypes rejects an INT32 value");
    }

    // Output shape [N, Lq, M*D].
    {
        ExprBuilder eb;
        std::vector<std::vector<int64_t>> const shapes = Io::good();
        DimsExprs in[5];
        for (int i = 0; i < 5; ++i) {
            in[i].nbDims = static_cast<int32_t>(shapes[i].size());
            for (int a = 0; a < in[i].nbDims; ++a) in[i].d[a] = eb.constant(shapes[i][a]);
        }
        DimsExprs out[1];
        int32_t const rc = build->getOutputShapes(in, 5, nullptr, 0, out, 1, eb);
        check(rc == 0 && out[0].nbDims == 3 && out[0].d[0]->getConstantValue() == 2 &&
                  out[0].d[1]->getConstantValue() == 5 && out[0].d[2]->getConstantValue() == 256,
              "getOutputShapes = [N, Lq, M*D] = [2, 5, 256]");
        in[3].nbDims = 5;
        check(build->getOutputShapes(in, 5, nullptr, 0, out, 1, eb) != 0, "getOutputShapes rejects rank-5 locations");
    }

    // Format combinations.
    {
        Io io(DataType::kHALF, DataType::kINT64, DataType::kINT32, Io::good());
        DynamicPluginTensorDesc all[6];
        for (int i = 0; i < 5; ++i) all[i] = io.in[i];
        all[5] = io.out[0];
        auto sup = [&](int pos, DataType t, TensorFormat f = TensorFormat::kLINEAR) {
            DynamicPluginTensorDesc saved = all[pos];
            all[pos].desc.type = t;
            all[pos].desc.format = f;
            bool const r = build->supportsFormatCombination(pos, all, 5, 1);
            all[pos] = saved;
            return r;
        };
        check(sup(0, DataType::kFLOAT) && sup(0, DataType::kHALF) && !sup(0, DataType::kINT32) &&
                  !sup(0, DataType::kBF16),
              "value: FP32/FP16 only");
        check(!sup(0, DataType::kHALF, TensorFormat::kCHW32) && !sup(3, DataType::kHALF, TensorFormat::kHWC8),
              "linear format only");
        check(sup(1, DataType::kINT32) && sup(1, DataType::kINT64) && sup(2, DataType::kINT32) &&
                  sup(2, DataType::kINT64) && !sup(1, DataType::kFLOAT) && !sup(2, DataType::kHALF),
              "index inputs: INT32/INT64");
        check(sup(3, DataType::kHALF) && !sup(3, DataType::kFLOAT) && sup(4, DataType::kHALF) &&
                  !sup(4, DataType::kFLOAT) && sup(5, DataType::kHALF) && !sup(5, DataType::kFLOAT),
              "locations/weights/output follow value's type");
    }

    // configurePlugin (build time, -1 = dynamic) and onShapeChange (concrete).
    auto configure = [&](std::vector<std::vector<int64_t>> const& shapes, DataType ft = DataType::kFLOAT) {
        Io io(ft, DataType::kINT64, DataType::kINT64, shapes);
        finder.logger.last.clear();
        return build->configurePlugin(io.in, 5, io.out, 1);
    };
    auto shape_change = [&](std::vector<std::vector<int64_t>> const& shapes) {
        Io io(DataType::kHALF, DataType::kINT32, DataType::kINT64, shapes);
        PluginTensorDesc in[5], out[1];
        for (int i = 0; i < 5; ++i) in[i] = io.in[i].desc;
        out[0] = io.out[0].desc;
        finder.logger.last.clear();
        return rt->onShapeChange(in, 5, out, 1);
    };
    auto logged = [&](char const* needle) { return finder.logger.last.find(needle) != std::string::npos; };
    auto expect_reject = [&](std::vector<std::vector<int64_t>> const& shapes, char const* needle,
                             std::string const& what) {
        bool const rejected = configure(shapes) != 0;
        check(rejected && logged(needle), what + " [logged: " + finder.logger.last + "]");
    };

    check(configure(Io::good()) == 0, "configurePlugin accepts the contract shapes");
    check(configure({{-1, -1, 8, 32}, {2, 2}, {2}, {-1, -1, 8, 2, 4, 2}, {-1, -1, 8, 2, 4}, {-1, -1, 256}}) == 0,
          "configurePlugin accepts dynamic N / S / Lq");
    expect_reject({{2, 20, 8, 32}, {2, 2}, {2}, {2, 5, 4, 2, 4, 2}, {2, 5, 8, 2, 4}, {2, 5, 256}}, "M mismatch",
                  "configurePlugin: M mismatch");
    expect_reject({{2, 20, 8, 32}, {2, 2}, {3}, {2, 5, 8, 2, 4, 2}, {2, 5, 8, 2, 4}, {2, 5, 256}}, "L mismatch",
                  "configurePlugin: L mismatch between spatial_shapes and level_start_index");
    expect_reject({{2, 20, 8, 32}, {2, 2}, {2}, {2, 5, 8, 2, 4, 2}, {2, 5, 8, 2, 3}, {2, 5, 256}}, "P mismatch",
                  "configurePlugin: P mismatch");
    expect_reject({{3, 20, 8, 32}, {2, 2}, {2}, {-1, 5, 8, 2, 4, 2}, {2, 5, 8, 2, 4}, {2, 5, 256}}, "N mismatch",
                  "configurePlugin: N mismatch (with a dynamic N in between)");
    expect_reject({{2, 20, 8, 32}, {2, 2}, {2}, {2, 5, 8, 2, 4, 3}, {2, 5, 8, 2, 4}, {2, 5, 256}}, "last dim must be 2",
                  "configurePlugin: locations last dim 3");
    expect_reject({{2, 20, 8, 32}, {2, 3}, {2}, {2, 5, 8, 2, 4, 2}, {2, 5, 8, 2, 4}, {2, 5, 256}}, "[L, 2]",
                  "configurePlugin: spatial_shapes [L, 3]");
    expect_reject({{2, 20, 8, 32}, {2, 2}, {2}, {2, 5, 8, 2, 4, 2}, {2, 5, 8, 2, 4}, {2, 5, 128}}, "M * D",
                  "configurePlugin: output last dim != M*D");
    expect_reject({{2, 20, 8, 32, 1}, {2, 2}, {2}, {2, 5, 8, 2, 4, 2}, {2, 5, 8, 2, 4}, {2, 5, 256}}, "rank 4",
                  "configurePlugin: rank-5 value");
    expect_reject({{2, 20, 8, 32}, {17, 2}, {17}, {2, 5, 8, 17, 4, 2}, {2, 5, 8, 17, 4}, {2, 5, 256}}, "levels",
                  "configurePlugin: L = 17 > 16 levels");
    check(shape_change(Io::good()) == 0, "onShapeChange accepts concrete shapes (FP16, INT32/INT64 indices)");
    check(shape_change({{-1, 20, 8, 32}, {2, 2}, {2}, {2, 5, 8, 2, 4, 2}, {2, 5, 8, 2, 4}, {2, 5, 256}}) != 0,
          "onShapeChange rejects unknown (-1) extents");
    {
        Io io(DataType::kFLOAT, DataType::kINT64, DataType::kINT64, Io::good());
        io.in[3].desc.type = DataType::kHALF;
        check(build->configurePlugin(io.in, 5, io.out, 1) != 0, "configurePlugin: mixed float types rejected");
    }

    // enqueue paths that never touch a device.
    {
        Io io(DataType::kFLOAT, DataType::kINT64, DataType::kINT64,
              {{0, 20, 8, 32}, {2, 2}, {2}, {0, 5, 8, 2, 4, 2}, {0, 5, 8, 2, 4}, {0, 5, 256}});
        PluginTensorDesc in[5], out[1];
        for (int i = 0; i < 5; ++i) in[i] = io.in[i].desc;
        out[0] = io.out[0].desc;
        void const* inputs[5] = {nullptr, nullptr, nullptr, nullptr, nullptr};
        void* outputs[1] = {nullptr};
        check(rt->enqueue(in, out, inputs, outputs, nullptr, nullptr) == 0, "enqueue with N = 0 is a no-op");
        in[0].dims.d[0] = in[3].dims.d[0] = in[4].dims.d[0] = out[0].dims.d[0] = 2;
        finder.logger.last.clear();
        bool const rejected = rt->enqueue(in, out, inputs, outputs, nullptr, nullptr) != 0;
        check(rejected && logged("enqueue"), "enqueue rejects null buffers [logged: " + finder.logger.last + "]");
    }

    // Lifetime / serialization.
    IPluginV3* copy = plugin->clone();
    check(copy && copy != plugin, "clone");
    IPluginV3* attached = rt->attachToContext(nullptr);
    check(attached && attached != plugin, "attachToContext returns a fresh plugin");
    check(rt->getFieldsToSerialize() && rt->getFieldsToSerialize()->nbFields == 0, "nothing to serialize");
    check(build->getWorkspaceSize(nullptr, 5, nullptr, 1) == 0, "workspace 0");
    IPluginV3* runtime_plugin = creator->createPlugin("msda", rt->getFieldsToSerialize(), TensorRTPhase::kRUNTIME);
    check(runtime_plugin != nullptr, "createPlugin (runtime phase, from serialized fields)");
    delete copy;
    delete attached;
    delete runtime_plugin;
    delete plugin;

    std::printf("%d failure(s)\n", gFailures);
    return gFailures == 0 ? 0 : 1;
}
