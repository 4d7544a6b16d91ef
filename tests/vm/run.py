#!/usr/bin/env python3
"""The VM harness (issue 8): carlinkd installed and run as on a head unit, checked end to end.

``make vm``, ``python -m tests.vm.run`` or ``tests/vm/run.py``: builds (or reuses) a Debian 12 image,
builds carlinkd's wheel and downloads its dependencies' wheels on the host, boots the image with
qemu (KVM where it is usable, software emulation otherwise) with those wheels and the project's
``systemd/`` files in a 9p share, lets the guest install carlinkd the README's way and run the
checks (``tests/vm/guest/main.sh``), then prints one PASS/FAIL/SKIP line per check and a summary.

Exit codes: 0 all checks passed (or the machine cannot run the VM at all: one line says why),
1 a check failed or the VM did not finish, 2 the image or the wheels could not be built.

Cache: ``${XDG_CACHE_HOME:-~/.cache}/carlinkd-vm/<hash of tests/vm/image/*>/`` holds the kernel,
the initrd and the base root file system (rebuilt only when that recipe changes), and
``disk-<hash>.qcow2``, the base plus carlinkd's dependencies in /opt/carlinkd (rebuilt when the
set of dependency wheels changes). The disk is booted with ``snapshot=on``: runs never change it.

Environment: CARLINKD_VM_ACCEL=kvm|tcg forces the accelerator; CARLINKD_VM_TIMEOUT (seconds,
default 600) bounds the boot; CARLINKD_VM_KEEP=1 keeps the share (logs) of the last run.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
IMAGE_RECIPE = HERE / "image"
GUEST = HERE / "guest"

# Host tools the harness needs; Debian package in brackets (system-packages.txt lists them).
TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86", "qemu-img": "qemu-utils",
    "debootstrap": "debootstrap", "mkfs.ext4": "e2fsprogs", "cpio": "cpio",
    "modprobe": "kmod", "depmod": "kmod",
}
BUSYBOX = Path("/bin/busybox")  # busybox-static: the initrd's only program
GUEST_PYTHON = "3.11"  # Debian 12's python3
# Tags of wheels the guest can install (glibc 2.36, x86_64, CPython 3.11).
PLATFORMS = ["manylinux_2_36_x86_64", "manylinux_2_34_x86_64", "manylinux_2_28_x86_64",
             "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux_2_12_x86_64", "manylinux2010_x86_64", "manylinux_2_5_x86_64",
             "manylinux1_x86_64"]
DEFAULT_TIMEOUT_S = 600.0
RESULT_STATES = ("PASS", "FAIL", "SKIP")


class Unavailable(Exception):
    """This machine cannot run the VM at all (a one-line reason; not a failure)."""


class BuildError(Exception):
    """The image or the wheels could not be built."""


@dataclass(frozen=True)
class Image:
    """A bootable image: kernel, initrd and a qcow2 disk."""

    kernel: Path
    initrd: Path
    disk: Path


def log(text: str) -> None:
    """A progress line on stderr."""
    print(f"vm: {text}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/carlinkd-vm``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "carlinkd-vm"


def digest(paths: list[Path], extra: str = "") -> str:
    """A short hash over files' names and contents (sorted) and an extra string."""
    h = hashlib.sha256(extra.encode())
    for path in sorted(paths):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def recipe_key() -> str:
    """The base image's cache key: everything under tests/vm/image/."""
    return digest([p for p in IMAGE_RECIPE.iterdir() if p.is_file()])


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock file, so two runs never build the same cache entry at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def missing_tools() -> list[str]:
    """Debian packages whose programs are missing on this host."""
    missing = {pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None
               and not Path("/usr/sbin", tool).exists() and not Path("/sbin", tool).exists()}
    if not BUSYBOX.exists():
        missing.add("busybox-static")
    return sorted(missing)


def ensure_tools() -> None:
    """Install missing host packages (scripts/ensure-system-packages) when root; else Unavailable."""
    missing = missing_tools()
    if not missing:
        return
    installer = ROOT / "scripts" / "ensure-system-packages"
    if os.geteuid() == 0 and shutil.which("apt-get") and installer.exists():
        subprocess.run([str(installer)], check=False, capture_output=True)
        if not missing_tools():
            log(f"installed {' '.join(missing)}")
            return
        missing = missing_tools()
    raise Unavailable(f"cannot run qemu here: {', '.join(missing)} missing and not installable")


