# issue 13: a soak on CUDA (text, caption, imagine, transcribe at concurrency 4, random cancellation, reloads),
# host and device memory sampled; bounded so the closing call keeps its time
timeout ${SOAK_SECONDS:-180} "$OMM" soak -n ${SOAK_N:-2000} -c 4 --reload-every 500 --interval 250 --provider cuda,cpu --json "$out/soak-cuda.json"
echo "soak rc=$?"
