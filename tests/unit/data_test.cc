// Readers: Criteo and libsvm parsing, input splits that read every line
// exactly once whatever the number of workers, bad lines counted with file
// and line, and batches with de-duplicated keys.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "common/hash.h"
#include "worker/data/batch.h"
#include "common/input_split.h"
#include "worker/data/readers.h"
#include "worker/data/split_reader.h"

namespace sparta::data_test {
namespace {

namespace fs = std::filesystem;

// A temporary folder removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    char tmpl[] = "/tmp/sparta-test-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() { fs::remove_all(path); }
  std::string Write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name) << text;
    return (path / name).string();
  }
};

std::string CriteoLine(int label, const std::string& i1, const std::string& c1) {
  // Appended piece by piece: GCC 12 warns (-Wrestrict, a false positive)
  // about "\t" + std::to_string(i) once inlined here.
  std::string line = std::to_string(label);
  line += '\t';
  line += i1;
  for (int i = 1; i < 13; ++i) {
    line += '\t';
    line += std::to_string(i);
  }
  line += '\t';
  line += c1;
  for (int c = 1; c < 26; ++c) line += "\t";
  return line;
}

// The reader's error for `line` ("" if it parsed).
std::string Parse(Reader& reader, const std::string& line, Example* ex) {
  std::string error;
  return reader.Parse(line, ex, &error) ? "" : (error.empty() ? "(no reason)" : error);
}

TEST_CASE("criteo lines parse, with empty fields as missing values") {
  auto parser = NewCriteoReader();
  Example ex;
  REQUIRE(Parse(*parser, CriteoLine(1, "5", "68fd1e64"), &ex).empty());
  CHECK(ex.label == 1);
  // 13 integers (1 bucket key each) + 1 categorical; 25 empty categoricals.
  CHECK(ex.features.size() == 14);
  CHECK(ex.dense.size() == 13);
  CHECK(ex.dense[0] == Approx(std::log1p(5.0f)));
  CHECK(ex.features.back().key == FeatureKey(14, 0x68fd1e64));
  CHECK(ex.features.back().field == 13);
  REQUIRE(Parse(*parser, CriteoLine(0, "", ""), &ex).empty());
  CHECK(ex.label == 0);
  CHECK(ex.features.size() == 12);
  CHECK(ex.dense[0] == 0);
  // The same token in another field is another key.
  CHECK(FeatureKey(14, 0x68fd1e64) != FeatureKey(15, 0x68fd1e64));
}

TEST_CASE("criteo integer features: bucket floor(ln(v)^2) above 2, log1p as the dense value, at every size") {
  // The reader keeps small values' results in a table; these are the
  // formulas themselves, on each side of the table's end and far past it.
  auto parser = NewCriteoReader();
  Example ex;
  std::vector<int64_t> values;
  for (int64_t v = -3; v <= 5000; ++v) values.push_back(v);
  for (int64_t v : {65535LL, 1000003LL, 4294967296LL, 9223372036854775807LL}) values.push_back(v);
  for (int64_t v : values) {
    INFO("I1 = " << v);
    REQUIRE(Parse(*parser, CriteoLine(0, std::to_string(v), ""), &ex).empty());
    const int64_t bucket = v <= 2 ? v : static_cast<int64_t>(std::floor(std::pow(std::log(static_cast<double>(v)), 2)));
    CHECK(ex.features[0].key == FeatureKey(1, static_cast<uint64_t>(bucket)));
    CHECK(ex.dense[0] == std::log1p(static_cast<float>(std::max<int64_t>(v, 0))));
  }
}

TEST_CASE("criteo tokens: 1 to 16 hexadecimal digits of either case, as std::from_chars reads them whole") {
  auto parser = NewCriteoReader();
  Example ex;
  std::vector<std::string> tokens = {"0", "a", "F", "68fd1e64", "68FD1E64", "deadBEEF", "ffffffffffffffff",
                                     "0000000000000001", "1234567890abcdef", "00000000000000000", "fffffffffffffffff",
                                     "g", "68fd1e6z", " 1", "1 ", "+1", "-1", "0x1f", "1.5", std::string("1\0", 2),
                                     "\xff", "\x80" "a"};
  std::mt19937_64 random(7);
  const std::string alphabet = "0123456789abcdefABCDEFgxG-+ ";
  for (int i = 0; i < 2000; ++i) {
    std::string token(1 + random() % 18, ' ');
    for (char& c : token) c = alphabet[random() % alphabet.size()];
    tokens.push_back(token);
  }
  for (const std::string& token : tokens) {
    INFO("C1 = '" << token << "'");
    uint64_t expected = 0;
    auto [ptr, ec] = std::from_chars(token.data(), token.data() + token.size(), expected, 16);
    const bool valid = token.size() <= 16 && ec == std::errc() && ptr == token.data() + token.size();
    const std::string error = Parse(*parser, CriteoLine(0, "", token), &ex);
    if (valid) {
      REQUIRE(error.empty());
      CHECK(ex.features.back().key == FeatureKey(14, expected));
    } else {
      CHECK(error.find("C1") != std::string::npos);
    }
  }
}

