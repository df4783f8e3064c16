#!/usr/bin/env bash
# Build the one-folder app dist/dpglow-viewer-<version>/ (executables dpglow-viewer and dpglow)
# with PyInstaller, then smoke-test the BUILT executables from outside the source tree.
#
#   bash packaging/build.sh                   # uses ./.venv (create it with `make install`)
#   VENV=/path/to/venv bash packaging/build.sh
#   CLEAN=0 bash packaging/build.sh           # reuse PyInstaller's cache in build/pyinstaller
#   SKIP_SMOKE=1 bash packaging/build.sh      # build only
#   REQUIRE_MODELS=1 bash packaging/build.sh  # fail if no default model got bundled (releases)
#   ALLOW_CUDA=1 bash packaging/build.sh      # a CUDA variant (see packaging/README.md)
#   ARCHIVE=1 bash packaging/build.sh         # also dist/dpglow-viewer-<version>-<os>-<arch>.tar.gz
#
# Exit status 0 only if the build and every smoke test passed. Figures: build/smoke/summary.txt.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
[ -x "$PY" ] || PY="$VENV/Scripts/python.exe"  # Windows (Git Bash / MSYS)
if [ ! -x "$PY" ]; then
    echo "build.sh: no Python in $VENV; run 'make install' first (or set VENV=...)" >&2
    exit 2
fi

VERSION=$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
APP=dpglow-viewer
DIST="$ROOT/dist"
WORK="$ROOT/build/pyinstaller"
OUT="$DIST/$APP-$VERSION"
OS="$(uname -s 2>/dev/null || echo unknown)"
EXE_SUFFIX=""
case "$OS" in MINGW*|MSYS*|CYGWIN*) EXE_SUFFIX=".exe";; esac
VIEWER="$OUT/$APP$EXE_SUFFIX"
CLI="$OUT/dpglow$EXE_SUFFIX"
SMOKE="$ROOT/build/smoke"
SUMMARY="$SMOKE/summary.txt"
say() { echo "build.sh: $*"; }

# 1. PyInstaller (the `packaging` extra of pyproject.toml) -----------------------------------
if ! "$PY" -c 'import PyInstaller, sys; sys.exit(int(PyInstaller.__version__.split(".")[0]) != 6)' \
        2>/dev/null; then
    say "installing the packaging extra (PyInstaller 6) into $VENV"
    "$PY" -m pip install -q -e "$ROOT[packaging]"
fi
say "PyInstaller $("$PY" -m PyInstaller --version), dp-glow $VERSION"

# 2. Build --------------------------------------------------------------------------------
clean_flag=(--clean)
[ "${CLEAN:-1}" = "0" ] && clean_flag=()
start=$(date +%s)
"$PY" -m PyInstaller --noconfirm ${clean_flag[@]+"${clean_flag[@]}"} --log-level "${LOG_LEVEL:-WARN}" \
    --distpath "$DIST" --workpath "$WORK" packaging/dpglow.spec
build_s=$(( $(date +%s) - start ))
say "built $OUT in ${build_s}s"
say "modules PyInstaller could not find (mostly optional): $WORK/dpglow/warn-dpglow.txt"
if [ "$OS" = Linux ]; then  # the installer for IT staff, next to the executables
    cp packaging/linux/install.sh packaging/linux/dpglow-viewer.desktop.in "$OUT/"
fi

size() { du -sh "$1" 2>/dev/null | cut -f1; }
n_files=$(find "$OUT" -type f | wc -l)
say "bundle size $(size "$OUT") ($n_files files)"

# A CPU build must not carry CUDA: torch's CUDA wheels add ~3 GB of libraries.
cuda_libs=$(find "$OUT" -type f \( -name '*.so*' -o -iname '*.dll' -o -name '*.dylib' \) \
    \( -iname '*cudart*' -o -iname '*cublas*' -o -iname '*cudnn*' -o -iname '*nccl*' \
       -o -iname '*cusparse*' -o -iname '*cufft*' -o -iname '*nvrtc*' \) | head -5)
