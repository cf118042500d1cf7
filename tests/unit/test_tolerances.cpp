// docs/tolerances.md must show exactly the rows of tests/util/tolerances.h (name, atol, rtol): one table.
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/util/tolerances.h"

TEST_CASE("docs/tolerances.md matches tests/util/tolerances.h", "[tolerances]") {
  std::ifstream f(std::string(CLIMSEG_SOURCE_DIR) + "/docs/tolerances.md");
  REQUIRE(f.good());
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string doc = ss.str();
  for (const auto& t : climseg::test::kTolerances) {
    char prefix[256];
    std::snprintf(prefix, sizeof prefix, "| %s | %g | %g | ", t.name, t.atol, t.rtol);
    INFO("expected a row starting with: " << prefix);
    REQUIRE(doc.find(prefix) != std::string::npos);
  }
  // The rows of the table headed "| row | atol | rtol | reason |" (the page has other tables).
  const size_t head = doc.find("| row | atol | rtol | reason |");
  REQUIRE(head != std::string::npos);
  std::stringstream again(doc.substr(head));
  int rows = 0;
  std::string line;
  std::getline(again, line);  // the header
  std::getline(again, line);  // |---|
  while (std::getline(again, line) && line.rfind("| ", 0) == 0) ++rows;
  REQUIRE(rows == static_cast<int>(std::size(climseg::test::kTolerances)));
}
