// Host-only harness for the MSDA kernel maths (no GPU needed).
//
// Runs the kernel's per-thread code (compute_item / load_level_meta / bilinear_taps from msda_kernel.cuh)
// on the CPU over every work item, exactly as the grid-stride loop of msda_kernel would, so the kernel's
// index arithmetic, level handling and int32/int64 index paths are exercised against the PyTorch oracle
// (tests/test_msda_host_math.py writes the inputs and compares).
//
// Usage: host_harness DIR
//   DIR/meta.txt: "<fp32|fp16> <shapes: i32|i64> <starts: i32|i64> <items: i32|i64> VEC N S M D L P Lq"
//   DIR/value.bin, shapes.bin, starts.bin, loc.bin, aw.bin: raw little-endian contiguous tensors
//   writes DIR/out.bin ([N, Lq, M*D], same float type). Exit status 0 on success, 2 on bad input.
#include "msda_kernel.cuh"

#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <fstream>
#include <string>
#include <vector>

using namespace actionvos::msda;

namespace {

std::vector<char> read_file(std::string const& path, size_t expected_bytes) {
    std::ifstream f(path, std::ios::binary);
    std::vector<char> buf((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (!f.good() && !f.eof()) buf.clear();
    if (buf.size() != expected_bytes) {
        std::fprintf(stderr, "%s: expected %zu bytes, got %zu\n", path.c_str(), expected_bytes, buf.size());
        std::exit(2);
    }
    return buf;
}

template <typename scalar_t, int VEC, typename item_t>
void run_items(Dims const& d, LevelMeta const* levels, std::vector<char> const& value, std::vector<char> const& loc,
               std::vector<char> const& aw, std::vector<char>& out) {
    item_t const total = static_cast<item_t>(num_items(d, VEC));
    for (item_t item = 0; item < total; ++item) {
        compute_item<scalar_t, VEC, item_t>(item, d, levels, reinterpret_cast<scalar_t const*>(value.data()),
                                            reinterpret_cast<scalar_t const*>(loc.data()),
                                            reinterpret_cast<scalar_t const*>(aw.data()),
                                            reinterpret_cast<scalar_t*>(out.data()));
    }
}

template <typename scalar_t, typename item_t>
void run(int vec, Dims const& d, LevelMeta const* levels, std::vector<char> const& value,
         std::vector<char> const& loc, std::vector<char> const& aw, std::vector<char>& out) {
    switch (vec) {
    case 1: run_items<scalar_t, 1, item_t>(d, levels, value, loc, aw, out); break;
    case 2: run_items<scalar_t, 2, item_t>(d, levels, value, loc, aw, out); break;
    case 4: run_items<scalar_t, 4, item_t>(d, levels, value, loc, aw, out); break;
    default: std::fprintf(stderr, "bad VEC %d\n", vec); std::exit(2);
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    std::string const dir = argv[1];
    std::ifstream meta(dir + "/meta.txt");
    std::string ftype, stype, itype, ntype;
    int vec = 0;
    Dims d{};
    if (!(meta >> ftype >> stype >> itype >> ntype >> vec >> d.N >> d.S >> d.M >> d.D >> d.L >> d.P >> d.Lq)) {
        std::fprintf(stderr, "cannot parse %s/meta.txt\n", dir.c_str());
        return 2;
    }
    bool const fp16 = ftype == "fp16";
    bool const shapes64 = stype == "i64";
    bool const starts64 = itype == "i64";
    bool const items64 = ntype == "i64";
    if (d.L < 1 || d.L > kMaxLevels || vec < 1 || d.D % vec != 0) {
        std::fprintf(stderr, "unsupported sizes\n");
        return 2;
    }
    size_t const fsz = fp16 ? 2 : 4;
    size_t const nv = size_t(d.N) * d.S * d.M * d.D;
    size_t const nloc = size_t(d.N) * d.Lq * d.M * d.L * d.P * 2;
    size_t const naw = nloc / 2;
    size_t const nout = size_t(d.N) * d.Lq * d.M * d.D;
    auto const value = read_file(dir + "/value.bin", nv * fsz);
    auto const shapes = read_file(dir + "/shapes.bin", size_t(d.L) * 2 * (shapes64 ? 8 : 4));
    auto const starts = read_file(dir + "/starts.bin", size_t(d.L) * (starts64 ? 8 : 4));
    auto const loc = read_file(dir + "/loc.bin", nloc * fsz);
    auto const aw = read_file(dir + "/aw.bin", naw * fsz);

    // The kernel's shared-memory preamble: one LevelMeta per level from the raw index tensors.
    LevelMeta levels[kMaxLevels];
    for (int32_t l = 0; l < d.L; ++l) {
        levels[l] = load_level_meta(shapes.data(), shapes64, starts.data(), starts64, l, d.S);
    }
    // Poison the output (NaN for FP32 / FP16 bit patterns alike) so unwritten elements are detected.
    std::vector<char> out(nout * fsz, char(0xFF));
    // Both item-index widths the launchers use (int32 when every index fits, else int64).
    if (items64) {
        fp16 ? run<__half, int64_t>(vec, d, levels, value, loc, aw, out)
             : run<float, int64_t>(vec, d, levels, value, loc, aw, out);
    } else {
        fp16 ? run<__half, int32_t>(vec, d, levels, value, loc, aw, out)
             : run<float, int32_t>(vec, d, levels, value, loc, aw, out);
    }
    std::ofstream(dir + "/out.bin", std::ios::binary).write(out.data(), std::streamsize(out.size()));
    return 0;
}
