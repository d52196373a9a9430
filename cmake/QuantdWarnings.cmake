# quantd_target_defaults(target): C++17, our warning flags (-Wall -Wextra, and -Werror unless
# QUANTD_WERROR is OFF) and the repository root on the include path, so includes read
# "server/core/job.h". The GPU build (scripts/gpu/build.sh) turns -Werror off: a newer compiler
# and LibTorch bring warnings of their own that CI's toolchain does not have.
option(QUANTD_WERROR "Treat compiler warnings as errors" ON)

function(quantd_target_defaults target)
  target_compile_features(${target} PUBLIC cxx_std_17)
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra>)
  if(QUANTD_WERROR)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
  endif()
endfunction()
