#!/usr/bin/env bash
# Makes a machine ready to build and run lskbb, installing only what is missing and printing
# nothing when nothing is (run.sh and .ci/run call it every time):
# - a GPU driver: on Linux a Vulkan driver (an ICD file that the Vulkan loader finds), else
#   Mesa's, whose lavapipe runs on the CPU; macOS has Metal and Windows DX12, nothing to add;
# - a C linker (cc), which cargo needs to link;
# - Rust (rustup) when cargo is missing, and rustc at least Cargo.toml's rust-version.
# Installs with apt-get (Debian, Ubuntu), as root or through sudo; elsewhere it names the
# packages and stops. Runs under macOS's bash 3.2.
# Testing: LSKBB_ICD_DIRS (colon-separated) replaces the folders searched for Vulkan ICD files;
# LSKBB_SETUP_DRY_RUN=1 prints the commands that would install instead of running them.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dry_run="${LSKBB_SETUP_DRY_RUN:-0}"

say() { echo "setup: $*" >&2; }
die() {
  say "$*"
  exit 1
}
# Runs an installing command, or only shows it in a dry run.
act() {
  if [ "$dry_run" = 1 ]; then
    say "would run: $*"
  else
    "$@"
  fi
}
have() { command -v "$1" >/dev/null 2>&1; }

# True when $1 < $2, both dotted version numbers (1.90, 1.95.0).
version_lt() {
  local IFS=. i
  local -a a b
  read -r -a a <<<"$1"
  read -r -a b <<<"$2"
  for i in 0 1 2; do
    if [ "${a[i]:-0}" -lt "${b[i]:-0}" ]; then return 0; fi
    if [ "${a[i]:-0}" -gt "${b[i]:-0}" ]; then return 1; fi
  done
  return 1
}

case "$(uname -s)" in
  Linux) os=linux ;;
  Darwin) os=macos ;;
  MINGW* | MSYS* | CYGWIN*) os=windows ;;
  *) os=other ;;
esac

# The folders the Vulkan loader reads driver manifests (ICD files) from.
icd_dirs() {
  if [ -n "${LSKBB_ICD_DIRS:-}" ]; then
    echo "$LSKBB_ICD_DIRS"
    return
  fi
  local d out="/usr/share/vulkan/icd.d:/etc/vulkan/icd.d:/usr/local/share/vulkan/icd.d"
  local IFS=:
  for d in ${XDG_CONFIG_DIRS:-/etc/xdg} ${XDG_DATA_DIRS:-} "${HOME:-/nonexistent}/.local/share"; do
    out="$out:$d/vulkan/icd.d"
  done
  echo "$out:/run/opengl-driver/share/vulkan/icd.d"
}

