# quantd_target_defaults(target): C++17, our warning flags (-Wall -Wextra -Werror) and the
# repository root on the include path, so includes read "server/core/job.h".
function(quantd_target_defaults target)
  target_compile_features(${target} PUBLIC cxx_std_17)
  target_include_directories(${target} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Werror>)
endfunction()
