# The native tree walker (functions/predict/lambda_forest/forest_walk.c), included by the root Makefile
# (a build for this machine, beside the source) and by the layers' Makefile (one per layer, in its lib/,
# which Lambda puts on LD_LIBRARY_PATH as /opt/lib).
#
# Zig's C compiler (the ziglang package from PyPI) cross-compiles for either architecture from any host.
# The glibc 2.28 target runs on Lambda's python3.13 runtime (Amazon Linux 2023, glibc 2.34); baseline CPUs
# (x86-64, armv8-a) run on every Lambda machine. -s strips the library at link time.
# -ffp-contract=off and never -ffast-math: the walk must add and compare exactly as scikit-learn does
# (the comment at the top of forest_walk.c says why).

NATIVE_SOURCE := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../functions/predict/lambda_forest/forest_walk.c)
NATIVE_LIBRARY := liblambda_forest_walk.so
NATIVE_FLAGS := -std=c11 -O2 -shared -fPIC -ffp-contract=off -Wall -Wextra -Werror -s -mcpu=baseline
ZIG_CC ?= $(PYTHON) -m ziglang cc

# $(call native_build,ARCH,OUTPUT) with ARCH x86_64 or aarch64
native_build = $(ZIG_CC) $(NATIVE_FLAGS) -target $(1)-linux-gnu.2.28 -o $(2) $(NATIVE_SOURCE) -lpthread
