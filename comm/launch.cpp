// comm/ranks.h: launched_with_ranks(), the one copy (no MPI needed: it reads the launchers' environment).
#include <cstdlib>
#include <string>

#include "comm/ranks.h"

namespace climseg::comm {

bool launched_with_ranks() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_NTASKS", "MV2_COMM_WORLD_SIZE"}) {
    const char* s = std::getenv(v);
    if (s != nullptr && std::atoi(s) > 1) {
      // srun exports SLURM_NTASKS also to a single-task step of a multi-task allocation: trust it only with PMI.
      if (std::string(v) == "SLURM_NTASKS" && std::getenv("PMI_RANK") == nullptr && std::getenv("PMIX_RANK") == nullptr)
        continue;
      return true;
    }
  }
  return false;
}

}  // namespace climseg::comm
