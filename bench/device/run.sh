#!/usr/bin/env bash
# The device kit's entry point (bench/device/README.md), run from the unpacked bundle on a GPU
# machine with no Node, npm or network:
#   bash run.sh [--dry-run] [--allow-software] [--cases LIST] [--iters N] [--no-tune] [--no-torch] OUTDIR
# Unpacks the carried Node and Dawn into /tmp, brings the Vulkan loader if the machine has none,
# points Vulkan at the NVIDIA driver, checks the adapter is not a software driver (exit 3 if it
# is, unless --allow-software), runs bench/run.js on each case (--profile, --tune OUTDIR/tuning.json)
# and the PyTorch peer on the same cases, and writes at most 6 files into OUTDIR:
#   kit.log, adapter.json, ours.json, torch.json, summary.json, tuning.json.
# --dry-run: tiny sizes and 1 iteration (the check on SwiftShader before GPU time is spent).
# LIST: comma-separated mode:WxH:batch, e.g. infer:1024x512:1,train:1024x512:8.
# KIT_BUDGET_S (default 480; 1200 with --dry-run): seconds for the whole run; ours stops starting
# cases when the PyTorch side's reserve (KIT_TORCH_S, default 150; 30 with --dry-run) would be eaten.
# KIT_LOCAL_VULKAN=1 and KIT_CARRIED_LIBSTDCXX=1 force the fallbacks (the carried Vulkan loader
# unpacked into /tmp, the carried libstdc++) so a dry run can test them.
set -u
KIT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DRY=0 ALLOW_SW=0 TUNE=1 TORCH=1 CASES="" ITERS="" OUT=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --allow-software) ALLOW_SW=1 ;;
    --no-tune) TUNE=0 ;;
    --no-torch) TORCH=0 ;;
    --cases) CASES="$2"; shift ;;
    --iters) ITERS="$2"; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "run.sh: unknown flag $1" >&2; exit 2 ;;
    *) OUT="$1" ;;
  esac
  shift
done
[ -n "$OUT" ] || { echo "usage: bash run.sh [--dry-run] [--allow-software] [--cases LIST] [--iters N] [--no-tune] [--no-torch] OUTDIR" >&2; exit 2; }
mkdir -p "$OUT" && OUT="$(cd "$OUT" && pwd)"
exec > >(tee -a "$OUT/kit.log") 2>&1
TEE_PID=$!
# The log is complete when run.sh returns: close our ends of the pipe and wait for tee.
WORK=""
trap '[ -n "$WORK" ] && rm -rf "$WORK"; exec >&- 2>&-; wait $TEE_PID 2>/dev/null' EXIT
# A dry run on a software GPU is slow (the autotuner alone takes about a minute per case there).
BUDGET="${KIT_BUDGET_S:-$([ $DRY = 1 ] && echo 1200 || echo 480)}"
TORCH_S="${KIT_TORCH_S:-$([ $DRY = 1 ] && echo 30 || echo 150)}"
if [ -z "$CASES" ]; then
  if [ $DRY = 1 ]; then CASES="infer:64x32:1,infer:128x64:2,train:64x32:2"
  # The targets first, so a run that runs out of time loses the least.
  else CASES="infer:1024x512:1,train:1024x512:8,infer:2048x1024:1,infer:1024x512:4,train:512x256:8,infer:2048x1024:4"; fi
fi
[ -z "$ITERS" ] && [ $DRY = 1 ] && ITERS=1
step() { echo "[$(date -u +%H:%M:%S) +${SECONDS}s] $*"; }
die() { echo; echo "*** run.sh FAILED: $1 ***"; echo; exit "${2:-1}"; }
FAILED=()

step "canet-gpu device kit: $(sed -n '2,6p' "$KIT/manifest.json" 2>/dev/null | tr -d '\n' | sed 's/  */ /g')"
step "host: $(uname -srm); $(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"); $(getconf GNU_LIBC_VERSION 2>/dev/null)"
command -v nvidia-smi >/dev/null && nvidia-smi -L