TEST_CASE("malformed criteo lines are refused with a reason") {
  auto parser = NewCriteoReader();
  Example ex;
  CHECK(Parse(*parser, "1\t2\t3", &ex).find("expected 40") != std::string::npos);
  CHECK(Parse(*parser, CriteoLine(1, "x7", "ab"), &ex).find("I1") != std::string::npos);
  CHECK(Parse(*parser, CriteoLine(1, "7", "zz"), &ex).find("C1") != std::string::npos);
  CHECK(Parse(*parser, "2" + CriteoLine(1, "7", "ab").substr(1), &ex).find("label") != std::string::npos);
  CHECK_FALSE(Parse(*parser, CriteoLine(1, "7", "ab") + "\textra", &ex).empty());
}

TEST_CASE("libsvm lines parse") {
  auto parser = NewLibsvmReader();
  Example ex;
  REQUIRE(Parse(*parser, "+1 3:0.5 10:1 qid:4 # comment", &ex).empty());
  CHECK(ex.label == 1);
  REQUIRE(ex.features.size() == 2);
  CHECK(ex.features[0].key == 3);
  CHECK(ex.features[0].value == 0.5f);
  REQUIRE(Parse(*parser, "-1 7:2", &ex).empty());
  CHECK(ex.label == 0);
  REQUIRE(Parse(*parser, "0", &ex).empty());
  CHECK(ex.features.empty());
  CHECK_FALSE(Parse(*parser, "1 7", &ex).empty());
  CHECK_FALSE(Parse(*parser, "1 a:1", &ex).empty());
  CHECK_FALSE(Parse(*parser, "x 1:1", &ex).empty());
  CHECK_FALSE(Parse(*parser, "1 1:nan", &ex).empty());
}

// Reads what `workers` workers would read of `files` and counts each label value.
std::map<int, int> ReadAll(const std::vector<std::string>& files, int workers) {
  std::map<int, int> seen;
  for (int r = 0; r < workers; ++r) {
    auto ranges = SplitInput(files, r, workers);
    REQUIRE(ranges.ok());
    SplitReader reader(*ranges, NewLibsvmReader(), 0);
    REQUIRE(reader
                .ReadPass([&](const Example& ex, uint64_t) {
                  ++seen[static_cast<int>(ex.features[0].key)];
                  return true;
                })
                .ok());
  }
  return seen;
}

TEST_CASE("splits read every line exactly once, for any number of workers") {
  TempDir dir;
  std::mt19937 rng(3);
  std::vector<std::string> files;
  int next = 0;
  for (int f = 0; f < 3; ++f) {
    std::string text;
    // Lines of very different lengths, so range cuts land everywhere.
    for (int i = 0; i < 200; ++i) {
      text += "1 " + std::to_string(next++) + ":1" + std::string(rng() % 40, ' ') + "\n";
    }
    if (f == 2) text.pop_back();  // the last line of a file may lack its newline
    files.push_back(dir.Write("part" + std::to_string(f), text));
  }
  for (int workers : {1, 2, 3, 4, 5, 7, 16}) {
    for (const auto& subset : {std::vector<std::string>{files[0]}, files}) {
      auto seen = ReadAll(subset, workers);
      INFO(workers << " workers, " << subset.size() << " files");
      REQUIRE(seen.size() == 200 * subset.size());
      for (const auto& [id, count] : seen) REQUIRE(count == 1);
    }
  }
}

TEST_CASE("bad lines are counted, too many stop the reader naming file and line") {
  TempDir dir;
  std::string text;
  for (int i = 1; i <= 100; ++i) text += (i == 37 || i == 90) ? "garbage line\n" : "1 1:1\n";
  const std::string path = dir.Write("bad.svm", text);
  {
    SplitReader reader({{path, 0, text.size()}}, NewLibsvmReader(), 5);
    int good = 0;
    REQUIRE(reader.ReadPass([&](const Example&, uint64_t) { return ++good > 0; }).ok());
    CHECK(good == 98);
    CHECK(reader.bad_lines() == 2);
  }
  // A range that starts mid-file still reports the file's own line numbers.
  for (uint64_t begin : {uint64_t{0}, uint64_t{100}}) {
    SplitReader reader({{path, begin, text.size()}}, NewLibsvmReader(), 0);
    auto st = reader.ReadPass([](const Example&, uint64_t) { return true; });
    REQUIRE_FALSE(st.ok());
    CHECK(std::string(st.message()).find(path + ":37:") != std::string::npos);
  }
}

