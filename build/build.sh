#!/bin/sh
# Build the standalone onedir bundle (no Python needed where it runs):
#   build/build.sh [DIST]   DIST/credbridge/ gets one executable per console
#                           script of pyproject.toml, all sharing _internal/
#                           (default DIST: build/dist); install it with
#                           ./install.sh --bundle DIST/credbridge
# WORK (default build/work, reused between builds) holds the build's own
# virtual environment and PyInstaller's work files. PYTHON picks the
# interpreter the bundle is made from: by default /usr/bin/python3, as for
# ./install.sh (it needs its shared libpython: apt install libpython3-dev).
set -eu

source_dir=$(cd "$(dirname "$0")/.." && pwd)
dist=$(mkdir -p "${1:-$source_dir/build/dist}" && cd "${1:-$source_dir/build/dist}" && pwd)
work=${WORK:-$source_dir/build/work}
if [ -n "${PYTHON:-}" ]; then python=$PYTHON
elif [ -x /usr/bin/python3 ]; then python=/usr/bin/python3
else python=python3
fi

mkdir -p "$work"
[ -x "$work/venv/bin/python" ] || "$python" -m venv "$work/venv"
# pip builds a source tree in place: build from a copy, so setuptools' build/
# output never lands in this directory.
rm -rf "$work/source"
mkdir "$work/source"
cp -R "$source_dir/pyproject.toml" "$source_dir/README.md" "$source_dir/shared" "$source_dir/helpers" "$work/source/"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$work/source[bundle]"
"$work/venv/bin/python" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath "$dist" --workpath "$work/pyinstaller" "$source_dir/build/credbridge.spec"
echo "credbridge: bundle in $dist/credbridge"
