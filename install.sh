#!/bin/sh
# Install credbridge for the current user, no root needed:
#   ./install.sh              isolated environment in ~/.local/share/credbridge,
#                             fast launchers in ~/.local/bin (BINDIR overrides)
#   ./install.sh --uninstall  remove both (credentials stay where they are)
# Only HOME (and BINDIR) decide where it goes. PYTHON picks the interpreter;
# by default the system's /usr/bin/python3: a helper must not break when a
# pyenv/conda version is switched or removed, and distro builds start faster.
set -eu

prefix="$HOME/.local/share/credbridge"
venv="$prefix/venv"
bindir="${BINDIR:-$HOME/.local/bin}"
if [ -n "${PYTHON:-}" ]; then python=$PYTHON
elif /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null; then python=/usr/bin/python3
else python=python3
fi
source_dir=$(cd "$(dirname "$0")" && pwd)
marker="# credbridge launcher"

uninstall() {
    for launcher in "$bindir"/docker-credential-* "$bindir"/credbridge; do
        [ -f "$launcher" ] && grep -q "^$marker" "$launcher" && {
            case "$launcher" in */credbridge) "$launcher" stop-agent >/dev/null 2>&1 || true ;; esac
            rm -f "$launcher"
        }
    done
    rm -rf "$prefix"
    echo "credbridge: removed $prefix and its launchers in $bindir"
}

if [ "${1:-}" = "--uninstall" ]; then uninstall; exit 0; fi
if [ $# -gt 0 ]; then echo "usage: $0 [--uninstall]" >&2; exit 2; fi

"$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' || {
    echo "credbridge: needs Python >= 3.9 ($python is older); set PYTHON=/path/to/python3" >&2; exit 1; }
"$python" -c 'import venv, ensurepip' 2>/dev/null || {
    echo "credbridge: $python has no venv/ensurepip module: on Debian/Ubuntu run 'sudo apt install python3-venv'" >&2; exit 1; }

umask 077
mkdir -p "$prefix" "$bindir"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$source_dir"
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
case ":$PATH:" in *":$bindir:"*) ;; *) echo "credbridge: add $bindir to your PATH" ;; esac
