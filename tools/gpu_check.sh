#!/usr/bin/env bash
# GPU check of lt (issue 17), in two halves, because the GPU machine has no Rust toolchain and no
# network and takes at most 64 MiB of carried files:
#
#   tools/gpu_check.sh pack [DIR]      HERE (the dev machine). Puts everything the check needs into
#                                      DIR (default gpu_pack/ at the repo root, git-ignored): the
#                                      release lt binary (built with `tools/cargo build --release`
#                                      only when missing or older than the sources), the NCCL
#                                      backend liblt_dist_nccl.so beside it (lt looks beside its own
#                                      executable, and run.sh also sets LT_NCCL_LIB), the model
#                                      scripts and Python peers of tools/gpu/, this script, run.sh,
#                                      and a MANIFEST. Prints the size; fails over 60 MiB.
#   bash gpu_pack/run.sh               THERE (the GPU machine, from the repo root of a copy of the
#   tools/gpu_check.sh run DIR         work tree). Finds torch with python3 (`PYTHON` overrides),
#                                      puts its lib/ on LD_LIBRARY_PATH (the binary's rpath points
#                                      at this machine's libtorch, which is not there), and runs the
#                                      checks. Each prints one line
#                                        PASS name: figures | FAIL name: reason | SKIP name: reason
#                                      and the run ends with `gpu_check: N passed, N failed, N skipped`
#                                      (exit 1 if anything failed). Every check has its own
#                                      `timeout`; a whole-run budget (GPU_CHECK_BUDGET_S, 480 s on
#                                      CUDA, 300 s on CPU) SKIPs what would start after it, and no
#                                      check runs past GPU_CHECK_DEADLINE_S (520 s / 360 s), so the
#                                      summary comes before the device tool's 540 s limit.
#
# Without CUDA (the dev machine) the same run is a dry run: every CUDA-only check SKIPs with its
# reason; the CPU-capable parts run at tiny sizes (OMP_NUM_THREADS=1 unless set), so the packing,
# the scripts and the peers are proven before device time is spent. Timing checks run on CPU at
# tiny sizes (figures prove the scripts; they are not benchmarks). Lightning is SKIPped when
# neither `lightning` nor `pytorch_lightning` imports.
#
# The device-tool invocation (the GPU machine's torch is 2.11.0+cu130, the libtorch lt is built on):
#   tools/gpu_check.sh pack                                       # here, first
#   run(command="bash gpu_pack/run.sh 2>&1 | tee $OUT/gpu_check.log", carry=["gpu_pack"], timeout_s=540)
# The verdict is the summary line (the pipe's status is tee's); the per-check logs come back in
# $OUT/gpu_check_logs/.
#
# Environment: LT_BIN (pack this binary, never build), CARGO_TARGET_DIR (default as .ci/run:
# LT_CI_TARGET_DIR or ~/.cache/lt/ci-target), PYTHON, GPU_CHECK_BUDGET_S, GPU_CHECK_DEADLINE_S,
# GPU_CHECK_CPU_PRECISIONS (what the CPU dry run fits; default "32-true bf16-true"; all four work),
# GPU_CHECK_ONLY (a regex: run only the checks whose names match, e.g. for a rerun of what failed:
#   run(command="GPU_CHECK_ONLY='fit_gpt|ddp' bash gpu_pack/run.sh 2>&1 | tee $OUT/gpu_check.log", …)),
# GPU_CHECK_WORK (scratch folder; default a fresh mktemp -d).
set -u -o pipefail

self="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"

die() { echo "gpu_check: $*" >&2; exit 1; }

# ───────────────────────────────────────────── pack ─────────────────────────────────────────────

# Whether the binary is missing or older than anything it is built from.
binary_stale() {
  local bin=$1 root=$2
  [ -x "$bin" ] || return 0
  [ -n "$(cd "$root" && find src csrc stdlib build.rs Cargo.toml Cargo.lock -type f -newer "$bin" 2>/dev/null | head -1)" ]
}

# The liblt_dist_nccl.so that belongs to this binary: the path baked into it at build time, else
# the newest one in the target dir's build output.
find_nccl_lib() {
  local bin=$1 target=$2 p
  p="$(strings "$bin" 2>/dev/null | grep -o '/[^[:space:]]*/liblt_dist_nccl\.so' | head -1)"
  if [ -n "$p" ] && [ -f "$p" ]; then echo "$p"; return; fi
  find "$target/release" -name 'liblt_dist_nccl*.so' -printf '%T@ %p\n' 2>/dev/null | sort -nr | head -1 | cut -d' ' -f2-
}

