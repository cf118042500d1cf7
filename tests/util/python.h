// Running /usr/bin/python3 from tests (oracle scripts in tests/py and tests/torch).
#pragma once

#include <string>

namespace climseg::test {

constexpr const char* kPython3 = "/usr/bin/python3";

// Runs `cmd` through the shell with stderr folded into stdout; returns the exit status (-1 if killed by a signal).
int run_command(const std::string& cmd, std::string& output);

// True when /usr/bin/python3 exists and `import <modules>` succeeds ("h5py, numpy"); cached per module list.
bool python_can_import(const std::string& modules);

// Runs `/usr/bin/python3 <args>`; throws with the output when it exits non-zero. Returns the output.
std::string python_run(const std::string& args);

}  // namespace climseg::test