# True when some folder holds an ICD file (a glob loop: empty or missing folders are fine),
# or when the user points the loader at drivers directly.
have_vulkan_driver() {
  if [ -z "${LSKBB_ICD_DIRS:-}" ] && [ -n "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ]; then
    return 0
  fi
  local d f IFS=:
  for d in $(icd_dirs); do
    for f in "$d"/*.json; do
      if [ -e "$f" ]; then return 0; fi
    done
  done
  return 1
}

# True when the Vulkan loader (libvulkan.so.1) is installed; checked only where apt-get can
# install it (libvulkan1): a container can have the NVIDIA ICD file mounted and no loader.
have_vulkan_loader() {
  local l
  for l in ldconfig /sbin/ldconfig /usr/sbin/ldconfig; do
    if have "$l"; then
      # Not `| grep -q`: under pipefail ldconfig's SIGPIPE would read as "absent".
      case "$("$l" -p 2>/dev/null)" in
        *libvulkan.so.1*) return 0 ;;
        *) return 1 ;;
      esac
    fi
  done
  local f
  for f in /usr/lib/*/libvulkan.so.1 /usr/lib/libvulkan.so.1 /usr/lib64/libvulkan.so.1; do
    if [ -e "$f" ]; then return 0; fi
  done
  return 1
}

# What to install, as Debian (apt-get), Fedora (dnf), Arch (pacman) and openSUSE (zypper) name it.
apt_pkgs=""
dnf_pkgs=""
pacman_pkgs=""
zypper_pkgs=""
need() { # need APT DNF PACMAN ZYPPER
  apt_pkgs="$apt_pkgs $1"
  dnf_pkgs="$dnf_pkgs $2"
  pacman_pkgs="$pacman_pkgs $3"
  zypper_pkgs="$zypper_pkgs $4"
}

if [ "$os" = linux ]; then
  if ! have_vulkan_driver; then
    say "no Vulkan driver found: Mesa's Vulkan drivers are needed (lavapipe runs on the CPU)"
    need mesa-vulkan-drivers mesa-vulkan-drivers vulkan-swrast libvulkan_lvp
  elif have apt-get && ! have_vulkan_loader; then
    say "a Vulkan driver is present but not the Vulkan loader (libvulkan.so.1)"
    need libvulkan1 vulkan-loader vulkan-icd-loader libvulkan1
  fi
  if ! have cc; then
    say "no C linker (cc) found: cargo needs one to link"
    need build-essential gcc base-devel gcc
  fi
fi

cargo_present() { have cargo || [ -x "${HOME:-}/.cargo/bin/cargo" ]; }
if ! cargo_present && [ "$os" = linux ] && ! have curl; then
  need "curl ca-certificates" curl curl curl
fi

if [ -n "$apt_pkgs" ]; then
  # shellcheck disable=SC2086 # package names, split on purpose
  set -- $apt_pkgs
  if have apt-get; then
    if [ "$(id -u)" -eq 0 ]; then
      sudo=""
    elif have sudo; then
      sudo="sudo"
    else
      die "not root and no sudo: as root run: apt-get update && apt-get install -y $*"
    fi
    say "installing with apt-get:$apt_pkgs"
    act $sudo apt-get update -qq
    act $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  elif have dnf; then
    die "run \`sudo dnf install$dnf_pkgs\`, then this again"
  elif have pacman; then
    die "run \`sudo pacman -S --needed$pacman_pkgs\`, then this again"
  elif have zypper; then
    die "run \`sudo zypper install$zypper_pkgs\`, then this again"
  else
    die "install with your package manager (Debian:$apt_pkgs; Fedora:$dnf_pkgs; Arch:$pacman_pkgs; openSUSE:$zypper_pkgs), then run this again"
  fi
fi

case "$os" in
  macos)
    # /usr/bin/cc exists before the Command Line Tools are installed (it offers to install
    # them), so ask xcode-select instead.
    xcode-select -p >/dev/null 2>&1 ||
      die "no C linker: run \`xcode-select --install\` (Apple's Command Line Tools), then run this again"
    ;;
  windows)
    # Metal/DX12/Vulkan need no setup; cargo links with MSVC's link.exe, which rustup-init
    # offers to install (Visual Studio Build Tools).
    cargo_present || die "cargo not found: install Rust with rustup-init.exe from https://rustup.rs (accept its Visual Studio Build Tools), then run this again"
    ;;
  other)
    have cc || die "no C linker (cc) found: install a C compiler with your package manager"
    ;;
esac

if ! cargo_present; then
  say "cargo not found: installing Rust with rustup"
  if [ "$dry_run" = 1 ]; then
    say "would run: curl https://sh.rustup.rs | sh -s -- -y --profile minimal"
  else
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  fi
fi

# rustc must meet Cargo.toml's rust-version (what the locked dependencies need). run.sh and
# .ci/run put ~/.cargo/bin first on PATH, so check the rustc they will use.
export PATH="${HOME:-}/.cargo/bin:$PATH"
rustc_version() { # 1.95.0 from "rustc 1.95.0 (59807616e 2026-04-14)"; fails when rustc does
  local v
  v="$(rustc --version 2>/dev/null)" || return 1
  v="${v#rustc }"
  v="${v%% *}"
  echo "${v%%-*}"
}
want="$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$root/Cargo.toml")"
if [ -n "$want" ] && have rustc; then
  if ! got="$(rustc_version)"; then
    # rustup without a default toolchain (installed with --default-toolchain none).
    have rustup || die "\`rustc --version\` fails: reinstall Rust with rustup (https://rustup.rs)"
    say "rustup has no default toolchain: running rustup default stable"
    act rustup default stable
    got="$(rustc_version || echo "$want")"
  fi
  if version_lt "$got" "$want"; then
    have rustup ||
      die "rustc $got is older than $want (Cargo.toml rust-version): install Rust with rustup (https://rustup.rs)"
    say "rustc $got is older than $want (Cargo.toml rust-version): running rustup update"
    act rustup update
    got="$(rustc_version || echo "$want")"
    if [ "$dry_run" != 1 ] && version_lt "$got" "$want"; then
      die "rustc is still $got (a pinned toolchain?): run \`rustup default stable\` or \`rustup override unset\`"
    fi
  fi
fi
