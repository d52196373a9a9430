# Sourced by scripts/gpu/build.sh, and by anyone running the GPU build's programs by hand:
# puts the unpacked Debian packages (QUANTD_GPU_DEPS) on the compiler's, linker's and loader's
# search paths and names the Python that holds PyTorch.
export PYTHON=${PYTHON:-python3}
export QUANTD_GPU_DEPS=${QUANTD_GPU_DEPS:-/tmp/quantd-deps}
_quantd_lib=$QUANTD_GPU_DEPS/usr/lib/x86_64-linux-gnu
export PATH=$QUANTD_GPU_DEPS/usr/bin:$PATH
export CPATH=$QUANTD_GPU_DEPS/usr/include/x86_64-linux-gnu:$QUANTD_GPU_DEPS/usr/include${CPATH:+:$CPATH}
export LIBRARY_PATH=$_quantd_lib${LIBRARY_PATH:+:$LIBRARY_PATH}
export LD_LIBRARY_PATH=$_quantd_lib:$("$PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PKG_CONFIG_LIBDIR=$_quantd_lib/pkgconfig:$QUANTD_GPU_DEPS/usr/share/pkgconfig
export PKG_CONFIG_SYSROOT_DIR=$QUANTD_GPU_DEPS
unset _quantd_lib
# PyTorch's wheel builds libtorch.so with its own (older) copy of std::filesystem and exports it.
# Programs link libtorch.so before libstdc++, so their std::filesystem calls bind to that copy,
# whose remove_all crashes on the directory iterators of the newer compiler (seen on the H100
# machine: every test that removes a folder died with SIGSEGV). Loading the system libstdc++
# first makes those calls bind to the library the code was compiled against. The scripts run
# Python without it where Python needs nothing of ours (`env -u LD_PRELOAD`): PyTorch's own
# code is left as it was tested.
_quantd_libstdcxx=$(/sbin/ldconfig -p 2>/dev/null | awk '/libstdc\+\+\.so\.6 .*x86-64/ {print $NF; exit}')
[ -n "$_quantd_libstdcxx" ] && export LD_PRELOAD=$_quantd_libstdcxx${LD_PRELOAD:+:$LD_PRELOAD}
unset _quantd_libstdcxx