if [ -n "$cuda_libs" ] && [ "${ALLOW_CUDA:-0}" != "1" ]; then
    say "CUDA libraries in a CPU build (install the CPU torch wheel, or set ALLOW_CUDA=1):"
    echo "$cuda_libs" | sed 's/^/    /'
    exit 1
fi

if [ "${SKIP_SMOKE:-0}" = "1" ]; then
    say "SKIP_SMOKE=1, not testing"
    exit 0
fi

# 3. Smoke tests of the built executables ---------------------------------------------------
# Run from an empty directory with a clean environment, so that nothing can come from the
# source checkout (cwd, PYTHONPATH, DPGLOW_RESOURCES) instead of the bundle, and with their
# own settings folder, so that the builder's viewer settings are neither used nor changed.
rm -rf "$SMOKE"; mkdir -p "$SMOKE/cwd"
limit=()  # macOS has no `timeout`
command -v timeout >/dev/null && limit=(timeout "${SMOKE_TIMEOUT:-600}")
run_clean() {
    (cd "$SMOKE/cwd" && env -u PYTHONPATH -u PYTHONHOME -u DPGLOW_RESOURCES -u VIRTUAL_ENV \
        QT_QPA_PLATFORM=offscreen XDG_CONFIG_HOME="$SMOKE/config" ${limit[@]+"${limit[@]}"} "$@")
}
now() { echo "${EPOCHREALTIME:-$(date +%s)}"; }  # bash 5: microseconds; else seconds
failed=0
check() {  # check NAME COMMAND...: run, log to build/smoke/NAME.log, record the exit code
    local name=$1; shift
    local t0 rc=0
    t0=$(now)
    run_clean "$@" >"$SMOKE/$name.log" 2>&1 || rc=$?
    printf 'build.sh: %-14s exit %s (%ss)  log build/smoke/%s.log\n' \
        "$name" "$rc" "$(awk "BEGIN{printf \"%.1f\", $(now) - $t0}")" "$name"
    if [ "$rc" != 0 ]; then
        failed=1
        tail -n 25 "$SMOKE/$name.log" | sed 's/^/    | /'
    fi
}

# 3a. What PyInstaller tends to miss: pydicom's codecs (JPEG, JPEG 2000, RLE), Qt plugins,
#     package data read at import time, the resources.
DPGLOW_ENTRY=selfcheck check selfcheck "$CLI"
sed 's/^/    /' "$SMOKE/selfcheck.log"

# 3b. The version, one number everywhere.
check version "$CLI" --version
if ! grep -qx "dpglow $VERSION" "$SMOKE/version.log"; then
    say "the built CLI reports '$(cat "$SMOKE/version.log")', not 'dpglow $VERSION'"; failed=1
fi

# 3c. The viewer, offscreen, on a JPEG 2000 and an RLE chest DICOM (synthetic, fake patient).
"$PY" packaging/smoke_samples.py write "$SMOKE/samples" >/dev/null
SHOT="$SMOKE/viewer.png"
check viewer-j2k "$VIEWER" --smoke-test --screenshot "$SHOT" "$SMOKE/samples/chest_j2k.dcm"
check viewer-rle "$VIEWER" --smoke-test "$SMOKE/samples/chest_rle.dcm"
if [ ! -s "$SHOT" ]; then
    say "viewer wrote no screenshot at $SHOT"; failed=1
else
    say "viewer screenshot $SHOT ($(size "$SHOT"))"
fi
# The same on a real X server, through the bundled xcb platform plugin, where Xvfb exists.
if command -v xvfb-run >/dev/null; then
    before=$failed
    check viewer-x11 xvfb-run -a -s "-screen 0 1920x1080x24" env QT_QPA_PLATFORM=xcb \
        "$VIEWER" --smoke-test --screenshot "$SMOKE/viewer-x11.png"
    if grep -q "platform plugin needs system" "$SMOKE/viewer-x11.log"; then
        failed=$before  # the build machine lacks Qt's system libraries: not the bundle's fault
        say "WARNING: X11 not checked: this machine lacks the xcb libraries the log names"
    fi
