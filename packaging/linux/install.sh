#!/bin/sh
# Install this DP-GLOW folder on a Linux workstation (run it from the unpacked folder):
#
#   sudo ./install.sh              # -> /opt/dpglow-viewer-<version>, /opt/dpglow-viewer (link),
#                                  #    /usr/local/bin/{dpglow-viewer,dpglow}, a menu entry
#   sudo ./install.sh --uninstall  # removes the links and the menu entry (the folder stays)
#
# PREFIX, BINDIR and APPDIR override /opt, /usr/local/bin and /usr/share/applications.
# Versions sit side by side; /opt/dpglow-viewer points at the one installed last, so going
# back is `sudo /opt/dpglow-viewer-<old>/install.sh`.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd -P)
NAME=$(basename "$HERE")
PREFIX=${PREFIX:-/opt}
BINDIR=${BINDIR:-/usr/local/bin}
APPDIR=${APPDIR:-/usr/share/applications}
CURRENT="$PREFIX/dpglow-viewer"

if [ "${1:-}" = "--uninstall" ]; then
    rm -f "$BINDIR/dpglow-viewer" "$BINDIR/dpglow" "$APPDIR/dpglow-viewer.desktop" "$CURRENT"
    echo "removed the links and the menu entry; delete $PREFIX/dpglow-viewer-* to free the space"
    exit 0
fi

TARGET="$PREFIX/$NAME"
if [ "$HERE" != "$(cd "$PREFIX" 2>/dev/null && pwd -P)/$NAME" ]; then
    mkdir -p "$PREFIX"
    rm -rf "$TARGET.partial"
    cp -a "$HERE" "$TARGET.partial"  # copy, then rename: never a half-installed version
    rm -rf "$TARGET"
    mv "$TARGET.partial" "$TARGET"
fi
ln -sfn "$TARGET" "$CURRENT"
mkdir -p "$BINDIR" "$APPDIR"
ln -sf "$CURRENT/dpglow-viewer" "$BINDIR/dpglow-viewer"
ln -sf "$CURRENT/dpglow" "$BINDIR/dpglow"
sed "s|@APP@|$CURRENT|g" "$TARGET/dpglow-viewer.desktop.in" >"$APPDIR/dpglow-viewer.desktop"
echo "installed $("$BINDIR/dpglow" --version) in $TARGET"
echo "check it with: QT_QPA_PLATFORM=offscreen $BINDIR/dpglow-viewer --smoke-test && echo ok"
