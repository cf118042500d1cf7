// Input file lists for the commands that read climate data (predict, data convert): shell patterns, and telling
// climseg's HDF5 samples from NetCDF files by their content.
#pragma once

#include <string>
#include <vector>

namespace climseg::io {

// True when `path` is NetCDF (NetCDF-3 magic, or an HDF5 file that is not a DeepCAM/2018 sample, i.e. has no
// 'climate' group: NetCDF-4 files are HDF5 files), false for climseg's HDF5 sample files and anything else (whose
// reader then reports it). Throws when the file cannot be opened.
bool is_netcdf_file(const std::string& path);

// Expands shell-style patterns (*, ?, [...]) in `inputs` (for file lists too long for a command line: quote them),
// each pattern's matches sorted; a pattern matching nothing is an error naming it. Other entries are kept as given.
std::vector<std::string> expand_globs(const std::vector<std::string>& inputs);

}  // namespace climseg::io
