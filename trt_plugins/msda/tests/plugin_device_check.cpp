// Runs libactionvos_msda_plugin.so on a GPU through TensorRT's plugin interfaces, without TensorRT.
//
// The library needs no libnvinfer (it is linked with --no-undefined and has no libnvinfer NEEDED entry; TensorRT's
// interfaces are header-only vtables), so this driver plays TensorRT's runtime: dlopen → getCreators →
// createPlugin(kRUNTIME) → attachToContext → for each case: onShapeChange (the shape changes between cases) →
// enqueue on device buffers, once plainly and once captured into a CUDA graph (cudaStreamBeginCapture /
// cudaGraphInstantiate / cudaGraphLaunch, launched twice). Outputs are pre-filled with 0xFF bytes (NaN in FP32 and
// FP16) so an element the kernel skips stays NaN. What it cannot do without libnvinfer: build or run a TensorRT
// engine (the ONNX parser's mapping of the node to the creator, TensorRT's own shape/format negotiation and its
// graph capture of a whole engine) — that needs TensorRT (tests/export/test_tensorrt_engine.py).
//
// Usage: plugin_device_check LIBRARY DIR
//   DIR/cases.txt: one case per line: NAME FTYPE STYPE ITYPE N S M D L P Lq
//     FTYPE f32|f16 (value, locations, weights, output), STYPE / ITYPE i32|i64 (spatial_shapes, level_start_index)
//   DIR/NAME.{value,shapes,starts,loc,aw}.bin: the inputs, raw little-endian, contract shapes
//   writes DIR/NAME.plain.bin and DIR/NAME.graph.bin (the output [N, Lq, M*D])
// Exit: 0 all enqueues succeeded, 1 a failure (printed), 2 usage, 77 no CUDA device.
// Build: nvcc -std=c++17 -isystem <TensorRT include> plugin_device_check.cpp -o plugin_device_check -ldl
#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace {

struct PrintLogger : ILogger {
    void log(Severity s, AsciiChar const* msg) noexcept override {
        std::printf("plugin log [%d]: %s\n", static_cast<int>(s), msg);
    }
};

struct Finder : ILoggerFinder {
    PrintLogger logger;
    ILogger* findLogger() override { return &logger; }
};

struct Case {
    std::string name, ftype, stype, itype;
    int64_t N, S, M, D, L, P, Lq;
};

bool read_file(std::string const& path, std::vector<char>& out, size_t expect) {
    std::ifstream f(path, std::ios::binary);
    if (!f) return false;
    out.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    return out.size() == expect;
}

bool write_file(std::string const& path, std::vector<char> const& data) {
    std::ofstream f(path, std::ios::binary);
    f.write(data.data(), static_cast<std::streamsize>(data.size()));
    return static_cast<bool>(f);
}

Dims dims(std::vector<int64_t> const& v) {
    Dims d{};
    d.nbDims = static_cast<int32_t>(v.size());
    for (size_t i = 0; i < v.size(); ++i) d.d[i] = v[i];
    return d;
}

