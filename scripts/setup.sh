#!/usr/bin/env bash
# Install everything sciplat needs on a fresh Debian 12 machine, then run a command.
#
#   bash scripts/setup.sh up      install, then start the platform (`sciplat up`)
#   bash scripts/setup.sh test    install, then run the test suite
#   bash scripts/setup.sh         install only
#
# Idempotent: a second run only checks. Environment:
#   SCIPLAT_PREFIX   where the shared Python 3.12 and the platform venv live
#                    (default /opt/sciplat as root, ~/.local/share/sciplat otherwise)
#   SCIPLAT_SKIP_APT=1  do not apt-get install (for machines set up by hand)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ "$(id -u)" = 0 ]; then
  prefix=${SCIPLAT_PREFIX:-/opt/sciplat}
else
  prefix=${SCIPLAT_PREFIX:-$HOME/.local/share/sciplat}
fi
venv="$prefix/venv"
log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

# 1. Debian packages: PostgreSQL + pgSphere + q3c (TAP's scale-out backend), STILTS (taplint,
#    the outside judge), Chromium (browser tests), patchelf (relocating Python 3.12), rclone
#    (the workspace tests' standard WebDAV client).
apt_packages=(patchelf postgresql-15 postgresql-15-pgsphere postgresql-15-q3c stilts chromium
              chromium-driver fonts-dejavu-core rsync rclone)
if [ "$(id -u)" = 0 ] && [ "${SCIPLAT_SKIP_APT:-0}" != 1 ]; then
  missing=()
  for p in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi

# 2. Python 3.12 that every Unix account can run. The image's pyenv interpreters live under
#    root's home (0700), so a lab running as another uid could not start from a venv built on
#    them. Copy the prefix to $prefix/python and point its RUNPATH at the copy.
py_src=""
candidates=("${SCIPLAT_PYTHON:-}")
if command -v pyenv >/dev/null; then
  candidates+=($(ls -d "$(pyenv root)"/versions/3.12*/bin/python3.12 2>/dev/null | sort -V -r))
fi
candidates+=(/usr/local/bin/python3.12 /usr/bin/python3.12 "$(command -v python3.12 2>/dev/null || true)")
for cand in "${candidates[@]}"; do
  if [ -n "$cand" ] && "$cand" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
    py_src=$cand; break
  fi
done
[ -n "$py_src" ] || { echo "setup: Python 3.12 not found (set SCIPLAT_PYTHON)" >&2; exit 1; }
py_prefix=$("$py_src" -c 'import sys; print(sys.base_prefix)')
shared_py="$prefix/python/bin/python3.12"
if [ ! -x "$shared_py" ]; then
  log "copying Python 3.12 from $py_prefix to $prefix/python"
  mkdir -p "$prefix"
  rm -rf "$prefix/python.tmp"
  cp -a "$py_prefix" "$prefix/python.tmp"
  if command -v patchelf >/dev/null && readelf -d "$prefix/python.tmp/bin/python3.12" | grep -q RUNPATH; then
    patchelf --set-rpath '$ORIGIN/../lib' "$prefix/python.tmp/bin/python3.12"
  fi
  chmod -R a+rX "$prefix/python.tmp"
  mv "$prefix/python.tmp" "$prefix/python"
fi
chmod a+rx "$prefix"

# 3. The platform venv ("recommended" image): sciplat and the science stack.
if [ ! -x "$venv/bin/python" ]; then
  log "creating venv $venv"
  "$shared_py" -m venv "$venv"
