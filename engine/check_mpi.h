// MPI_CHECK (see engine/check.h). Include only where CLIMSEG_HAVE_MPI is defined.
#pragma once

#include <mpi.h>

#include <string>

#include "engine/check.h"

namespace climseg::detail {
inline std::string mpi_error_string(int code) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, buf, &len) != MPI_SUCCESS) return "unknown MPI error";
  return std::string(buf, static_cast<size_t>(len));
}
}  // namespace climseg::detail

// MPI calls return MPI_SUCCESS or an error code; errors only reach us when the communicator's error handler is
// MPI_ERRORS_RETURN (comm/ sets it), otherwise MPI aborts first.
#define MPI_CHECK(expr) CS_CHECK_STATUS((expr), MPI_SUCCESS, ::climseg::detail::mpi_error_string)