#define CK(x)                                                                                        \
    do {                                                                                             \
        cudaError_t const e_ = (x);                                                                  \
        if (e_ != cudaSuccess) {                                                                     \
            std::printf("FAIL %s: %s (%s)\n", #x, cudaGetErrorName(e_), cudaGetErrorString(e_));     \
            return false;                                                                            \
        }                                                                                            \
    } while (0)

bool run_case(IPluginV3OneRuntime* rt, Case const& c, std::string const& dir, cudaStream_t stream) {
    size_t const fsz = c.ftype == "f16" ? 2 : 4;
    size_t const ssz = c.stype == "i64" ? 8 : 4;
    size_t const isz = c.itype == "i64" ? 8 : 4;
    DataType const ft = c.ftype == "f16" ? DataType::kHALF : DataType::kFLOAT;
    std::vector<std::vector<int64_t>> const shapes = {
        {c.N, c.S, c.M, c.D}, {c.L, 2}, {c.L}, {c.N, c.Lq, c.M, c.L, c.P, 2}, {c.N, c.Lq, c.M, c.L, c.P},
        {c.N, c.Lq, c.M * c.D}};
    DataType const types[6] = {ft, c.stype == "i64" ? DataType::kINT64 : DataType::kINT32,
                               c.itype == "i64" ? DataType::kINT64 : DataType::kINT32, ft, ft, ft};
    size_t const elt[6] = {fsz, ssz, isz, fsz, fsz, fsz};
    char const* files[5] = {"value", "shapes", "starts", "loc", "aw"};
    PluginTensorDesc desc[6];
    size_t bytes[6];
    for (int i = 0; i < 6; ++i) {
        desc[i] = PluginTensorDesc{};
        desc[i].dims = dims(shapes[i]);
        desc[i].type = types[i];
        desc[i].format = TensorFormat::kLINEAR;
        desc[i].scale = 1.f;
        size_t n = 1;
        for (int64_t e : shapes[i]) n *= static_cast<size_t>(e);
        bytes[i] = n * elt[i];
    }
    if (rt->onShapeChange(desc, 5, desc + 5, 1) != 0) {
        std::printf("FAIL %s: onShapeChange rejected the shapes\n", c.name.c_str());
        return false;
    }
    void* dev[6] = {};
    std::vector<char> host;
    for (int i = 0; i < 5; ++i) {
        std::string const path = dir + "/" + c.name + "." + files[i] + ".bin";
        if (!read_file(path, host, bytes[i])) {
            std::printf("FAIL %s: %s missing or not %zu bytes\n", c.name.c_str(), path.c_str(), bytes[i]);
            return false;
        }
        CK(cudaMalloc(&dev[i], bytes[i] ? bytes[i] : 1));
        CK(cudaMemcpy(dev[i], host.data(), bytes[i], cudaMemcpyHostToDevice));
    }
    CK(cudaMalloc(&dev[5], bytes[5] ? bytes[5] : 1));
    void const* inputs[5] = {dev[0], dev[1], dev[2], dev[3], dev[4]};
    void* outputs[1] = {dev[5]};
    std::vector<char> out(bytes[5]);
    bool ok = true;

    // 1. plain enqueue
    CK(cudaMemsetAsync(dev[5], 0xFF, bytes[5], stream));
    if (rt->enqueue(desc, desc + 5, inputs, outputs, nullptr, stream) != 0) {
        std::printf("FAIL %s: enqueue returned an error\n", c.name.c_str());
        ok = false;
    }
    CK(cudaStreamSynchronize(stream));
    CK(cudaMemcpy(out.data(), dev[5], bytes[5], cudaMemcpyDeviceToHost));
    ok = write_file(dir + "/" + c.name + ".plain.bin", out) && ok;

    // 2. the same enqueue captured into a CUDA graph, launched twice (poisoned in between)
    CK(cudaMemsetAsync(dev[5], 0xFF, bytes[5], stream));
    CK(cudaStreamSynchronize(stream));
    cudaGraph_t graph = nullptr;
    cudaGraphExec_t exec = nullptr;
    CK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    int32_t const rc = rt->enqueue(desc, desc + 5, inputs, outputs, nullptr, stream);
    CK(cudaStreamEndCapture(stream, &graph));
    if (rc != 0) {
        std::printf("FAIL %s: enqueue during capture returned an error\n", c.name.c_str());
        ok = false;
    }
    CK(cudaGraphInstantiate(&exec, graph, 0));
    CK(cudaGraphLaunch(exec, stream));
    CK(cudaMemsetAsync(dev[5], 0xFF, bytes[5], stream));
    CK(cudaGraphLaunch(exec, stream));
    CK(cudaStreamSynchronize(stream));
    CK(cudaMemcpy(out.data(), dev[5], bytes[5], cudaMemcpyDeviceToHost));
    ok = write_file(dir + "/" + c.name + ".graph.bin", out) && ok;
    CK(cudaGraphExecDestroy(exec));
    CK(cudaGraphDestroy(graph));
    for (void* p : dev) CK(cudaFree(p));
    std::printf("%s %s (N=%lld S=%lld Lq=%lld %s %s/%s)\n", ok ? "ok  " : "FAIL", c.name.c_str(),
                static_cast<long long>(c.N), static_cast<long long>(c.S), static_cast<long long>(c.Lq),
                c.ftype.c_str(), c.stype.c_str(), c.itype.c_str());
    return ok;
}

#undef CK

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s LIBRARY DIR\n", argv[0]);
        return 2;
    }
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        std::printf("no CUDA device: %s\n", cudaGetErrorString(cudaGetLastError()));
        return 77;
    }
    void* lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        std::printf("FAIL dlopen: %s\n", dlerror());
        return 1;
    }
    using GetCreators = IPluginCreatorInterface* const* (*)(int32_t&);
    using SetLoggerFinder = void (*)(ILoggerFinder*);
    auto get_creators = reinterpret_cast<GetCreators>(dlsym(lib, "getCreators"));
    auto set_finder = reinterpret_cast<SetLoggerFinder>(dlsym(lib, "setLoggerFinder"));
    if (!get_creators || !set_finder) {
        std::printf("FAIL entry points getCreators / setLoggerFinder not exported\n");
        return 1;
    }
    static Finder finder;
    set_finder(&finder);
    int32_t n = 0;
    IPluginCreatorInterface* const* creators = get_creators(n);
    if (n < 1 || !creators || !creators[0]) {
        std::printf("FAIL getCreators returned no creator\n");
        return 1;
    }
    auto* creator = static_cast<IPluginCreatorV3One*>(creators[0]);
    PluginFieldCollection const empty{0, nullptr};
    IPluginV3* plugin = creator->createPlugin("msda", &empty, TensorRTPhase::kRUNTIME);
    if (!plugin) {
        std::printf("FAIL createPlugin\n");
        return 1;
    }
    auto* rt0 = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    IPluginV3* ctx_plugin = rt0 ? rt0->attachToContext(nullptr) : nullptr;  // what an execution context runs
    auto* rt = ctx_plugin ? static_cast<IPluginV3OneRuntime*>(
                                ctx_plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME))
                          : nullptr;
    if (!rt) {
        std::printf("FAIL runtime capability / attachToContext\n");
        return 1;
    }
    std::string const dir = argv[2];
    std::ifstream list(dir + "/cases.txt");
    if (!list) {
        std::printf("FAIL cannot read %s/cases.txt\n", dir.c_str());
        return 1;
    }
    cudaStream_t stream = nullptr;
    if (cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking) != cudaSuccess) {
        std::printf("FAIL cudaStreamCreate\n");
        return 1;
    }
    int failures = 0, count = 0;
    std::string line;
    while (std::getline(list, line)) {
        if (line.empty() || line[0] == '#') continue;
        std::istringstream is(line);
        Case c;
        if (!(is >> c.name >> c.ftype >> c.stype >> c.itype >> c.N >> c.S >> c.M >> c.D >> c.L >> c.P >> c.Lq)) {
            std::printf("FAIL bad case line: %s\n", line.c_str());
            ++failures;
            continue;
        }
        ++count;
        if (!run_case(rt, c, dir, stream)) ++failures;
    }
    cudaStreamDestroy(stream);
    delete ctx_plugin;
    delete plugin;
    std::printf("%d case(s), %d failure(s)\n", count, failures);
    return failures == 0 && count > 0 ? 0 : 1;
}
