# ctest cudasim_rewrite: cmake -DPYTHON=... -DSCRIPT=rewrite_cu.py -DIN=fixture.cu -DEXPECTED=... -DOUT=... -P this
execute_process(COMMAND ${PYTHON} ${SCRIPT} ${IN} ${OUT} RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "rewrite_cu.py failed (${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files ${OUT} ${EXPECTED} RESULT_VARIABLE diff)
if(NOT diff EQUAL 0)
  message(FATAL_ERROR "${OUT} differs from ${EXPECTED}")
endif()
