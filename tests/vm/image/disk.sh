#!/usr/bin/env bash
# disk.sh ROOTFS WHEELHOUSE OUT.qcow2: the boot disk. A copy of the base root file system whose
# /opt/carlinkd venv gets carlinkd's dependencies from the host-downloaded wheels (chroot, no
# index, no network: emulated, pip takes minutes for numpy and cryptography), as ext4 in qcow2.
# carlinkd itself is not installed here: the guest installs it at boot, from the 9p share.
set -euo pipefail
rootfs=$1 wheels=$2 out=$3
tmp=$(mktemp -d "$(dirname "$out")/.disk.XXXXXX")
trap 'umount -l "$tmp/root/mnt/wheels" 2>/dev/null || true; rm -rf "$tmp"' EXIT
cp -a "$rootfs" "$tmp/root"
mkdir -p "$tmp/root/mnt/wheels"
mount --bind "$wheels" "$tmp/root/mnt/wheels"
reqs=$(cd "$wheels" && ls *.whl | grep -v '^carlinkd-' | sed 's/^/\/mnt\/wheels\//')
# shellcheck disable=SC2086
chroot "$tmp/root" /opt/carlinkd/bin/pip install -q --no-index --find-links /mnt/wheels \
  --disable-pip-version-check $reqs
umount "$tmp/root/mnt/wheels"
rmdir "$tmp/root/mnt/wheels"
size_mb=$(( $(du -sm "$tmp/root" | cut -f1) * 13 / 10 + 400 ))
truncate -s "${size_mb}M" "$tmp/disk.raw"
mkfs.ext4 -q -F -L carlinkd-vm -d "$tmp/root" "$tmp/disk.raw"
qemu-img convert -O qcow2 "$tmp/disk.raw" "$out.part"
mv "$out.part" "$out"