# 1. Unpack Node and Dawn into /tmp (the bundle itself is never written to).
WORK="$(mktemp -d /tmp/canet-kit.XXXXXX)"
unxz() { # FILE.xz DEST: xz if the machine has it, else Python's lzma
  if command -v xz >/dev/null; then xz -dc "$1" > "$2"; else python3 -c 'import lzma,shutil,sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; fi
}
cp -r "$KIT/app" "$WORK/app" || die "cannot copy the app into $WORK"
mkdir -p "$WORK/app/node_modules/webgpu/dist/linux-x64" "$WORK/lib" "$WORK/json"
unxz "$KIT/node.xz" "$WORK/node" && chmod +x "$WORK/node" || die "cannot unpack node"
unxz "$KIT/dawn.node.xz" "$WORK/app/node_modules/webgpu/dist/linux-x64/dawn.node" || die "cannot unpack dawn.node"
unxz "$KIT/libstdc++.so.6.xz" "$WORK/lib/libstdc++.so.6" || die "cannot unpack libstdc++"
NODE="$WORK/node"
step "unpacked into $WORK; node $("$NODE" --version 2>&1)"

# 2. The Vulkan loader, only where the machine has none.
LDCONFIG="$(command -v ldconfig || echo /sbin/ldconfig)"
# KIT_LOCAL_VULKAN=1: use the carried loader from /tmp even where one is installed (tests that path).
if [ "${KIT_LOCAL_VULKAN:-0}" != 1 ] && "$LDCONFIG" -p 2>/dev/null | grep -q 'libvulkan\.so\.1'; then
  step "Vulkan loader present: $("$LDCONFIG" -p | grep 'libvulkan\.so\.1' | head -1 | sed 's/^[[:space:]]*//')"
else
  DEB="$(ls "$KIT"/libvulkan1_*.deb | head -1)"
  if [ "${KIT_LOCAL_VULKAN:-0}" != 1 ] && [ "$(id -u)" = 0 ] && command -v dpkg >/dev/null; then
    step "no Vulkan loader: dpkg -x $(basename "$DEB") / && ldconfig"
    dpkg -x "$DEB" / && "$LDCONFIG" || die "could not install the Vulkan loader"
  else
    step "Vulkan loader: unpacking $(basename "$DEB") into $WORK/vulkan (not root, no dpkg, or KIT_LOCAL_VULKAN=1)"
    mkdir -p "$WORK/vulkan"
    if command -v dpkg >/dev/null; then dpkg -x "$DEB" "$WORK/vulkan"; else (cd "$WORK/vulkan" && ar x "$DEB" && tar xf data.tar.*); fi || die "could not unpack the Vulkan loader"
    export LD_LIBRARY_PATH="$WORK/vulkan/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
fi
NVIDIA_ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -f "$NVIDIA_ICD" ]; then
  export VK_DRIVER_FILES="$NVIDIA_ICD" VK_ICD_FILENAMES="$NVIDIA_ICD"
  step "VK_DRIVER_FILES=$NVIDIA_ICD"
fi
# The driver's libraries beside that file (libGLX_nvidia.so.0, which the ICD names), where ldconfig lacks them.
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d"
done

# 3. Dawn must load with the carried Node; where the system's libstdc++ is too old for it, use ours
# (KIT_CARRIED_LIBSTDCXX=1: always, to test that path).
cd "$WORK/app"
if [ "${KIT_CARRIED_LIBSTDCXX:-0}" = 1 ]; then
  step "using the carried libstdc++ (KIT_CARRIED_LIBSTDCXX=1)"
  export LD_LIBRARY_PATH="$WORK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
elif ! err="$("$NODE" -e "await import('webgpu')" --input-type=module 2>&1)"; then
  step "dawn.node does not load with the system's libraries ($(echo "$err" | grep -m1 -o 'GLIBC[A-Z_]*[0-9.]*' || echo "$err" | head -1)); trying the carried libstdc++"
  export LD_LIBRARY_PATH="$WORK/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  "$NODE" -e "await import('webgpu')" --input-type=module || die "dawn.node does not load (see above)"
