#include "engine/check.h"

namespace climseg::detail {

void throw_error(const char* file, int line, const char* expr, const std::string& msg) {
  std::string s = concat(file, ":", line, ": ");
  if (expr) s += concat("check failed: ", expr);
  if (!msg.empty()) s += (expr ? ": " : "") + msg;
  throw Error(s);
}

}  // namespace climseg::detail