elif [ "$OS" = Linux ]; then
    say "no xvfb-run: the xcb (X11) start was not checked"
fi

# 3d. The command line: privatise both samples to de-identified DICOM, checked by the build's
#     Python (not by the bundle itself); then describe a bundled model.
check privatize "$CLI" privatize "$SMOKE/samples" --e-px 100 --format dicom --no-progress \
    --out "$SMOKE/release" --ledger "$SMOKE/ledger.sqlite"
"$PY" packaging/smoke_samples.py verify "$SMOKE/release" "$SMOKE/ledger.sqlite" 2 || failed=1
# Real chest DICOMs where the project's data folder is beside the checkout (CI has it; it is
# never bundled): CR/DX, MONOCHROME1, JPEG baseline, a file without file meta.
REAL="${REAL_DICOM_DIR:-$ROOT/../shared/data/dicom}"
if [ -d "$REAL" ]; then
    n_real=$(find "$REAL" -type f -iname '*.dcm' | wc -l | tr -d ' ')
    # (their headers do not all say whether text is burned in, and one has no PatientID; these
    # are known test files, each from a patient of its own)
    check real-dicom "$CLI" privatize "$REAL" --e-px 100 --format dicom --no-progress \
        --allow-unknown-burned-in --confirm-one-patient-per-image \
        --out "$SMOKE/real" --ledger "$SMOKE/real.sqlite"
    "$PY" packaging/smoke_samples.py verify "$SMOKE/real" "$SMOKE/real.sqlite" "$n_real" \
        || failed=1
    rm -rf "$SMOKE/real"  # privatised, but derived from real images: do not leave them about
else
    say "no real DICOMs at $REAL (set REAL_DICOM_DIR): checked the synthetic samples only"
fi
model="$OUT/_internal/resources/models/mixture"
if [ -f "$model/model.json" ] && [ -f "$model/weights.safetensors" ]; then
    check info "$CLI" info "$model"
elif [ "${REQUIRE_MODELS:-0}" = "1" ]; then
    say "REQUIRE_MODELS=1 but no default model was bundled"; failed=1
else
    say "WARNING: no default model bundled (resources/models/ empty): the viewer will ask for one"
fi

# 3e. Linux: the installer, into a scratch prefix, then the installed command.
if [ "$OS" = Linux ]; then
    check install env PREFIX="$SMOKE/install/opt" BINDIR="$SMOKE/install/bin" \
        APPDIR="$SMOKE/install/applications" sh "$OUT/install.sh"
    check installed "$SMOKE/install/bin/dpglow" --version
    rm -rf "$SMOKE/install"  # a second 1 GB copy of the bundle
fi

# 4. Figures ----------------------------------------------------------------------------
startup() { sed -n 's/^start-up, seconds since the process started: //p' "$SMOKE/$1.log"; }
{
    echo "dp-glow $VERSION, $(uname -srm), $(nproc 2>/dev/null || echo ?) cores, $(date -u +%F)"
    echo "bundle: $OUT, $(size "$OUT"), $n_files files, built in ${build_s}s"
    echo "viewer start-up (JPEG 2000 DICOM, first run): $(startup viewer-j2k)"
    echo "viewer start-up (RLE DICOM, second run):      $(startup viewer-rle)"
} >"$SUMMARY"
cat "$SUMMARY"

if [ "${ARCHIVE:-0}" = "1" ]; then
    arch="$DIST/$APP-$VERSION-$(uname -s | tr 'A-Z' 'a-z')-$(uname -m).tar.gz"
    tar -C "$DIST" -czf "$arch.partial" "$APP-$VERSION" && mv "$arch.partial" "$arch"
    say "archive $arch ($(size "$arch")); sha256 $( (sha256sum "$arch" 2>/dev/null || shasum -a 256 "$arch") | cut -d' ' -f1)"
fi

if [ "$failed" != 0 ]; then
    echo "build.sh: SMOKE TEST FAILED" >&2
    exit 1
fi
say "all smoke tests passed"
