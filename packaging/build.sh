#!/usr/bin/env bash
# Build the one-folder app dist/dpglow-viewer/ (executables dpglow-viewer and dpglow) with
# PyInstaller, then smoke-test the BUILT executables from outside the source tree.
#
#   bash packaging/build.sh                 # uses ./.venv (create it with `make install`)
#   VENV=/path/to/venv bash packaging/build.sh
#   CLEAN=0 bash packaging/build.sh         # reuse PyInstaller's cache in build/pyinstaller
#   SKIP_SMOKE=1 bash packaging/build.sh    # build only
#   REQUIRE_MODELS=1 bash packaging/build.sh  # fail if no default model got bundled (releases)
#
# Exit status 0 only if the build and every smoke test passed.
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

APP=dpglow-viewer
DIST="$ROOT/dist"
WORK="$ROOT/build/pyinstaller"
OUT="$DIST/$APP"
EXE_SUFFIX=""
case "$(uname -s 2>/dev/null || echo unknown)" in MINGW*|MSYS*|CYGWIN*) EXE_SUFFIX=".exe";; esac
VIEWER="$OUT/$APP$EXE_SUFFIX"
CLI="$OUT/dpglow$EXE_SUFFIX"

# 1. PyInstaller (the `packaging` extra of pyproject.toml) -----------------------------------
if ! "$PY" -c 'import PyInstaller, sys; sys.exit(int(PyInstaller.__version__.split(".")[0]) < 6)' \
        2>/dev/null; then
    echo "build.sh: installing pyinstaller>=6.6 into $VENV"
    "$PY" -m pip install -q "pyinstaller>=6.6"
fi
"$PY" -m PyInstaller --version | sed 's/^/build.sh: PyInstaller /'

# 2. Build --------------------------------------------------------------------------------
clean_flag=(--clean)
[ "${CLEAN:-1}" = "0" ] && clean_flag=()
start=$(date +%s)
"$PY" -m PyInstaller --noconfirm "${clean_flag[@]}" --log-level "${LOG_LEVEL:-WARN}" \
    --distpath "$DIST" --workpath "$WORK" packaging/dpglow.spec
build_s=$(( $(date +%s) - start ))
echo "build.sh: built $OUT in ${build_s}s"
echo "build.sh: PyInstaller's list of modules it could not find: $WORK/dpglow/warn-dpglow.txt"

size() { du -sh "$1" 2>/dev/null | cut -f1; }
echo "build.sh: bundle size $(size "$OUT") ($(find "$OUT" -type f | wc -l) files)"

if [ "${SKIP_SMOKE:-0}" = "1" ]; then
    echo "build.sh: SKIP_SMOKE=1, not testing"
    exit 0
fi

# 3. Smoke tests of the built executables ---------------------------------------------------
# Run from an empty directory with a clean environment, so that nothing can come from the
# source checkout (cwd, PYTHONPATH, DPGLOW_RESOURCES) instead of the bundle.
SMOKE="$ROOT/build/smoke"
rm -rf "$SMOKE"; mkdir -p "$SMOKE/cwd"
run_clean() {
    (cd "$SMOKE/cwd" && env -u PYTHONPATH -u PYTHONHOME -u DPGLOW_RESOURCES -u VIRTUAL_ENV \
        QT_QPA_PLATFORM=offscreen timeout "${SMOKE_TIMEOUT:-600}" "$@")
}
failed=0
check() {  # check NAME COMMAND...: run, log to build/smoke/NAME.log, record the exit code
    local name=$1; shift
    local t0 rc=0
    t0=$(date +%s)
    run_clean "$@" >"$SMOKE/$name.log" 2>&1 || rc=$?
    printf 'build.sh: %-10s exit %s (%ss)  log build/smoke/%s.log\n' \
        "$name" "$rc" "$(( $(date +%s) - t0 ))" "$name"
    if [ "$rc" != 0 ]; then
        failed=1
        tail -n 25 "$SMOKE/$name.log" | sed 's/^/    | /'
    fi
}

# 3a. What PyInstaller tends to miss: pydicom's pylibjpeg plugins, Qt plugins, resources.
DPGLOW_ENTRY=selfcheck check selfcheck "$CLI"
sed 's/^/    /' "$SMOKE/selfcheck.log"

# 3b. The viewer, offscreen.
SHOT="$SMOKE/viewer.png"
check viewer "$VIEWER" --smoke-test --screenshot "$SHOT"
if [ ! -s "$SHOT" ]; then
    echo "build.sh: viewer wrote no screenshot at $SHOT"
    failed=1
else
    echo "build.sh: viewer screenshot $SHOT ($(size "$SHOT"))"
fi

# 3c. The command line, on a bundled default model.
model=""
for name in mixture normal; do
    d="$OUT/_internal/resources/models/$name"
    [ -d "$OUT/resources/models/$name" ] && d="$OUT/resources/models/$name"  # contents_directory='.'
    if [ -f "$d/model.json" ] && [ -f "$d/weights.safetensors" ]; then model="$d"; break; fi
done
if [ -n "$model" ]; then
    check info "$CLI" info "$model"
    sed 's/^/    /' "$SMOKE/info.log"
else
    echo "build.sh: WARNING: no default model bundled (resources/models/{mixture,normal} empty);"
    echo "build.sh:          checking 'dpglow --help' instead of 'dpglow info MODEL'"
    check cli-help "$CLI" --help
    [ "${REQUIRE_MODELS:-0}" = "1" ] && { echo "build.sh: REQUIRE_MODELS=1: failing"; failed=1; }
fi

echo "build.sh: bundle size $(size "$OUT"), build ${build_s}s"
if [ "$failed" != 0 ]; then
    echo "build.sh: SMOKE TEST FAILED" >&2
    exit 1
fi
echo "build.sh: all smoke tests passed"
