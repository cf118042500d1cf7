#include "tests/util/python.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <map>

#include "engine/check.h"

namespace climseg::test {

int run_command(const std::string& cmd, std::string& output) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  CS_CHECK(p != nullptr, "cannot run: ", cmd);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) output.append(buf, n);
  const int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool python_can_import(const std::string& modules) {
  static std::map<std::string, bool> cache;
  auto it = cache.find(modules);
  if (it != cache.end()) return it->second;
  std::string out;
  const bool ok =
      access(kPython3, X_OK) == 0 && run_command(std::string(kPython3) + " -c 'import " + modules + "'", out) == 0;
  return cache[modules] = ok;
}

std::string python_run(const std::string& args) {
  std::string out;
  const std::string cmd = std::string(kPython3) + " " + args;
  const int rc = run_command(cmd, out);
  CS_CHECK(rc == 0, "`", cmd, "` exited with ", rc, ":\n", out);
  return out;
}

}  // namespace climseg::test
