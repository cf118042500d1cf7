// engine/safetensors: round trips of every dtype and rank 0..4, files written byte by byte (as another writer
// would) read back, malformed files each refused with its own error, and the writer's atomicity.
#include <sys/resource.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine/philox.h"
#include "engine/safetensors.h"

using namespace climseg;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path dir;
  TempDir() {
    char t[] = "/tmp/climseg-safetensors-XXXXXX";
    REQUIRE(mkdtemp(t) != nullptr);
    dir = t;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  std::string operator/(const std::string& name) const { return (dir / name).string(); }
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void put(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  REQUIRE(f.good());
}

std::string le64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (8 * i));
  return s;
}

// A file as any writer would lay it out: length, header text (as given, no padding), data.
std::string raw_file(const std::string& header, const std::string& data) { return le64(header.size()) + header + data; }

template <class T>
std::string bytes_of(std::initializer_list<T> v) {
  std::string s;
  for (T x : v) s.append(reinterpret_cast<const char*>(&x), sizeof x);
  return s;
}

// Every byte of a tensor's elements from Philox, so bit patterns (NaNs, subnormals) travel too.
Tensor random_bytes(Shape s, DType t, uint64_t stream) {
  Tensor x = Tensor::empty(s, t, Device::cpu);
  auto* p = static_cast<unsigned char*>(x.data());
  for (size_t i = 0; i < x.nbytes(); ++i) p[i] = static_cast<unsigned char>(philox_block(5, stream, i).v[0]);
  return x;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.data(), b.data(), a.nbytes()) == 0;
}

}  // namespace

TEST_CASE("round trip of every dtype and ranks 0 to 4", "[safetensors]") {
  TempDir tmp;
  const DType dtypes[] = {DType::f64, DType::f32, DType::f16, DType::bf16, DType::i64, DType::i32, DType::u8};
  const std::vector<std::vector<int64_t>> shapes = {{}, {5}, {3, 4}, {2, 3, 4}, {2, 1, 3, 5}, {0}, {2, 0, 3}};
  std::vector<SafetensorsTensor> tensors;
  uint64_t stream = 0;
  for (DType t : dtypes)
    for (const auto& s : shapes) {
      std::string name = std::string(safetensors_dtype_name(t)) + ".rank" + std::to_string(s.size());
      for (int64_t d : s) name += "_" + std::to_string(d);
      tensors.push_back({name, random_bytes(safetensors_shape_4d(s), t, stream++), s});
    }
  const std::map<std::string, std::string> meta = {{"model", "tiny"}, {"note", "ünïcode, \"quotes\"\n"}};
  const std::string path = tmp / "all.safetensors";
  write_safetensors(path, tensors, meta);

  const std::string bytes = slurp(path);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(static_cast<unsigned char>(bytes[i])) << (8 * i);
  REQUIRE((8 + n) % 8 == 0);  // the data section starts 8-aligned

  SafetensorsReader r(path);
  REQUIRE(r.metadata() == meta);
  REQUIRE(r.entries().size() == tensors.size());
  for (const SafetensorsTensor& t : tensors) {
    INFO(t.name);
    const auto* e = r.find(t.name);
    REQUIRE(e != nullptr);
    REQUIRE(e->shape == t.shape);  // the file keeps the writer's shape, not the 4-D one
    REQUIRE(e->dtype == t.data.dtype());
    REQUIRE((e->begin % dtype_size(e->dtype)) == 0);  // sorted by element size: every tensor is aligned
    Tensor back = r.read(t.name);
    REQUIRE(back.shape() == safetensors_shape_4d(t.shape));
    REQUIRE(back.dtype() == t.data.dtype());
    REQUIRE(same_bytes(back, t.data));
  }
  REQUIRE(safetensors_shape_4d({}) == Shape{1, 1, 1, 1});
  REQUIRE(safetensors_shape_4d({7}) == Shape{1, 1, 1, 7});
  REQUIRE(safetensors_shape_4d({6, 7}) == Shape{1, 1, 6, 7});

  // Strided views are written as their elements; the order of the inputs does not change the bytes.
  Tensor base = random_bytes(Shape{1, 2, 3, 8}, DType::f32, 99);
  Tensor slice = base.channel_slice(2, 3);
  std::vector<SafetensorsTensor> a = {{"x", slice, {2, 3, 3}}, {"y", base, {48}}};
  std::vector<SafetensorsTensor> b = {a[1], a[0]};
  write_safetensors(tmp / "a.safetensors", a);
  write_safetensors(tmp / "b.safetensors", b);
  REQUIRE(slurp(tmp / "a.safetensors") == slurp(tmp / "b.safetensors"));
  REQUIRE(same_bytes(SafetensorsReader(tmp / "a.safetensors").read("x"), slice.clone()));
}

