#!/usr/bin/env bash
# Builds the VM's base image into $1 (a fresh cache directory): a Debian 12 minbase root file
# system with systemd as PID 1, Debian's kernel and just the modules the tests need, a busybox
# initrd, and an empty venv at /opt/carlinkd (created with chroot: at host speed, not emulated).
# Everything project-specific (carlinkd's wheel, its dependencies' wheels, the systemd/ files)
# comes in later: dependencies by deps.sh, the rest through the 9p share at boot.
# Needs root (debootstrap, chroot). Output: vmlinuz, initrd.img, rootfs/ (kept for deps.sh).
set -euo pipefail
out=$1
here=$(cd "$(dirname "$0")" && pwd)
suite=bookworm
# The brief's list plus espeak-ng, which README's install line names (carlinkd refuses to start
# without speech output).
packages=systemd,systemd-sysv,udev,dbus,kmod,iproute2,can-utils,python3,python3-venv,ca-certificates,espeak-ng
# Kernel modules the guest loads: CAN (vcan, raw sockets, ISO-TP, the gateway that lets the
# harness tell the daemon's frames apart), and in the initrd virtio block/PCI, ext4 and 9p.
can_modules="vcan can-raw can-isotp can-gw can-bcm"
boot_modules="virtio_pci virtio_blk ext4 9p 9pnet_virtio virtio_net"

log() { printf 'vm-image: %s\n' "$*" >&2; }

# The Debian mirror apt on this host is configured with (deb822 or one-line format).
mirror() {
  local uri
  uri=$(apt-get indextargets --format '$(URI)' 'Created-By: Packages' 2>/dev/null \
        | grep -E "/dists/$suite/main/" | head -n1 | sed -E "s#/dists/$suite/.*##")
  echo "${uri:-http://deb.debian.org/debian}"
}

rootfs=$out/rootfs
mkdir -p "$out"
m=$(mirror)
log "debootstrap $suite ($m) -> $rootfs"
debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$m" >"$out/debootstrap.log" 2>&1 \
  || { tail -n 30 "$out/debootstrap.log" >&2; exit 1; }

# Kernel: Debian's package, unpacked (not installed on the host).
work=$out/kernel
mkdir -p "$work"
kpkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
[ -n "$kpkg" ] || { log "cannot resolve linux-image-amd64 (run apt-get update)"; exit 1; }
log "kernel $kpkg"
(cd "$work" && apt-get download -q -o APT::Sandbox::User=root "$kpkg" >/dev/null)
dpkg -x "$work"/"$kpkg"_*.deb "$work/x"
kver=${kpkg#linux-image-}
cp "$work/x/boot/vmlinuz-$kver" "$out/vmlinuz"
mods=$work/x/lib/modules/$kver
depmod -b "$work/x" "$kver"

# Copy a module and its dependencies (modprobe --show-depends) into a tree; prints insmod lines.
copy_modules() {
  local dest=$1; shift
  local m line path
  for m in "$@"; do
    modprobe -d "$work/x" -S "$kver" --show-depends "$m" | while read -r line; do
      case "$line" in insmod*) ;; *) continue ;; esac
      path=${line#insmod }; path=${path%% *}
      mkdir -p "$dest/$(dirname "${path#"$work/x"}")"
      cp -n "$path" "$dest/${path#"$work/x"}"
      echo "${path#"$work/x"}"
    done
  done
}
copy_modules "$rootfs" $can_modules $boot_modules >/dev/null
cp "$mods"/modules.order "$mods"/modules.builtin* "$rootfs/lib/modules/$kver/"
depmod -b "$rootfs" "$kver"

# initrd: static busybox, the boot modules in dependency order, mount /dev/vda, switch_root.
ird=$out/initrd
mkdir -p "$ird"/{bin,dev,proc,sys,newroot}
cp /bin/busybox "$ird/bin/busybox"
copy_modules "$ird" $boot_modules | awk '!seen[$0]++' >"$ird/modules"
install -m 0755 "$here/initrd-init" "$ird/init"
(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) >"$out/initrd.img"

# Guest configuration: hostname, fstab, the test payload unit (runs only with carlinkd.vmtest on
# the kernel command line), a quiet serial console, volatile journal.
echo carlinkd-vm >"$rootfs/etc/hostname"
printf '/dev/vda / ext4 rw,relatime 0 1\n' >"$rootfs/etc/fstab"
install -m 0644 "$here/carlinkd-vmtest.service" "$rootfs/etc/systemd/system/"
install -m 0755 "$here/carlinkd-vmtest" "$rootfs/usr/local/sbin/"
ln -sf /etc/systemd/system/carlinkd-vmtest.service \
  "$rootfs/etc/systemd/system/multi-user.target.wants/carlinkd-vmtest.service"
ln -sf /dev/null "$rootfs/etc/systemd/system/serial-getty@ttyS0.service"
ln -sf /dev/null "$rootfs/etc/systemd/system/getty@tty1.service"
ln -sf /dev/null "$rootfs/etc/systemd/system/systemd-timesyncd.service"
ln -sf /dev/null "$rootfs/etc/systemd/system/apt-daily.timer"
ln -sf /dev/null "$rootfs/etc/systemd/system/apt-daily-upgrade.timer"
mkdir -p "$rootfs/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\nForwardToConsole=no\n' >"$rootfs/etc/systemd/journald.conf.d/vm.conf"
mkdir -p "$rootfs/mnt/host"

# The venv the README installs into, created here at host speed (python3 -m venv takes ~70 s
# emulated). carlinkd itself is installed into it by the guest, from wheels in the share.
log "venv /opt/carlinkd"
chroot "$rootfs" python3 -m venv /opt/carlinkd
chroot "$rootfs" /opt/carlinkd/bin/python -m pip --version >/dev/null
rm -rf "$work"
log "base image done"
