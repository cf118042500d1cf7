# cudasim build helpers (see README.md). Included by kernels/cudasim/CMakeLists.txt; the top level can include it
# too and call climseg_cudasim_sources() on its .cu files.
#
# climseg_cudasim_sources(<target> <file.cu>...)
#   Adds each .cu file to <target> as a generated .cpp: rewrite_cu.py turns its <<<>>> launches into
#   ::cudasim::launch(...) calls (and __launch_bounds__ into a launch-time check), then the host compiler builds it
#   with include/cudasim.h force-included and without FMA contraction. <target> must link climseg_cudasim.
include_guard(GLOBAL)
set(CLIMSEG_CUDASIM_DIR ${CMAKE_CURRENT_LIST_DIR} CACHE INTERNAL "kernels/cudasim")
find_package(Python3 REQUIRED COMPONENTS Interpreter)

function(climseg_cudasim_sources target)
  foreach(cu ${ARGN})
    get_filename_component(abs ${cu} ABSOLUTE)
    get_filename_component(srcdir ${abs} DIRECTORY)
    string(MAKE_C_IDENTIFIER "${abs}" id)
    get_filename_component(base ${abs} NAME)
    set(out ${CMAKE_CURRENT_BINARY_DIR}/cudasim_gen/${id}/${base}.cpp)
    add_custom_command(OUTPUT ${out}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_CURRENT_BINARY_DIR}/cudasim_gen/${id}
      COMMAND ${Python3_EXECUTABLE} ${CLIMSEG_CUDASIM_DIR}/rewrite_cu.py ${abs} ${out}
      DEPENDS ${abs} ${CLIMSEG_CUDASIM_DIR}/rewrite_cu.py
      COMMENT "cudasim: rewriting ${base}"
      VERBATIM)
    target_sources(${target} PRIVATE ${out})
    # -iquote: the .cu file's own directory for its "..." includes (the generated file lives elsewhere).
    # -Wno-unknown-pragmas: #pragma unroll. -Wno-sign-compare: threadIdx.x (unsigned) against int bounds, which
    # nvcc does not report for device code.
    set_source_files_properties(${out} TARGET_DIRECTORY ${target} PROPERTIES
      COMPILE_OPTIONS "-include;${CLIMSEG_CUDASIM_DIR}/include/cudasim.h;-iquote;${srcdir};-ffp-contract=off;-Wno-unknown-pragmas;-Wno-sign-compare")
  endforeach()
endfunction()