def accelerator() -> str:
    """``kvm`` where /dev/kvm opens and the host is not itself a virtual machine, else ``tcg``.

    A nested /dev/kvm (this host being a paravirtualised guest) was measured far slower than
    software emulation for a stock kernel, or aborting; CARLINKD_VM_ACCEL overrides the guess.
    """
    forced = os.environ.get("CARLINKD_VM_ACCEL", "").strip().lower()
    if forced in ("kvm", "tcg"):
        return forced
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return "tcg"
    os.close(fd)
    with contextlib.suppress(OSError):
        if " hypervisor" in Path("/proc/cpuinfo").read_text():
            return "tcg"
    return "kvm"


def run(cmd: list[str], what: str, **kw: object) -> subprocess.CompletedProcess[str]:
    """Run a build step; BuildError with the output's tail when it fails."""
    proc = subprocess.run(cmd, text=True, capture_output=True, **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise BuildError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return proc  # type: ignore[no-any-return]


def build_wheels(dest: Path) -> Path:
    """carlinkd's wheel (fresh every run) and its dependencies' wheels (cached per pyproject.toml)
    for the guest's CPython 3.11 on manylinux x86_64, all in ``dest``. Returns the deps folder."""
    dest.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    run([py, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest),
         str(ROOT)], "building carlinkd's wheel")
    wheel = next(dest.glob("carlinkd-*.whl"))
    deps = cache_root() / "wheels" / digest([ROOT / "pyproject.toml"], GUEST_PYTHON)
    with locked(deps.with_suffix(".lock")):
        if not (deps / ".complete").exists():
            log("downloading dependency wheels")
            shutil.rmtree(deps, ignore_errors=True)
            cmd = [py, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                   "--only-binary=:all:", "--python-version", GUEST_PYTHON,
                   "--implementation", "cp", "--abi", "cp311", "--abi", "abi3", "--abi", "none",
                   *[a for p in PLATFORMS for a in ("--platform", p)], "--platform", "any",
                   "-d", str(deps), str(wheel)]
            run(cmd, "pip download of carlinkd's dependencies")
            (deps / wheel.name).unlink(missing_ok=True)
            (deps / ".complete").touch()
            for old in deps.parent.iterdir():  # wheels for an earlier pyproject.toml
                if old.is_dir() and old != deps:
                    shutil.rmtree(old, ignore_errors=True)
    for whl in deps.glob("*.whl"):
        shutil.copy2(whl, dest / whl.name)
    return deps


def require_root() -> None:
    """Building the image needs root (debootstrap, chroot, bind mounts); booting does not."""
    if os.geteuid() != 0:
        raise Unavailable("building the VM image needs root (debootstrap, chroot) and none is cached")


def build_image(deps: Path) -> Image:
    """The cached image for the current recipe and dependency set, built where missing."""
    base = cache_root() / recipe_key()
    deps_key = digest(list(deps.glob("*.whl")))
    disk = base / f"disk-{deps_key}.qcow2"
    with locked(base.with_suffix(".lock")):
        if not (base / ".complete").exists() or not disk.exists():
            require_root()
        if not (base / ".complete").exists():
            shutil.rmtree(base, ignore_errors=True)
            log(f"building the base image in {base} (debootstrap, ~1.5 min)")
            t0 = time.monotonic()
            run(["bash", str(IMAGE_RECIPE / "build.sh"), str(base)], "building the base image")
            (base / ".complete").touch()
            log(f"base image built in {time.monotonic() - t0:.0f}s")
            for old in cache_root().iterdir():  # earlier recipes' images
                if old.is_dir() and old.name not in (base.name, "wheels"):
                    shutil.rmtree(old, ignore_errors=True)
        if not disk.exists():
            log("building the boot disk (base + dependency wheels in /opt/carlinkd)")
            t0 = time.monotonic()
            run(["bash", str(IMAGE_RECIPE / "disk.sh"), str(base / "rootfs"), str(deps), str(disk)],
                "building the boot disk")
            log(f"boot disk built in {time.monotonic() - t0:.0f}s")
            for old in base.glob("disk-*.qcow2"):
                if old != disk:
                    old.unlink()
    return Image(base / "vmlinuz", base / "initrd.img", disk)


def prepare_share(share: Path) -> None:
    """The 9p share: the guest scripts, the project's systemd/ files, an empty out/."""
    shutil.copytree(GUEST, share / "guest")
    shutil.copytree(ROOT / "systemd", share / "systemd")
    (share / "out").mkdir()