TEST_CASE("missing inputs are errors naming the key and the pattern") {
  auto missing = ExpandInputs({"/nonexistent/train-*.txt"}, "data.train");
  REQUIRE_FALSE(missing.ok());
  CHECK(std::string(missing.status().message()).find("data.train") != std::string::npos);
  CHECK(std::string(missing.status().message()).find("/nonexistent/train-*.txt") != std::string::npos);
  TempDir dir;
  dir.Write("b.txt", "x");
  dir.Write("a.txt", "x");
  auto found = ExpandInputs({(dir.path / "*.txt").string()}, "data.train");
  REQUIRE(found.ok());
  REQUIRE(found->size() == 2);
  CHECK((*found)[0] < (*found)[1]);
}

TEST_CASE("a followed input lists a folder's files or a glob's, never one still under a dot name") {
  TempDir dir;
  // Nothing yet is no error: the files arrive later.
  auto none = ListArrivedInputs({(dir.path / "*.txt").string()}, "data.train");
  REQUIRE(none.ok());
  CHECK(none->empty());
  dir.Write("b.txt", "x");
  dir.Write("a.txt", "x");
  dir.Write(".c.txt.partial", "x");  // being written; renamed into place when whole
  std::filesystem::create_directory(dir.path / "sub");
  auto folder = ListArrivedInputs({dir.path.string()}, "data.train");
  REQUIRE(folder.ok());
  CHECK(*folder == std::vector<std::string>{(dir.path / "a.txt").string(), (dir.path / "b.txt").string()});
  auto glob = ListArrivedInputs({(dir.path / "*").string(), (dir.path / "a.txt").string()}, "data.train");
  REQUIRE(glob.ok());
  CHECK(*glob == *folder);  // the same file twice is listed once
  auto gone = ListArrivedInputs({"/nonexistent/folder/"}, "data.train");
  REQUIRE(gone.ok());
  CHECK(gone->empty());
}

TEST_CASE("a batch de-duplicates keys and keeps per-example features") {
  BatchBuilder builder;
  Example a, b;
  a.label = 1;
  a.features = {{10, 1.0f, 0}, {20, 2.0f, 1}};
  b.features = {{20, 3.0f, 1}, {30, 4.0f, 2}, {10, 5.0f, 0}};
  builder.Add(a);
  builder.Add(b);
  auto batch = builder.Finish(99);
  REQUIRE(batch);
  CHECK(batch->size == 2);
  CHECK(batch->unique_keys == std::vector<uint64_t>{10, 20, 30});
  CHECK(batch->offsets == std::vector<uint32_t>{0, 2, 5});
  CHECK(batch->slots == std::vector<uint32_t>{0, 1, 1, 2, 0});
  CHECK(batch->values == std::vector<float>{1, 2, 3, 4, 5});
  CHECK(batch->labels == std::vector<float>{1, 0});
  CHECK(batch->bytes_read == 99);
  CHECK(builder.Finish(0) == nullptr);
}

TEST_CASE("a batch lists the keys its previous batch lacked first, each part in order of appearance") {
  BatchBuilder builder;
  Example a, b, c;
  a.features = {{10, 1.0f, 0}, {20, 1.0f, 0}, {30, 1.0f, 0}};
  b.features = {{30, 1.0f, 0}, {40, 1.0f, 0}, {10, 1.0f, 0}, {50, 1.0f, 0}, {40, 1.0f, 0}};
  c.features = {{60, 1.0f, 0}, {50, 1.0f, 0}};
  builder.Add(a);
  auto first = builder.Finish(0);
  REQUIRE(first);
  CHECK(first->fresh_keys == 3);  // no batch before it
  CHECK(first->unique_keys == std::vector<uint64_t>{10, 20, 30});
  builder.Add(b);
  builder.Add(c);
  auto second = builder.Finish(0);
  REQUIRE(second);
  // 40, 50, 60 are new; 30 and 10 were in the first batch.
  CHECK(second->fresh_keys == 3);
  CHECK(second->unique_keys == std::vector<uint64_t>{40, 50, 60, 30, 10});
  std::vector<uint64_t> keys;  // each feature's key, through its slot
  for (uint32_t slot : second->slots) keys.push_back(second->unique_keys[slot]);
  CHECK(keys == std::vector<uint64_t>{30, 40, 10, 50, 40, 60, 50});
  CHECK(second->offsets == std::vector<uint32_t>{0, 5, 7});
}

}  // namespace
}  // namespace sparta::data_test
