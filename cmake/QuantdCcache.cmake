# Routes every compile through ccache when it is installed. The sloppiness settings let
# ccache cache precompiled headers and the files compiled with them.
find_program(QUANTD_CCACHE ccache)
if(QUANTD_CCACHE)
  set(_quantd_launcher
      ${CMAKE_COMMAND} -E env
      CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
      CCACHE_BASEDIR=${CMAKE_SOURCE_DIR}
      CCACHE_NOHASHDIR=true
      ${QUANTD_CCACHE})
  set(CMAKE_C_COMPILER_LAUNCHER ${_quantd_launcher})
  set(CMAKE_CXX_COMPILER_LAUNCHER ${_quantd_launcher})
  set(CMAKE_CUDA_COMPILER_LAUNCHER ${_quantd_launcher})
endif()