def qemu_command(image: Image, share: Path, accel: str, guest_limit: int) -> list[str]:
    """The qemu command line: no display, serial console to a file, no reboot, snapshot disk."""
    cpu = ["-accel", "kvm", "-cpu", "host"] if accel == "kvm" else \
        ["-accel", "tcg,thread=multi", "-cpu", "max"]
    return [
        "qemu-system-x86_64", *cpu, "-m", "1024", "-smp", "2",
        "-display", "none", "-monitor", "none", "-serial", f"file:{share / 'out' / 'console.log'}",
        "-no-reboot", "-kernel", str(image.kernel), "-initrd", str(image.initrd),
        "-append", f"root=/dev/vda console=ttyS0 panic=-1 quiet carlinkd.vmtest={guest_limit}",
        "-drive", f"file={image.disk},if=virtio,format=qcow2,snapshot=on",
        "-virtfs", f"local,path={share},mount_tag=host,security_model=none,id=host",
        # No network at all: the wheels come through the share.
        "-nic", "none",
    ]


def boot(image: Image, share: Path, accel: str, timeout: float) -> int | None:
    """Boot, wait for power-off or the timeout (then kill qemu); the guest's exit code or None."""
    guest_limit = int(timeout) - 60  # the guest gives up first and still powers off
    cmd = qemu_command(image, share, accel, guest_limit)
    log(f"booting ({accel}, timeout {timeout:.0f}s)")
    with (share / "out" / "qemu.log").open("w") as qlog:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=qlog, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            log(f"VM killed after {timeout:.0f}s")
            return None
    code_file = share / "out" / "exit-code"
    if proc.returncode != 0:
        log(f"qemu exited {proc.returncode}: {(share / 'out' / 'qemu.log').read_text()[-500:]}")
    return int(code_file.read_text().strip()) if code_file.exists() else None


def report(share: Path, guest_code: int | None) -> int:
    """Print one line per check and a summary; the harness's exit code."""
    out = share / "out"
    lines = (out / "results").read_text().splitlines() if (out / "results").exists() else []
    counts = dict.fromkeys(RESULT_STATES, 0)
    for line in lines:
        state = line.split(" ", 1)[0]
        if state in counts:
            counts[state] += 1
            print(line, flush=True)
    if guest_code is None or not lines:
        why = "did not finish (timeout or crash)" if guest_code is None else f"exited {guest_code}"
        print(f"FAIL vm-run the guest {why}; console: " + " | ".join(_tail(out / "console.log", 5)),
              flush=True)
        for line in _tail(out / "guest.log", 20):
            print(f"  guest: {line}", flush=True)
        counts["FAIL"] += 1
    elif guest_code != 0 and counts["FAIL"] == 0:
        print(f"FAIL vm-run the guest exited {guest_code} without a failed check", flush=True)
        counts["FAIL"] += 1
    ok = counts["FAIL"] == 0 and counts["PASS"] > 0
    print(f"vm: {counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped", flush=True)
    return 0 if ok else 1


def _tail(path: Path, n: int) -> list[str]:
    if not path.exists():
        return []
    return path.read_text(errors="replace").strip().splitlines()[-n:]


def main(argv: list[str] | None = None) -> int:
    """Build if needed, boot, check, report."""
    parser = argparse.ArgumentParser(prog="tests/vm/run.py", description=__doc__.split("\n")[0])
    parser.add_argument("--timeout", type=float,
                        default=float(os.environ.get("CARLINKD_VM_TIMEOUT", DEFAULT_TIMEOUT_S)),
                        help="seconds before the VM is killed (default 600)")
    parser.add_argument("--keep", action="store_true", default=bool(os.environ.get("CARLINKD_VM_KEEP")),
                        help="keep the share with the guest's logs and print where it is")
    parser.add_argument("--build-only", action="store_true", help="build the image, do not boot")
    args = parser.parse_args(argv)
    t_start = time.monotonic()
    try:
        if sys.platform != "linux" or os.uname().machine != "x86_64":
            raise Unavailable(f"the VM image is x86_64 Linux; this is {sys.platform}/{os.uname().machine}")
        ensure_tools()
        share = Path(tempfile.mkdtemp(prefix="carlinkd-vm-"))
        try:
            deps = build_wheels(share / "wheels")
            image = build_image(deps)
            log(f"image ready after {time.monotonic() - t_start:.0f}s: {image.disk}")
            if args.build_only:
                return 0
            prepare_share(share)
            t_boot = time.monotonic()
            code = boot(image, share, accelerator(), args.timeout)
            log(f"VM ran {time.monotonic() - t_boot:.0f}s; total {time.monotonic() - t_start:.0f}s")
            return report(share, code)
        finally:
            if args.keep:
                log(f"logs kept in {share}/out")
            else:
                shutil.rmtree(share, ignore_errors=True)
    except Unavailable as why:
        print(f"vm: SKIP: {why}", flush=True)
        return 0
    except BuildError as err:
        print(f"vm: FAIL: {err}", flush=True)
        return 2


if __name__ == "__main__":
    if __package__ in (None, ""):
        sys.path.insert(0, str(ROOT))
    sys.exit(main())
