# LibTorch and the shared precompiled header for every target that includes it.
# quantd_use_torch(target) links LibTorch and reuses the one precompiled <torch/torch.h>,
# so each torch translation unit skips re-parsing the LibTorch headers.
find_package(Torch REQUIRED)

add_library(quantd_torch_pch STATIC ${CMAKE_CURRENT_LIST_DIR}/torch_pch.cc)
quantd_target_defaults(quantd_torch_pch)
target_link_libraries(quantd_torch_pch PUBLIC ${TORCH_LIBRARIES})
target_precompile_headers(quantd_torch_pch PRIVATE <torch/torch.h>)

function(quantd_use_torch target)
  target_link_libraries(${target} PUBLIC ${TORCH_LIBRARIES})
  target_precompile_headers(${target} REUSE_FROM quantd_torch_pch)
endfunction()
