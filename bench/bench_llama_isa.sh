#!/usr/bin/env bash
# Which instruction set to build llama.cpp for (the local judge, issue 27): builds llama-bench from the llama.cpp
# sources vendored in the installed llama-cpp-python's sdist for three ISA levels (x86-64-v3 = the Makefile's
# portable AVX2 build; AVX-512 without AMX; AVX-512 with AMX = what -march=native gives on a Sapphire Rapids Xeon),
# then times Gemma 3 270M prompt processing (pp256) and generation (tg64) with each on this machine.
# Usage: bench/bench_llama_isa.sh [WORKDIR]   (about 30 minutes of compiling on 2 cores; results in bench/RESULTS.md)
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-$(mktemp -d)}
version=$(.venv/bin/python -c 'from importlib.metadata import version; print(version("llama-cpp-python"))')
.venv/bin/python -m pip download -q --no-binary :all: --no-deps -d "$work" "llama-cpp-python==$version"
tar xzf "$work/llama_cpp_python-$version.tar.gz" -C "$work"
src="$work/llama_cpp_python-$version/vendor/llama.cpp"
common=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_CUDA=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DGGML_NATIVE=OFF
        -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON)
avx512=(-DGGML_AVX512=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_BF16=ON)
amx=(-DGGML_AMX_TILE=ON -DGGML_AMX_INT8=ON -DGGML_AMX_BF16=ON)
declare -A flags=([x86-64-v3]="" [avx512]="${avx512[*]}" [avx512-amx]="${avx512[*]} ${amx[*]}")
model=$(.venv/bin/python -c 'from pathlib import Path; from emojudge_models.judge import ensure_local_model; print(ensure_local_model(Path("'"$work"'/model")))')
grep -m1 "model name" /proc/cpuinfo
for isa in x86-64-v3 avx512 avx512-amx; do
    # shellcheck disable=SC2086
    cmake -S "$src" -B "$work/$isa" "${common[@]}" ${flags[$isa]} > /dev/null
    cmake --build "$work/$isa" --target llama-bench -j2 > /dev/null
    echo "== $isa"
    "$work/$isa/bin/llama-bench" -m "$model" -p 256 -n 64 -t 2 -r 3 -o md || echo "$isa: exit $? (crashed)"
done
