#!/bin/sh
# Install credbridge for the current user, no root needed:
#   ./install.sh              isolated environment in ~/.local/share/credbridge,
#                             fast launchers in ~/.local/bin (BINDIR overrides)
#   ./install.sh --bundle DIR the standalone bundle DIR (made by build/build.sh)
#                             instead: no Python needed; links in ~/.local/bin
#   ./install.sh --uninstall  remove either (credentials stay where they are)
# Only HOME (and BINDIR) decide where it goes. PYTHON picks the interpreter;
# by default the system's /usr/bin/python3: a helper must not break when a
# pyenv/conda version is switched or removed, and distro builds start faster.
set -eu

prefix="$HOME/.local/share/credbridge"
venv="$prefix/venv"
bundle="$prefix/bundle"
bindir="${BINDIR:-$HOME/.local/bin}"
if [ -n "${PYTHON:-}" ]; then python=$PYTHON
elif /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then python=/usr/bin/python3
else python=python3
fi
source_dir=$(cd "$(dirname "$0")" && pwd)
marker="# credbridge launcher"

usage() { echo "usage: $0 [--bundle DIR | --uninstall]" >&2; exit 2; }

# A launcher of ours: a script with our marker line, or a link into our prefix.
is_ours() {
    if [ -L "$1" ]; then
        case $(readlink "$1") in "$prefix"/*) return 0 ;; esac
        return 1
    fi
    [ -f "$1" ] && grep -q "^$marker" "$1"
}

stop_agent() {
    [ -x "$bindir/credbridge" ] && is_ours "$bindir/credbridge" && "$bindir/credbridge" stop-agent >/dev/null 2>&1 || true
}

uninstall() {
    stop_agent
    for launcher in "$bindir"/docker-credential-* "$bindir"/credbridge; do
        is_ours "$launcher" && rm -f "$launcher"
    done
    rm -rf "$prefix"
    echo "credbridge: removed $prefix and its launchers in $bindir"
}

# The bundle's executables replace the launchers as links: nothing runs
# between the caller and the helper. An agent of the old code is stopped
# first (it loads modules from the files being replaced).
install_bundle() {
    [ -x "$1/credbridge" ] && [ -d "$1/_internal" ] || {
        echo "credbridge: $1 is not a credbridge bundle: build one with build/build.sh" >&2; exit 1; }
    umask 077
    mkdir -p "$prefix" "$bindir"
    rm -rf "$bundle.new"
    cp -R "$1" "$bundle.new"
    stop_agent
    rm -rf "$venv" "$bundle"
    mv "$bundle.new" "$bundle"
    for program in "$bundle"/*; do
        [ -f "$program" ] && [ -x "$program" ] || continue
        link="$bindir/${program##*/}"
        ln -sf "$program" "$link.tmp"
        mv -f "$link.tmp" "$link"
        echo "credbridge: installed $link"
    done
}

case "${1:-}" in
    --uninstall) [ $# -eq 1 ] || usage; uninstall; exit 0 ;;
    --bundle) [ $# -eq 2 ] || usage; install_bundle "$2" ;;
    "") ;;
    *) usage ;;
esac
if [ $# -eq 0 ]; then
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' || {
        echo "credbridge: needs Python >= 3.9 ($python is older); set PYTHON=/path/to/python3" >&2; exit 1; }
    "$python" -c 'import venv, ensurepip' 2>/dev/null || {
        echo "credbridge: $python has no venv/ensurepip module: on Debian/Ubuntu run 'sudo apt install python3-venv'" >&2; exit 1; }

    umask 077
    mkdir -p "$prefix" "$bindir"
    stop_agent  # the agent of the old code, bundle or not: it would keep serving it, and load modules replaced under it
    rm -rf "$bundle"
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    # pip builds a source tree in place: install from a copy, so setuptools'
    # build/ output never lands in the checkout (nor races another install).
    staging=$(mktemp -d)
    trap 'rm -rf "$staging"' EXIT
    cp -R "$source_dir/pyproject.toml" "$source_dir/README.md" "$source_dir/shared" "$source_dir/helpers" "$staging/"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$staging"
    # Compiled bytecode ships with the install: launchers never write .pyc at run time.
    "$venv/bin/python" -m compileall -q "$venv/lib" >/dev/null

    # Launchers start Python isolated and without the site machinery (-I -S) and
    # put only this environment's packages on the path: a helper runs on every pull.
    "$venv/bin/python" - "$bindir" "$marker" <<'PY'
import os, sys, sysconfig
from importlib.metadata import distribution

bindir, marker = sys.argv[1], sys.argv[2]
site_packages = sysconfig.get_paths()["purelib"]
for entry in distribution("credbridge").entry_points:
    if entry.group != "console_scripts":
        continue
    module, function = entry.value.split(":")
    path = os.path.join(bindir, entry.name)
    text = (f"#!{sys.executable} -IS\n{marker}\nimport sys\nsys.path.append({site_packages!r})\n"
            f"from {module} import {function}\nsys.exit({function}())\n")
    temporary = path + ".tmp"
    with open(temporary, "w") as launcher:
        launcher.write(text)
    os.chmod(temporary, 0o755)
    os.replace(temporary, path)
    print(f"credbridge: installed {path}")
PY
fi
# Tools find helpers only on PATH: say so now, with the line that fixes it, not at the first failing pull.
case ":$PATH:" in
    *":$bindir:"*) ;;
    *) case $bindir in "$HOME"/*) shown="\$HOME/${bindir#"$HOME"/}" ;; *) shown=$bindir ;; esac
       echo "credbridge: $bindir is not on PATH, so docker, podman and the other tools will not find the helpers:"
       echo "credbridge: run  export PATH=\"$shown:\$PATH\"  and add that line to ~/.profile" ;;
esac