pack() {
  local root dir target bin nccl size limit
  root="$(cd "$(dirname "$self")/.." && pwd)"
  dir="${1:-$root/gpu_pack}"
  target="${CARGO_TARGET_DIR:-${LT_CI_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lt/ci-target}}"
  if [ -n "${LT_BIN:-}" ]; then
    bin="$LT_BIN"
    [ -x "$bin" ] || die "LT_BIN=$bin is not an executable"
  else
    bin="$target/release/lt"
    if binary_stale "$bin" "$root"; then
      echo "gpu_check: $bin is missing or older than the sources: building it"
      (cd "$root" && CARGO_TARGET_DIR="$target" tools/cargo build --release) || die "tools/cargo build --release failed"
    fi
  fi
  nccl="$(find_nccl_lib "$bin" "$target")"
  rm -rf "$dir"
  mkdir -p "$dir/bin" "$dir/gpu" || die "cannot create $dir"
  cp "$bin" "$dir/bin/lt" || die "cannot copy $bin"
  if [ -n "$nccl" ]; then
    cp "$nccl" "$dir/bin/liblt_dist_nccl.so" || die "cannot copy $nccl"
  else
    echo "gpu_check: warning: no liblt_dist_nccl.so for $bin (built without CUDA/NCCL headers?): the NCCL checks will FAIL" >&2
  fi
  cp "$root"/tools/gpu/*.rhai "$root"/tools/gpu/*.py "$dir/gpu/" || die "cannot copy tools/gpu/"
  cp "$self" "$dir/gpu_check.sh"
  cat >"$dir/run.sh" <<'EOF'
#!/usr/bin/env bash
# Runs the packed GPU check (see gpu_check.sh beside this file): bash gpu_pack/run.sh
exec bash "$(dirname "${BASH_SOURCE[0]}")/gpu_check.sh" run "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)" "$@"
EOF
  chmod +x "$dir/run.sh" "$dir/gpu_check.sh" "$dir/bin/lt"
  {
    echo "packed $(date -u +%Y-%m-%dT%H:%M:%SZ) from $root"
    echo "git $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$root" && [ -n "$(git status --porcelain 2>/dev/null)" ] && echo ' (dirty tree)')"
    echo "lt from $bin (modified $(date -u -r "$bin" +%Y-%m-%dT%H:%M:%SZ))"
    [ -n "$nccl" ] && echo "liblt_dist_nccl.so from $nccl"
    (cd "$dir" && find . -type f ! -name MANIFEST -print0 | sort -z | xargs -0 sha256sum)
  } >"$dir/MANIFEST"
  size="$(du -sb "$dir" | cut -f1)"
  limit=$((60 * 1024 * 1024))
  echo "gpu_check: packed $dir: $(awk -v s="$size" 'BEGIN { printf "%.1f MiB", s / 1048576 }') ($size bytes, limit 60 MiB)"
  (cd "$dir" && find . -type f -printf '  %8s  %p\n' | sort -k2)
  [ "$size" -le "$limit" ] || die "the pack is over 60 MiB: it cannot be carried"
}

# ───────────────────────────────────────── run: helpers ─────────────────────────────────────────

# The value of KEY on the last `GPUCHECK …` line of FILE that contains FILTER.
field() {
  grep -a '^GPUCHECK' "$1" 2>/dev/null | grep -a -- "$2" | tail -1 | tr ' ' '\n' | sed -n "s/^$3=//p"
}

# Whether $1 is a finite number.
finite() {
  awk -v v="$1" 'BEGIN { exit !(v ~ /^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/) }'
}

fmt() { awk -v v="$1" -v f="${2:-%.4g}" 'BEGIN { printf f, v }'; }

# A check's verdicts: the first line of the result file, and the exit status the runner reads.
ok()   { echo "$*" >"$RES"; exit 0; }
skip() { echo "$*" >"$RES"; exit 77; }
bad()  { echo "$*" >"$RES"; exit 1; }

# `lt` with a per-command timeout; its output goes to stdout (the check's log) as well as $1.
# run_lt OUTFILE ARGS…
run_lt() {
  local out=$1; shift
  echo "+ lt $*" >&2
  timeout --foreground -k 10 "$CMD_TIMEOUT" "$LT" "$@" >"$out" 2>&1
  local rc=$?
  cat "$out"
  return $rc
}

run_py() {
  local out=$1; shift
  echo "+ $PY $*" >&2
  timeout --foreground -k 10 "$CMD_TIMEOUT" "$PY" "$@" >"$out" 2>&1
  local rc=$?
  cat "$out"
  return $rc
}

# Why a command failed, in one line: its last error line, or its last line.
why() {
  local rc=$1 out=$2
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then echo "timed out after ${CMD_TIMEOUT}s"; return; fi
  local e
  e="$(grep -a -m1 -i 'error' "$out" | cut -c1-240)"
  [ -n "$e" ] || e="$(tail -1 "$out" | cut -c1-240)"
  echo "exit $rc: $e"
}

# check NAME TIMEOUT FUNCTION [ARGS…]: runs one check in its own process under `timeout` (cut to
# what is left before the run's deadline), logs to $WORK/NAME.log (and $OUT/gpu_check_logs/ when
# $OUT exists, so logs survive a run that is cut short), prints its verdict line. The commands inside
# get `timeout --foreground` (same process group), so the check's own timeout stops them all.
check() {
  local name=$1 limit=$2; shift 2
  if [ -n "${GPU_CHECK_ONLY:-}" ] && ! [[ $name =~ $GPU_CHECK_ONLY ]]; then return; fi
  local log="$WORK/$name.log" res="$WORK/$name.result" t0=$SECONDS rc msg elapsed=$((SECONDS - RUN_START))
  if [ "$elapsed" -ge "$BUDGET" ] || [ $((DEADLINE - elapsed)) -lt 20 ]; then
    echo "SKIP $name: the run's time budget (${BUDGET}s) is spent"
    SKIPPED=$((SKIPPED + 1))
    return
  fi
  [ "$limit" -le $((DEADLINE - elapsed)) ] || limit=$((DEADLINE - elapsed))
  mkdir -p "$WORK/$name"
  : >"$res"
  (cd "$WORK/$name" && RES="$res" CMD_TIMEOUT="$limit" timeout -k 10 "$limit" bash -c '"$@"' check "$@") >"$log" 2>&1
  rc=$?
  msg="$(head -1 "$res")"
  local took=$((SECONDS - t0))
  case $rc in
    0) echo "PASS $name: ${msg:-ok} (${took}s)"; PASSED=$((PASSED + 1)) ;;
    77) echo "SKIP $name: ${msg:-skipped}"; SKIPPED=$((SKIPPED + 1)) ;;
    124|137) echo "FAIL $name: timed out after ${limit}s${msg:+ ($msg)} (log: $log)"; FAILED=$((FAILED + 1)) ;;
    *) [ -n "$msg" ] || msg="exit $rc: $(tail -1 "$log" | cut -c1-200)"
       echo "FAIL $name: $msg (log: $log)"; FAILED=$((FAILED + 1)) ;;
  esac
  if [ -n "${OUT:-}" ] && [ -d "$OUT" ] && [ -w "$OUT" ]; then
    mkdir -p "$OUT/gpu_check_logs" && cp "$log" "$OUT/gpu_check_logs/" 2>/dev/null
  fi
}

# ──────────────────────────────────────────── checks ────────────────────────────────────────────

c_version() {
  run_lt v.out --version || bad "lt --version: $(why $? v.out)"
  local lib cuda
  lib="$(sed -n 's/^libtorch //p' v.out)"
  cuda="$(sed -n 's/^cuda //p' v.out)"
  [ "${TORCH_VERSION%%+*}" = "$lib" ] || bad "lt runs on libtorch $lib but python's torch is $TORCH_VERSION: the binary needs the same libtorch"
  ok "lt $(sed -n 's/^lt //p' v.out), libtorch $lib (python torch $TORCH_VERSION from $TORCH_LIB), cuda $cuda, threads $(sed -n 's/^threads //p' v.out)"
}

c_version_cuda() {
  [ "$HAVE_CUDA" = 1 ] || skip "no CUDA on this machine (torch.cuda.is_available() is False)"
  run_lt v.out --version || bad "lt --version: $(why $? v.out)"
  grep -q '^cuda available' v.out || bad "torch sees $CUDA_COUNT CUDA device(s) ($GPU_NAME) but lt says '$(grep '^cuda' v.out)'"
  ok "$(grep '^cuda' v.out) — $GPU_NAME"
}

# The packed shared objects resolve against this machine's torch/lib, and lt can load the NCCL
# backend (without a GPU, ProcessGroupNCCL itself refuses, after the library has loaded).
c_libs() {
  local missing port
  [ -f "$LT_NCCL_LIB" ] || bad "no liblt_dist_nccl.so in the pack"
  missing="$(ldd "$LT" "$LT_NCCL_LIB" 2>&1 | grep 'not found' | sort -u | tr -s ' \t' ' ')"
  [ -z "$missing" ] || bad "unresolved libraries: $missing"
  port=$(free_port)
  RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    run_lt n.out dist-selftest --backend nccl --dist-timeout 60
  local rc=$?
  if grep -q 'cannot load the NCCL backend' n.out; then bad "$(grep -m1 'cannot load' n.out | cut -c1-240)"; fi
  if [ "$HAVE_CUDA" = 1 ]; then
    if [ $rc -ne 0 ] || ! grep -q 'selftest passed' n.out; then bad "dist-selftest --backend nccl: $(why $rc n.out)"; fi
    ok "ldd clean; liblt_dist_nccl.so loads; 1-rank NCCL selftest passed (all_reduce, broadcast, all_gather, barrier, coalesced, gradsync)"
  fi
  grep -q 'no GPUs found' n.out || bad "dist-selftest --backend nccl without a GPU: expected ProcessGroupNCCL's 'no GPUs found', got: $(why $rc n.out)"
  ok "ldd clean (lt, liblt_dist_nccl.so); the NCCL backend loads from the pack (no GPU: ProcessGroupNCCL refuses, as expected)"
}

c_device() {
  run_lt d.out fit "$G/device.rhai" || bad "lt fit device.rhai: $(why $? d.out)"
  local hook line bad_parts=""
  for hook in training_step validation_step; do
    line="$(grep -a "^GPUCHECK hook=$hook " d.out | tail -1)"
    [ -n "$line" ] || bad "device.rhai printed nothing from $hook"
    for k in module param x y out; do
      v="$(echo "$line" | tr ' ' '\n' | sed -n "s/^$k=//p")"
      [ "$v" = "$DEV" ] || bad_parts+=" $hook.$k=$v"
    done
  done
  [ -z "$bad_parts" ] || bad "expected everything on $DEV with accelerator \"auto\":$bad_parts"
  ok "accelerator \"auto\": module (this.device), parameters, array and map batches, outputs on $DEV in training_step and validation_step"
}

c_ops() {
  (echo "let MODE = \"$MODE\";"; cat "$G/ops.rhai") >ops_run.rhai
  run_lt o.out run ops_run.rhai || bad "lt run ops.rhai: $(why $? o.out)"
  local n failed worst
  n="$(field o.out 'ops=' ops)"; failed="$(field o.out 'ops=' failed)"; worst="$(field o.out 'ops=' worst)"
  [ -n "$n" ] || bad "ops.rhai printed no summary"
  if [ "$failed" != 0 ]; then
    bad "$failed of $n ops over tolerance: $(grep -a 'ok=false' o.out | sed 's/GPUCHECK op=//; s/ tol=.*//' | tr '\n' ' ')"
  fi
  if [ "$MODE" = cuda ]; then
    ok "$n ops/layers (forward + input grads), cuda:0 float32 vs CPU float32: worst ${worst%%:*} $(fmt "${worst##*:}" %.2e) (tol 1e-4 abs; cuDNN conv/LSTM 1e-2, TF32)"
  fi
  ok "$n ops/layers (forward + input grads), CPU-only mode (CPU float32 vs float64): worst ${worst%%:*} $(fmt "${worst##*:}" %.2e) (tol 1e-4 abs)"
}

# fit, then validate and test from the checkpoint, in one precision. fit_model MODEL PRECISION
c_fit() {
  local model=$1 prec=$2 args ck t0=$SECONDS
  if [ "$HAVE_CUDA" != 1 ] && ! [[ " $CPU_PRECISIONS " == *" $prec "* ]]; then
    skip "CUDA only (the CPU dry run covers $CPU_PRECISIONS)"
  fi
  # shellcheck disable=SC2206
  args=(${FIT_ARGS[$model]} --set trainer.precision="$prec" --set trainer.default_root_dir=run)
  run_lt fit.out fit "$G/$model.rhai" -q "${args[@]}" || bad "fit: $(why $? fit.out)"
  ck="$(find run -name '*.ckpt' -printf '%T@ %p\n' | sort -nr | head -1 | cut -d' ' -f2-)"
  [ -n "$ck" ] || bad "fit wrote no checkpoint"
  run_lt val.out validate "$G/$model.rhai" -q --ckpt "$ck" "${args[@]}" || bad "validate --ckpt: $(why $? val.out)"
  run_lt test.out test "$G/$model.rhai" -q --ckpt "$ck" "${args[@]}" || bad "test --ckpt: $(why $? test.out)"
  local dev pdev dtype steps tl vl te acc want
  dev="$(field fit.out stage=fit device)"; pdev="$(field fit.out stage=fit param_device)"
  dtype="$(field fit.out stage=fit param_dtype)"; steps="$(field fit.out stage=fit global_step)"
  tl="$(field fit.out stage=fit train_loss)"; vl="$(field val.out stage=val val_loss)"
  te="$(field test.out stage=test test_loss)"; acc="$(field test.out stage=test test_acc)"
  if [ "$dev" != "$DEV" ] || [ "$pdev" != "$DEV" ]; then bad "module on '$dev', parameters on '$pdev'; expected $DEV"; fi
  want=float32; [ "$prec" = bf16-true ] && want=bfloat16
  [ "$dtype" = "$want" ] || bad "parameters are $dtype under $prec; expected $want"
  for v in "$tl" "$vl" "$te"; do finite "$v" || bad "a loss is not finite: train $tl, val $vl, test $te"; done
  local extra=""
  if [ "$prec" = 16-mixed ]; then
    COLUMNS=200 "$LT" ckpt show "$ck" >show.out 2>&1 || bad "lt ckpt show: $(why $? show.out)"
    grep -q MixedPrecision show.out || bad "the 16-mixed checkpoint has no MixedPrecision (GradScaler) state"
    local scale tracker init skipped
    scale="$("$PY" "$G/ckpt_meta.py" "$ck" MixedPrecision.scale)"
    tracker="$("$PY" "$G/ckpt_meta.py" "$ck" MixedPrecision.growth_tracker)"
    finite "$scale" || bad "MixedPrecision.scale is '$scale'"
    init=65536
    skipped="$(awk -v s="$scale" -v i=$init 'BEGIN { n = log(i / s) / log(2); printf "%d", (n < 0 ? 0 : n + 0.5) }')"
    extra="; GradScaler in ckpt: scale $(fmt "$scale" %g), growth_tracker $tracker, skipped steps ≈ $skipped (from the scale; lt does not count them)"
  fi
  [ -z "$acc" ] || acc=", test_acc $(fmt "$acc" %.3f)"
  ok "$steps steps on $DEV, params $dtype: train_loss $(fmt "$tl"), val_loss $(fmt "$vl"), test_loss $(fmt "$te")$acc$extra ($(( SECONDS - t0 ))s for fit+validate+test)"
}

# fit 4 steps on device A, resume from that checkpoint to 8 steps on device B. c_resume A B
# The first fit stops at max_steps, so its checkpoint is taken at the (forced) end of epoch 0, as in
# Lightning; the resumed fit goes on with epoch 1 (hence max_epochs 100 in RESUME_ARGS).
c_resume() {
  local a=$1 b=$2 ck
  if [ "$HAVE_CUDA" != 1 ] && { [ "$a" = cuda ] || [ "$b" = cuda ]; }; then
    skip "needs CUDA (the CPU dry run covers resume_cpu_to_cpu)"
  fi
  # shellcheck disable=SC2206
  local args=(${RESUME_ARGS})
  run_lt a.out fit "$G/resnet.rhai" -q "${args[@]}" --set trainer.max_steps=4 --set trainer.accelerator="$a" --set trainer.default_root_dir=a \
    || bad "fit on $a: $(why $? a.out)"
  ck="$(find a -name '*.ckpt' | head -1)"
  [ -n "$ck" ] || bad "the fit on $a wrote no checkpoint"
  [ "$("$PY" "$G/ckpt_meta.py" "$ck" global_step)" = 4 ] || bad "the checkpoint is not at global_step 4"
  run_lt b.out fit "$G/resnet.rhai" -q "${args[@]}" --ckpt "$ck" --set trainer.max_steps=8 --set trainer.accelerator="$b" --set trainer.default_root_dir=b \
    || bad "resume on $b: $(why $? b.out)"
  local da db sb lb la
  da="$(field a.out stage=fit device)"; la="$(field a.out stage=fit train_loss)"
  db="$(field b.out stage=fit param_device)"; sb="$(field b.out stage=fit global_step)"; lb="$(field b.out stage=fit train_loss)"
  [ "$sb" = 8 ] || bad "the resumed fit ended at global_step '$sb', expected 8"
  [ "${db%%:*}" = "$b" ] || bad "the resumed parameters are on '$db', expected $b"
  finite "$lb" || bad "the resumed loss is '$lb'"
  ok "checkpoint of 4 steps on $da (train_loss $(fmt "$la")) resumed on $db to step 8 (train_loss $(fmt "$lb"))"
}

free_port() {
  "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo $((29500 + RANDOM % 2000))
}

# DDP on NCCL with one GPU: `--devices 1 --strategy ddp` as the issue asks, then a real 1-rank
# process group (the torchrun environment) for the Trainer's gradient sync, then the collectives.
# Without CUDA, the same path on Gloo (ddp_gloo).
c_ddp() {
  local backend=$1 port
  if [ "$backend" = nccl ] && [ "$HAVE_CUDA" != 1 ]; then skip "needs CUDA (the CPU dry run covers ddp_gloo)"; fi
  if [ "$backend" = gloo ] && [ "$HAVE_CUDA" = 1 ]; then skip "CUDA present: ddp_nccl covers this path"; fi
  # shellcheck disable=SC2206
  local args=(${FIT_ARGS[gpt]} --set trainer.max_steps=6 --set trainer.max_epochs=1)
  local figures="" ws1
  # lt's own launcher: `--devices 1 --strategy ddp` is a one-rank group ($backend), as in Lightning
  run_lt s.out fit "$G/gpt.rhai" -q "${args[@]}" --devices 1 --strategy ddp --dist-timeout 120 --set trainer.default_root_dir=s \
    || bad "lt fit --devices 1 --strategy ddp: $(why $? s.out)"
  ws1="$(field s.out stage=fit world_size)"
  [ "$ws1" = 1 ] || bad "--devices 1 --strategy ddp: world_size '$ws1', expected 1"
  figures="--devices 1 --strategy ddp: 1-rank group, world_size $ws1; "
  port=$(free_port)
  RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 LOCAL_WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    run_lt w.out fit "$G/gpt.rhai" -q "${args[@]}" --dist-timeout 120 --set trainer.default_root_dir=w \
    || bad "1-rank worker fit (torchrun env, $backend): $(why $? w.out)"
  local dev ws
  dev="$(field w.out stage=fit param_device)"; ws="$(field w.out stage=fit world_size)"
  [ "$dev" = "$DEV" ] || bad "the worker's parameters are on '$dev', expected $DEV"
  port=$(free_port)
  RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_ADDR=127.0.0.1 MASTER_PORT=$port \
    run_lt t.out dist-selftest --backend "$backend" --dist-timeout 120 || bad "dist-selftest --backend $backend: $(why $? t.out)"
  grep -q 'selftest passed' t.out || bad "dist-selftest did not pass"
  ok "${figures}1-rank $backend process group (torchrun env): fit on $dev, world_size $ws, gradient sync; dist-selftest $backend passed"
}

# Timing: lt vs PyTorch eager (and Lightning, as its own check) in the same run.
# c_time NAME MODEL WHICH: WHICH "lt" times lt and the PyTorch peer, "lightning" the Lightning peer
c_time() {
  local name=$1 model=$2 which=$3 script lt_ms torch_ms peer_args lt_args
  script="$model"; [ "$model" = resnet18 ] && script=resnet
  read -ra peer_args <<<"${PEER_ARGS[$model]}"
  read -ra lt_args <<<"${LT_BENCH_ARGS[$model]}"
  if [ "$which" = lightning ]; then
    [ "$HAVE_LIGHTNING" = 1 ] || skip "neither lightning nor pytorch_lightning imports on this python"
    run_py l.out "$G/peer.py" --model "$model" --framework lightning --device "$PYDEV" "${peer_args[@]}" \
      || bad "Lightning peer: $(why $? l.out)"
    local l_ms ver; l_ms="$(field l.out ms_per_step ms_per_step)"; ver="$(field l.out lightning= lightning)"
    finite "$l_ms" || bad "the Lightning peer printed no time"
    lt_ms="$(cat "$FIGS/$name.lt" 2>/dev/null)"
    ok "${DESC[$model]}: Lightning $ver $(fmt "$l_ms" %.3f) ms/step${lt_ms:+, lt $(fmt "$lt_ms" %.3f) (lt/Lightning $(fmt "$(awk -v a="$lt_ms" -v b="$l_ms" 'BEGIN { print a / b }')" %.2f))}$SIZE_NOTE"
  fi
  run_lt lt.out fit "$G/$script.rhai" -q "${lt_args[@]}" --set trainer.logger=false \
    --set trainer.enable_checkpointing=false --set trainer.enable_model_summary=false || bad "lt: $(why $? lt.out)"
  lt_ms="$(field lt.out ms_per_step ms_per_step)"
  finite "$lt_ms" || bad "lt printed no time"
  echo "$lt_ms" >"$FIGS/$name.lt"
  run_py t.out "$G/peer.py" --model "$model" --framework torch --device "$PYDEV" "${peer_args[@]}" || bad "PyTorch peer: $(why $? t.out)"
  torch_ms="$(field t.out ms_per_step ms_per_step)"
  finite "$torch_ms" || bad "the PyTorch peer printed no time"
  local lp tp desc
  lp="$(field lt.out params= params)"; tp="$(field t.out params= params)"
  [ "$lp" = "$tp" ] || bad "the models differ: lt has $lp parameters, the PyTorch peer $tp"
  desc="${DESC[$model]}, $(fmt "$(awk -v p="$lp" 'BEGIN { print p / 1e6 }')" %.1f)M params"
  if [ "$model" = mlp ]; then
    ok "$desc: lt $(fmt "$(awk -v a="$lt_ms" 'BEGIN { print 1000 / a }')" %.0f) steps/s ($(fmt "$lt_ms" %.3f) ms), PyTorch eager $(fmt "$(awk -v a="$torch_ms" 'BEGIN { print 1000 / a }')" %.0f) steps/s ($(fmt "$torch_ms" %.3f) ms); lt/PyTorch time $(fmt "$(awk -v a="$lt_ms" -v b="$torch_ms" 'BEGIN { print a / b }')" %.2f)$SIZE_NOTE"
  fi
  ok "$desc: lt $(fmt "$lt_ms" %.2f) ms/step, PyTorch eager $(fmt "$torch_ms" %.2f) ms/step (lt/PyTorch $(fmt "$(awk -v a="$lt_ms" -v b="$torch_ms" 'BEGIN { print a / b }')" %.2f))$SIZE_NOTE"
}

# ───────────────────────────────────────────── run ──────────────────────────────────────────────

run_all() {
  local pack
  pack="$(cd "${1:?usage: gpu_check.sh run DIR}" && pwd)" || die "no pack at $1"
  export LT="$pack/bin/lt" G="$pack/gpu" PY="${PYTHON:-python3}"
  [ -x "$LT" ] || die "$LT is missing: run tools/gpu_check.sh pack first"
  command -v timeout >/dev/null || die "coreutils' timeout is needed"
  local info
  info="$("$PY" -c 'import os, torch
print(os.path.dirname(torch.__file__)); print(torch.__version__)
c = torch.cuda.is_available(); print(int(c)); print(torch.cuda.device_count() if c else 0)
print(torch.cuda.get_device_name(0).replace(" ", "_") if c else "none")' 2>/dev/null)" \
    || die "$PY cannot import torch (set PYTHON, or PYTHONPATH)"
  local torch_dir
  torch_dir="$(sed -n 1p <<<"$info")"
  TORCH_LIB="$torch_dir/lib" TORCH_VERSION="$(sed -n 2p <<<"$info")" HAVE_CUDA="$(sed -n 3p <<<"$info")"
  CUDA_COUNT="$(sed -n 4p <<<"$info")" GPU_NAME="$(sed -n 5p <<<"$info")"
  export TORCH_LIB TORCH_VERSION HAVE_CUDA CUDA_COUNT GPU_NAME
  export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LT_NCCL_LIB="$pack/bin/liblt_dist_nccl.so"
  export LT_BREAKPOINTS=off LT_PAUSE_KEY=off
  export HAVE_LIGHTNING
  HAVE_LIGHTNING="$("$PY" -c 'import importlib.util as u; print(int(bool(u.find_spec("lightning") or u.find_spec("pytorch_lightning"))))' 2>/dev/null || echo 0)"
  export WORK="${GPU_CHECK_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")}"
  mkdir -p "$WORK" && export FIGS="$WORK/figures" && mkdir -p "$FIGS"

  # Sizes: the same scripts, tiny on the CPU, real on the GPU.
  declare -gA FIT_ARGS LT_BENCH_ARGS PEER_ARGS DESC
  if [ "$HAVE_CUDA" = 1 ]; then
    export DEV=cuda:0 PYDEV=cuda MODE=cuda SIZE_NOTE=""
    BUDGET="${GPU_CHECK_BUDGET_S:-480}" DEADLINE="${GPU_CHECK_DEADLINE_S:-520}"
    FIT_ARGS[resnet]="--set model.width=16 --set model.img=64 --set model.n=2048 --set model.batch_size=64 --set trainer.max_epochs=2"
    FIT_ARGS[gpt]="--set model.layers=4 --set model.d_model=256 --set model.heads=8 --set model.vocab=1024 --set model.seq_len=128 --set model.n=2048 --set model.batch_size=32 --set trainer.max_epochs=2"
    RESUME_ARGS="--set model.width=16 --set model.img=64 --set model.n=1024 --set model.batch_size=64 --set trainer.max_epochs=100"
    local w=5 n=20
    LT_BENCH_ARGS[resnet18]="--set model.batch_size=128 --set model.img=224 --set model.bench_warmup=$w --set model.bench_steps=$n --set trainer.max_steps=$((w + n + 1)) --set trainer.precision=bf16-mixed"
    PEER_ARGS[resnet18]="--batch-size 128 --img 224 --warmup $w --steps $n --precision bf16-mixed"
    LT_BENCH_ARGS[gpt]="--set model.batch_size=16 --set model.seq_len=256 --set model.bench_warmup=$w --set model.bench_steps=$n --set trainer.max_steps=$((w + n + 1)) --set trainer.precision=bf16-mixed"
    PEER_ARGS[gpt]="--batch-size 16 --seq-len 256 --warmup $w --steps $n --precision bf16-mixed"
    LT_BENCH_ARGS[mlp]="--set model.bench_warmup=50 --set model.bench_steps=500 --set trainer.max_steps=551"
    PEER_ARGS[mlp]="--batch-size 32 --hidden 256 --warmup 50 --steps 500"
    DESC[resnet18]="ResNet-18, batch 128, 224x224, bf16-mixed, AdamW fused, $n steps after $w"
    DESC[gpt]="GPT 12 layers x 768, 12 heads, seq 256, vocab 50257, batch 16, bf16-mixed, AdamW fused, $n steps after $w"
    DESC[mlp]="MLP 784-256-10, batch 32, fp32, Adam, log every step, 500 steps after 50"
  else
    export DEV=cpu PYDEV=cpu MODE=cpu SIZE_NOTE=" [cpu, tiny sizes: proves the scripts, not a benchmark]"
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
    BUDGET="${GPU_CHECK_BUDGET_S:-300}" DEADLINE="${GPU_CHECK_DEADLINE_S:-360}"
    FIT_ARGS[resnet]="--set model.width=8 --set model.img=32 --set model.n=128 --set model.batch_size=16"
    FIT_ARGS[gpt]="--set model.layers=2 --set model.d_model=64 --set model.heads=4 --set model.vocab=256 --set model.seq_len=32 --set model.n=128 --set model.batch_size=16"
    RESUME_ARGS="--set model.width=8 --set model.img=32 --set model.n=256 --set model.batch_size=16 --set trainer.max_epochs=100"
    local w=2 n=3
    LT_BENCH_ARGS[resnet18]="--set model.width=8 --set model.img=32 --set model.batch_size=8 --set model.bench_warmup=$w --set model.bench_steps=$n --set trainer.max_steps=$((w + n + 1)) --set trainer.precision=bf16-mixed"
    PEER_ARGS[resnet18]="--width 8 --img 32 --batch-size 8 --warmup $w --steps $n --precision bf16-mixed"
    LT_BENCH_ARGS[gpt]="--set model.layers=2 --set model.d_model=64 --set model.heads=4 --set model.vocab=256 --set model.seq_len=32 --set model.batch_size=8 --set model.bench_warmup=$w --set model.bench_steps=$n --set trainer.max_steps=$((w + n + 1)) --set trainer.precision=bf16-mixed"
    PEER_ARGS[gpt]="--layers 2 --d-model 64 --heads 4 --vocab 256 --seq-len 32 --batch-size 8 --warmup $w --steps $n --precision bf16-mixed"
    LT_BENCH_ARGS[mlp]="--set model.bench_warmup=20 --set model.bench_steps=100 --set trainer.max_steps=121"
    PEER_ARGS[mlp]="--batch-size 32 --hidden 256 --warmup 20 --steps 100"
    DESC[resnet18]="ResNet-18 layout at width 8, batch 8, 32x32, bf16-mixed, $n steps after $w"
    DESC[gpt]="GPT 2 layers x 64, 4 heads, seq 32, vocab 256, batch 8, bf16-mixed, $n steps after $w"
    DESC[mlp]="MLP 784-256-10, batch 32, fp32, Adam, 100 steps after 20"
  fi
  export CPU_PRECISIONS="${GPU_CHECK_CPU_PRECISIONS:-32-true bf16-true}" RESUME_ARGS
  # bash cannot export arrays: hand them to the check processes as declarations
  export ARRAYS_DECL
  ARRAYS_DECL="$(declare -p FIT_ARGS LT_BENCH_ARGS PEER_ARGS DESC)"
  export -f field finite fmt ok skip bad run_lt run_py why free_port \
    c_version c_version_cuda c_libs c_device c_ops c_fit c_resume c_ddp c_time load_arrays

  RUN_START=$SECONDS PASSED=0 FAILED=0 SKIPPED=0
  echo "gpu_check: $(head -1 "$pack/MANIFEST" 2>/dev/null); torch $TORCH_VERSION at $torch_dir; cuda devices: $CUDA_COUNT ($GPU_NAME); work dir $WORK"
  check version 60 load_arrays c_version
  check version_cuda 60 load_arrays c_version_cuda
  check libs 120 load_arrays c_libs
  check device 120 load_arrays c_device
  check ops_agree 180 load_arrays c_ops
  local model prec
  for model in resnet gpt; do
    for prec in 32-true 16-mixed bf16-mixed bf16-true; do
      check "fit_${model}_${prec}" 240 load_arrays c_fit "$model" "$prec"
    done
  done
  check resume_cpu_to_cpu 180 load_arrays c_resume cpu cpu
  check resume_cuda_to_cpu 180 load_arrays c_resume cuda cpu
  check resume_cpu_to_cuda 180 load_arrays c_resume cpu cuda
  check ddp_nccl 240 load_arrays c_ddp nccl
  check ddp_gloo 180 load_arrays c_ddp gloo
  check time_resnet18 240 load_arrays c_time time_resnet18 resnet18 lt
  check time_resnet18_lightning 180 load_arrays c_time time_resnet18 resnet18 lightning
  check time_gpt 240 load_arrays c_time time_gpt gpt lt
  check time_gpt_lightning 180 load_arrays c_time time_gpt gpt lightning
  check time_mlp 180 load_arrays c_time time_mlp mlp lt

  echo "gpu_check: $PASSED passed, $FAILED failed, $SKIPPED skipped ($((SECONDS - RUN_START))s; logs in $WORK)"
  [ "$FAILED" -eq 0 ]
}

# Each check process re-creates the size tables, then runs its function.
load_arrays() {
  eval "$ARRAYS_DECL"
  "$@"
}

case "${1:-}" in
  pack) shift; pack "$@" ;;
  run) shift; run_all "$@" ;;
  *) echo "usage: tools/gpu_check.sh pack [DIR]   |   tools/gpu_check.sh run DIR   (or: bash gpu_pack/run.sh)" >&2; exit 2 ;;
esac
