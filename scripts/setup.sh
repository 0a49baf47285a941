#!/usr/bin/env bash
# Makes a fresh Linux machine ready to build and run lskbb: a Vulkan driver (Mesa's software
# driver lavapipe when no GPU driver is installed) and a Rust toolchain (rustup) if cargo is
# missing. Safe to run again: it installs only what is absent.
set -euo pipefail
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json >/dev/null 2>&1; then
  echo "no Vulkan driver found: installing Mesa's Vulkan drivers (lavapipe runs on the CPU)" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq mesa-vulkan-drivers >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    exit 0
  fi
  echo "cargo not found: installing Rust with rustup" >&2
  command -v curl >/dev/null 2>&1 || { $SUDO apt-get update -qq; $SUDO apt-get install -y -qq curl ca-certificates build-essential >/dev/null; }
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi
