#!/usr/bin/env bash
# Long fuzz run of one target of tests/OnnxMultimodal.Fuzz for a fixed time.
#   tools/fuzz.sh TARGET SECONDS [afl|mutate] [SEED]
# TARGET: image | wave | onnx-header | manifest | tokenizer | options
# afl    : AFL++ (`apt-get install afl++`) with SharpFuzz instrumentation (`dotnet tool install -g SharpFuzz.CommandLine`):
#          coverage-guided; findings in fuzz-out/TARGET/default/crashes.
# mutate : the built-in seeded mutator (no tools): corpus inputs, then random mutations of them.
# Default: afl when afl-fuzz and sharpfuzz are on PATH, else mutate.
# Every crash input is copied to fuzz-crashes/TARGET/; replay one with
#   dotnet fuzz-bin/omm-fuzz.dll TARGET --repro FILE
# and, once fixed, commit it as tests/OnnxMultimodal.Fuzz/corpus/TARGET/crash-NAME so CI replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?target}; seconds=${2:?seconds}; mode=${3:-auto}; seed=${4:-$RANDOM}
corpus=tests/OnnxMultimodal.Fuzz/corpus/$target
[ -d "$corpus" ] || { echo "no corpus for '$target' ($corpus)" >&2; exit 2; }
if [ "$mode" = auto ]; then
    if command -v afl-fuzz >/dev/null && command -v sharpfuzz >/dev/null; then mode=afl; else mode=mutate; fi
fi
bin=fuzz-bin
dotnet publish tests/OnnxMultimodal.Fuzz -c Release -o "$bin" --nologo -v quiet >/dev/null
mkdir -p "fuzz-crashes/$target"
case "$mode" in
  afl)
    # Instrument the code under test (not the harness): our library, plus ImageSharp for the image target.
    # (a second run finds them instrumented already: sharpfuzz says so and exits non-zero)
    sharpfuzz "$bin/OnnxMultimodal.dll" || true
    if [ "$target" = image ]; then sharpfuzz "$bin/SixLabors.ImageSharp.dll" || true; fi
    seeds=$(mktemp -d); mkdir -p fuzz-out
    find "$corpus" -maxdepth 1 -type f -exec cp {} "$seeds/" \;
    # -V: stop after SECONDS; -t: ms per input; -m none: .NET reserves more address space than AFL's default allows.
    dict=()
    case "$target" in manifest|tokenizer|options) dict=(-x tests/OnnxMultimodal.Fuzz/json.dict) ;; esac
    AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 afl-fuzz -V "$seconds" -t 5000 -m none "${dict[@]}" -i "$seeds" -o "fuzz-out/$target" -- "$bin/omm-fuzz" "$target" || true
    find "fuzz-out/$target" -path '*crashes/id*' -type f -exec cp {} "fuzz-crashes/$target/" \;
    grep -hE 'execs_done|saved_crashes|saved_hangs' "fuzz-out/$target"/*/fuzzer_stats || true
    ;;
  mutate)
    dotnet "$bin/omm-fuzz.dll" "$target" --mutate "$seconds" --seed "$seed" --corpus "$corpus" --crashes "fuzz-crashes/$target"
    ;;
  *) echo "mode must be afl or mutate" >&2; exit 2 ;;
esac