TEST_CASE("files written by hand, as another writer would", "[safetensors]") {
  TempDir tmp;
  SECTION("metadata, two tensors stored out of name order, no header padding") {
    const std::string header =
        R"({"__metadata__":{"format":"pt"},"b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
        R"("a":{"dtype":"I64","shape":[],"data_offsets":[8,16]}})";
    const std::string path = tmp / "h1.safetensors";
    put(path, raw_file(header, bytes_of<float>({1.5f, -2.25f}) + bytes_of<int64_t>({-42})));
    SafetensorsReader r(path);
    REQUIRE(r.metadata_or("format", "") == "pt");
    REQUIRE(r.metadata_or("absent", "fallback") == "fallback");
    REQUIRE(r.entries().size() == 2);
    REQUIRE(r.entries()[0].name == "a");  // entries() is sorted by name
    Tensor b = r.read("b");
    REQUIRE(b.shape() == Shape{1, 1, 1, 2});
    REQUIRE(b.get_flat(0) == 1.5);
    REQUIRE(b.get_flat(1) == -2.25);
    Tensor a = r.read("a");
    REQUIRE(a.dtype() == DType::i64);
    REQUIRE(a.data_as<int64_t>()[0] == -42);
    REQUIRE(r.find("c") == nullptr);
    REQUIRE_THROWS_WITH(r.read("c"), Catch::Contains("no tensor 'c'"));
  }
  SECTION("space padding, whitespace, unknown entry keys, BF16 and F16 values, a 2-D shape") {
    std::string header =
        "{ \"w\" : {\"dtype\": \"BF16\", \"shape\": [2, 2], \"data_offsets\": [0, 8], \"extra\": 1},\n"
        "  \"h\": {\"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [8, 10]} }";
    header.append(16, ' ');
    // bf16 1.0 = 0x3f80, -2.0 = 0xc000, 0.5 = 0x3f00, 3.0 = 0x4040; fp16 1.0 = 0x3c00
    const std::string data = bytes_of<uint16_t>({0x3f80, 0xc000, 0x3f00, 0x4040, 0x3c00});
    const std::string path = tmp / "h2.safetensors";
    put(path, raw_file(header, data));
    SafetensorsReader r(path);
    REQUIRE(r.metadata().empty());
    Tensor w = r.read("w");
    REQUIRE(w.shape() == Shape{1, 1, 2, 2});
    REQUIRE(w.get_flat(0) == 1.0);
    REQUIRE(w.get_flat(1) == -2.0);
    REQUIRE(w.get_flat(2) == 0.5);
    REQUIRE(w.get_flat(3) == 3.0);
    REQUIRE(r.read("h").get_flat(0) == 1.0);
  }
  SECTION("an empty file: no tensors, no data") {
    const std::string path = tmp / "h3.safetensors";
    put(path, raw_file("{}", ""));
    REQUIRE(SafetensorsReader(path).entries().empty());
  }
  SECTION("a valid file with a rank-5 tensor: the index reads, the tensor does not fit") {
    const std::string path = tmp / "h4.safetensors";
    put(path, raw_file(R"({"t":{"dtype":"U8","shape":[1,1,1,1,2],"data_offsets":[0,2]}})", "ab"));
    SafetensorsReader r(path);
    REQUIRE(r.find("t")->shape.size() == 5);
    REQUIRE_THROWS_WITH(r.read("t"), Catch::Contains("rank 5"));
  }
}

TEST_CASE("malformed files are refused with their own error", "[safetensors]") {
  TempDir tmp;
  const std::string f32x2 = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  const std::string eight(8, 'x');
  struct Bad {
    const char* what;
    std::string bytes;
    const char* error;
  };
  const std::vector<Bad> cases = {
      {"shorter than the length field", std::string("\x10\x00\x00", 3), "truncated file: 3 bytes"},
      {"header length beyond the file", le64(1000) + f32x2, "truncated file: the header length is 1000"},
      {"header length above 100 MB", le64(200'000'000) + f32x2, "exceeds the limit"},
      {"header length 0", le64(0), "too short"},
      {"not JSON", raw_file("{\"t\": [1, 2", eight), "bad JSON"},
      {"not an object", raw_file("[1, 2, 3, 4, 5, 6, 7]", ""), "does not start with '{'"},
      {"unknown dtype", raw_file(R"({"t":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", eight),
       "unknown dtype 'F33'"},
      {"dtype climseg lacks", raw_file(R"({"t":{"dtype":"I8","shape":[8],"data_offsets":[0,8]}})", eight),
       "'I8' is a safetensors dtype that climseg does not support"},
      {"offsets out of range", raw_file(R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", eight),
       "out of range"},
      {"truncated data section", raw_file(f32x2, "xxxx"), "out of range"},
      {"size mismatch", raw_file(R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight), "size mismatch"},
      {"overlap",
       raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                eight),
       "overlap"},
      {"hole",
       raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                R"("b":{"dtype":"U8","shape":[2],"data_offsets":[6,8]}})",
                eight),
       "hole"},
      {"trailing bytes", raw_file(f32x2, eight + "yy"), "trailing bytes"},
      {"offsets reversed", raw_file(R"({"t":{"dtype":"U8","shape":[0],"data_offsets":[8,0]}})", eight),
       "end before they begin"},
      {"negative extent", raw_file(R"({"t":{"dtype":"U8","shape":[-8],"data_offsets":[0,8]}})", eight),
       "non-negative integers"},
      {"fractional offset", raw_file(R"({"t":{"dtype":"U8","shape":[8],"data_offsets":[0,8.5]}})", eight),
       "non-negative integers"},
      {"missing offsets", raw_file(R"({"t":{"dtype":"U8","shape":[8]}})", eight), "'data_offsets' must be"},
      {"entry not an object", raw_file(R"({"t":[0,8]})", eight), "entry is not an object"},
      {"non-string metadata", raw_file(R"({"__metadata__":{"epoch":3}})", ""), "metadata 'epoch' is not a string"},
      {"overflowing shape",
       raw_file(R"({"t":{"dtype":"F64","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})", eight),
       "overflows"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Bad& c = cases[i];
    const std::string path = tmp / ("bad" + std::to_string(i) + ".safetensors");
    put(path, c.bytes);
    INFO(c.what);
    REQUIRE_THROWS_WITH(SafetensorsReader(path), Catch::Contains(c.error) && Catch::Contains(path));
  }
  REQUIRE_THROWS_WITH(SafetensorsReader(tmp / "absent.safetensors"), Catch::Contains("cannot open"));
  REQUIRE_THROWS_WITH(SafetensorsReader(tmp.dir.string()), Catch::Contains("not a regular file"));
}