fi
stamp="$venv/.sciplat-installed"
want=$( (echo "$here"; cat "$here/pyproject.toml" "$here/setup.py" "$here/images/recommended/requirements.txt") | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  log "pip install (the science stack takes a few minutes the first time)"
  "$venv/bin/python" -m pip install -q --upgrade pip
  # Editable when lab users can read the checkout, a copy otherwise (labs import sciplat as
  # their own uid, and e.g. a mktemp -d checkout is 0700).
  editable=(-e)
  if [ "$(id -u)" = 0 ] && ! setpriv --reuid=65534 --regid=65534 --clear-groups test -r "$here/pyproject.toml" 2>/dev/null; then
    log "checkout not readable by other accounts: installing a copy of sciplat (rerun after changes)"
    editable=()
  fi
  "$venv/bin/python" -m pip install -q --progress-bar off -r "$here/images/recommended/requirements.txt" "${editable[@]}" "$here[dev]" 2> >(grep -v -e "is ignored: it is neither" -e BuildBackendWarning >&2)
  echo "$want" > "$stamp"
fi
chmod -R a+rX "$venv" 2>/dev/null || true

# 4. Node pieces: configurable-http-proxy (the hub's proxy).
if [ ! -x "$prefix/node/node_modules/.bin/configurable-http-proxy" ]; then
  log "npm install configurable-http-proxy"
  npm install --silent --no-fund --no-audit --prefix "$prefix/node" configurable-http-proxy@5 >/dev/null 2>&1
fi
if [ ! -f "$prefix/node/node_modules/aladin-lite/dist/aladin.js" ]; then
  log "npm install aladin-lite (the portal's all-sky view)"
  npm install --silent --no-fund --no-audit --prefix "$prefix/node" aladin-lite@3 >/dev/null 2>&1
fi
chmod -R a+rX "$prefix/node"

# 5. The JupyterLab extension @sciplat/lab, built here and installed prebuilt into the venv (labs
#    never build at start), plus its server extension's enable file. Rebuilt only when its
#    sources, lock file or the venv's JupyterLab change. `test` also needs its node_modules
#    (the TypeScript unit tests run from them).
build_labext() {
  local src="$here/lab-extensions/sciplat-lab" mode=$1
  local dest="$venv/share/jupyter/labextensions/@sciplat/lab"
  local core="$venv/share/jupyter/lab/static/package.json"
  local stamp="$venv/.sciplat-labext" lock want
  lock=$(sha256sum "$src/package-lock.json" | cut -c1-16)
  want=$( (cd "$src" && cat package.json package-lock.json tsconfig.json src/*.ts style/*; cat "$core") | sha256sum | cut -c1-16)
  local build=0
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$dest/package.json" ] || build=1
  if { ((build)) || [ "$mode" = test ]; } && [ "$(cat "$src/node_modules/.sciplat-lock" 2>/dev/null)" != "$lock" ]; then
    # `npm install` from the committed lock file (versions pinned), not `npm ci`: the registry
    # here serves no other platforms' optional binaries, so the lock lacks them and `npm ci`
    # refuses it; `npm install` leaves the lock file as it is.
    log "npm install (JupyterLab extension tool chain, from package-lock.json)"
    (cd "$src" && npm install --no-audit --no-fund --prefer-offline --loglevel=error) >/dev/null
    echo "$lock" > "$src/node_modules/.sciplat-lock"
  fi
  if ((build)); then
    log "building the JupyterLab extension @sciplat/lab"
    (cd "$src" && rm -rf lib labextension tsconfig.tsbuildinfo && node_modules/.bin/tsc -p tsconfig.json \
      && "$venv/bin/jupyter-builder" build --core-package-file "$core" . >/dev/null)
    mkdir -p "$(dirname "$dest")"
    rm -rf "$dest.tmp" && cp -r "$src/labextension" "$dest.tmp" && rm -rf "$dest" && mv "$dest.tmp" "$dest"
    chmod -R a+rX "$dest"
    echo "$want" > "$stamp"
  fi
  local conf="$here/lab-extensions/jupyter-config/jupyter_server_config.d/sciplat_lab.json"
  if [ -f "$conf" ]; then
    mkdir -p "$venv/etc/jupyter/jupyter_server_config.d"
    cp "$conf" "$venv/etc/jupyter/jupyter_server_config.d/" && chmod -R a+rX "$venv/etc/jupyter"
  fi
}
if [ "${1:-}" = up ] || [ "${1:-}" = test ] || [ -z "${1:-}" ]; then
  build_labext "${1:-}"
fi

export PATH="$venv/bin:$prefix/node/node_modules/.bin:$PATH"
export SCIPLAT_PREFIX="$prefix"

case "${1:-}" in
  up)   shift; exec "$venv/bin/sciplat" up "$@" ;;
  test) shift; exec bash "$here/scripts/test.sh" "$@" ;;
  "")   log "installed: $venv (activate with: source $venv/bin/activate)" ;;
  *)    echo "usage: setup.sh [up|test] [args...]" >&2; exit 2 ;;
esac