fi
step "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"

# 4. The adapter: printed, and refused if it is a software driver.
step "adapter check"
PROBE_FLAGS=(--json "$OUT/adapter.json")
[ $ALLOW_SW = 1 ] && PROBE_FLAGS+=(--allow-software)
"$NODE" --enable-source-maps dist/bench/device/probe.js "${PROBE_FLAGS[@]}"
rc=$?
if [ $rc != 0 ]; then
  echo "--- diagnostics ---"
  ls -l /dev/nvidia* /dev/dri 2>&1 | head -20
  [ -f "$NVIDIA_ICD" ] && cat "$NVIDIA_ICD" || echo "no $NVIDIA_ICD"
  ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>&1
  "$LDCONFIG" -p 2>/dev/null | grep -iE 'vulkan|GLX_nvidia|nvidia-glcore' | head
  [ $rc = 3 ] && die "the adapter is a software driver, not the GPU (pass --allow-software for a dry run)" 3
  die "no WebGPU adapter (probe exit status $rc)" "$rc"
fi

# 5. Ours: one bench process per case, each under a time limit, so one slow case loses only itself.
IFS=',' read -r -a CASE_LIST <<< "$CASES"
i=0
for c in "${CASE_LIST[@]}"; do
  IFS=':' read -r mode size batch <<< "$c"
  i=$((i + 1))
  left=$((BUDGET - TORCH_S * TORCH - SECONDS))
  cap=$([ "$mode" = train ] && echo 150 || echo 100)
  [ $DRY = 1 ] && cap=600
  limit=$((left < cap ? left : cap))
  if [ $limit -lt 20 ]; then
    step "ours $c: SKIPPED (${left} s left of the ${BUDGET} s budget)"
    FAILED+=("ours $c: skipped, out of time")
    continue
  fi
  flags=(--size "$size" --batch "$batch" "--$mode" --profile --json "$WORK/json/case-$i.json")
  [ $TUNE = 1 ] && flags+=(--tune "$OUT/tuning.json")
  [ -n "$ITERS" ] && flags+=(--iters "$ITERS")
  step "ours $c (limit ${limit} s): node bench/run.js ${flags[*]}"
  timeout -k 5 "$limit" "$NODE" --enable-source-maps dist/bench/run.js "${flags[@]}"
  rc=$?
  [ $rc = 0 ] || { FAILED+=("ours $c: exit status $rc$([ $rc = 124 ] && echo ' (time limit)')"); step "ours $c FAILED (exit status $rc)"; }
done

# 6. PyTorch on the same cases, same card.
if [ $TORCH = 1 ]; then
  left=$((BUDGET - SECONDS))
  [ $left -lt 60 ] && left=60
  TFLAGS=(--json "$OUT/torch.json" --cases "$CASES" --budget-s $((left * 2 / 3)))
  [ -n "$ITERS" ] && TFLAGS+=(--iters "$ITERS")
  [ $DRY = 1 ] && TFLAGS+=(--no-compile)
  step "PyTorch (limit ${left} s): python3 torch_canet.py ${TFLAGS[*]}"
  timeout -k 5 "$left" python3 "$KIT/torch_canet.py" "${TFLAGS[@]}"
  rc=$?
  if [ $rc != 0 ]; then
    if [ $DRY = 1 ] && [ $rc = 2 ]; then step "PyTorch not usable here (exit status 2): fine for a dry run"
    else FAILED+=("torch: exit status $rc"); step "PyTorch FAILED (exit status $rc)"; fi
  fi
fi

# 7. One JSON of ours, and the comparison.
step "combining"
"$NODE" combine.js --cases-dir "$WORK/json" --torch "$OUT/torch.json" --out "$OUT" || FAILED+=("combine: exit status $?")
step "files in $OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
if [ ${#FAILED[@]} -gt 0 ]; then
  printf '  failed: %s\n' "${FAILED[@]}"
  die "${#FAILED[@]} step(s) failed"
fi
step "done: all steps passed"