TEST_CASE("the writer refuses bad input before touching the file", "[safetensors]") {
  TempDir tmp;
  const std::string path = tmp / "w.safetensors";
  Tensor x = Tensor::zeros(Shape{1, 1, 2, 3}, DType::f32, Device::cpu);
  REQUIRE_THROWS_WITH(write_safetensors(path, {{"x", x, {2, 3}}, {"x", x, {6}}}), Catch::Contains("given twice"));
  REQUIRE_THROWS_WITH(write_safetensors(path, {{"__metadata__", x, {6}}}), Catch::Contains("reserved"));
  REQUIRE_THROWS_WITH(write_safetensors(path, {{"", x, {6}}}), Catch::Contains("without a name"));
  REQUIRE_THROWS_WITH(write_safetensors(path, {{"x", x, {7}}}), Catch::Contains("holds 7 elements"));
  REQUIRE_THROWS_WITH(write_safetensors(path, {{"x", Tensor(), {}}}), Catch::Contains("has no data"));
  REQUIRE_FALSE(fs::exists(path));
  REQUIRE(fs::is_empty(tmp.dir));
}

TEST_CASE("a failed write leaves the existing file intact and no temporary file", "[safetensors]") {
  TempDir tmp;
  const std::string path = tmp / "ckpt.safetensors";
  Tensor old = random_bytes(Shape{1, 1, 1, 16}, DType::f32, 1);
  write_safetensors(path, {{"w", old, {16}}}, {{"step", "1"}});
  const std::string before = slurp(path);

  SECTION("the disk fills up mid-write (RLIMIT_FSIZE: write() fails with EFBIG)") {
    // A real failure of write(2) rather than an injected one: the process may not grow a file past 64 KiB, and
    // SIGXFSZ is ignored so the write returns an error instead of killing the process.
    Tensor big = random_bytes(Shape{1, 1, 1, 1 << 16}, DType::f32, 2);  // 256 KiB
    struct rlimit saved {};
    REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
    auto* old_handler = std::signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = saved;
    lim.rlim_cur = 64 * 1024;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    bool threw = false;
    std::string what;
    try {
      write_safetensors(path, {{"w", big, {1 << 16}}}, {{"step", "2"}});
    } catch (const Error& e) {
      threw = true;
      what = e.what();
    }
    REQUIRE(setrlimit(RLIMIT_FSIZE, &saved) == 0);
    std::signal(SIGXFSZ, old_handler);
    INFO(what);
    REQUIRE(threw);
    REQUIRE_THAT(what, Catch::Contains("writing tensor 'w'") && Catch::Contains(path));
  }
  SECTION("the temporary file cannot be created (the folder does not exist)") {
    REQUIRE_THROWS_WITH(write_safetensors((tmp.dir / "no-such-dir" / "w.safetensors").string(), {{"w", old, {16}}}),
                        Catch::Contains("no-such-dir") && Catch::Contains("does not exist"));
  }
  SECTION("the destination is a directory") {
    const std::string dir = tmp / "dir.safetensors";
    fs::create_directory(dir);
    put(dir + "/keep", "x");
    REQUIRE_THROWS_WITH(write_safetensors(dir, {{"w", old, {16}}}), Catch::Contains("is a directory"));
    REQUIRE(slurp(dir + "/keep") == "x");
    fs::remove_all(dir);
  }
  REQUIRE(slurp(path) == before);
  SafetensorsReader r(path);
  REQUIRE(r.metadata_or("step", "") == "1");
  REQUIRE(same_bytes(r.read("w"), old));
  for (const auto& e : fs::directory_iterator(tmp.dir))
    REQUIRE(e.path().filename().string().find(".tmp") == std::string::npos);
}
