"""Run hardware/install into a Debian sid root and check the result.

The full test builds (once, then cached) a minimal sid root with mmdebstrap,
installs into a copy of it twice, and checks that the second run changes no
file. It needs root for chroot and the network for Debian's packages and
PyPI; it takes about 2.5 minutes on 2 cores, mostly downloading Asterisk.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
INSTALL = PROJECT / "hardware" / "install"
# The build machines use a frozen mirror snapshot whose Release files have
# expired; the lab root is built with the same option.
APT_OPTION = "Acquire::Check-Valid-Until=false"
INCLUDED_FILES = ("extensions.conf", "chan_dahdi.conf", "manager.conf")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")


def base_tarball() -> Path:
    """Return the cached minimal sid root, building it on first use."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    tarball = Path(cache).expanduser() / "screener" / "install-base-sid.tar"
    if tarball.is_file():
        return tarball
    tarball.parent.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_suffix(".tar.partial")
    # A build cut short, or an older version of this helper, can leave a
    # folder at either name, which the tar output and the rename cannot replace.
    for leftover in (partial, tarball):
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover)
        elif leftover.exists():
            leftover.unlink()
    subprocess.run(
        [
            "mmdebstrap",
            "--variant=apt",
            # mmdebstrap picks its output format from the name's ending, and
            # ".partial" is not a known one, so without this it makes a folder.
            "--format=tar",
            '--aptopt=Acquire::Check-Valid-Until "false"',
            "sid",
            str(partial),
        ],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    partial.rename(tarball)
    return tarball


def run_install(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(INSTALL), *arguments],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )


def tree_hashes(root: Path) -> dict[str, str]:
    """Return the SHA-256 of every file and link target the installer writes."""
    hashes = {}
    for folder in ("etc", "opt/screener", "usr/local/bin", "var/lib/asterisk/sounds"):
        for path in sorted((root / folder).rglob("*")):
            key = str(path.relative_to(root))
            if path.is_symlink():
                hashes[key] = "link:" + os.readlink(path)
            elif path.is_file():
                hashes[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def fake_root(tmp_path: Path, os_release: str) -> Path:
    """Make a folder that looks like a Debian root to the installer's checks."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "apt-get").write_text("#!/bin/sh\nexit 1\n")
    (root / "usr" / "bin" / "apt-get").chmod(0o755)
    (root / "etc" / "os-release").write_text(os_release)
    return root


@needs_root
def test_install_rejects_other_distribution(tmp_path: Path) -> None:
    root = fake_root(tmp_path, 'ID=ubuntu\nVERSION_CODENAME="noble"\n')
    result = run_install("--target", str(root), "--no-card")
    assert result.returncode == 1
    assert "unsupported distribution 'ubuntu'" in result.stderr


@needs_root
def test_install_rejects_bookworm(tmp_path: Path) -> None:
    root = fake_root(tmp_path, "ID=debian\nVERSION_CODENAME=bookworm\n")
    result = run_install("--target", str(root), "--no-card")
    assert result.returncode == 1
    assert "has no asterisk package" in result.stderr


@needs_root
def test_install_rejects_missing_card(tmp_path: Path) -> None:
    if any(Path("/proc/dahdi").glob("*")):
        pytest.skip("this machine has a DAHDI card")
    root = fake_root(tmp_path, "ID=debian\nVERSION_CODENAME=forky\n")
    result = run_install("--target", str(root))
    assert result.returncode == 1
    assert "no analog telephony card found" in result.stderr
    assert "--no-card" in result.stderr


@needs_root
def test_install_rejects_missing_target(tmp_path: Path) -> None:
    result = run_install("--target", str(tmp_path / "absent"), "--no-card")
    assert result.returncode == 1
    assert "not found" in result.stderr


@needs_root
def test_install_twice_into_sid_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    subprocess.run(["tar", "-xf", str(base_tarball()), "-C", str(root)], check=True)
    try:
        first = run_install(
            "--target", str(root), "--no-card", "--apt-option", APT_OPTION
        )
        assert first.returncode == 0, first.stderr[-3000:]
        assert "configuration OK" in first.stdout
        after_first = tree_hashes(root)

        second = run_install(
            "--target", str(root), "--no-card", "--apt-option", APT_OPTION
        )
        assert second.returncode == 0, second.stderr[-3000:]
        assert "wrote" not in second.stdout
        assert "added" not in second.stdout
        after_second = tree_hashes(root)
        for name in INCLUDED_FILES:
            key = f"etc/asterisk/{name}"
            assert after_second[key] == after_first[key], key
        assert after_second == after_first

        asterisk = root / "etc" / "asterisk"
        extensions = (asterisk / "extensions.conf").read_text()
        assert extensions.count('#include "extensions_screener.conf"') == 1
        assert extensions.count('#include "extensions_handsets.conf"') == 1
        chan_dahdi = (asterisk / "chan_dahdi.conf").read_text()
        assert chan_dahdi.count('#include "chan_dahdi_screener.conf"') == 1

        secret = (root / "etc" / "screener" / "ami-secret").read_text().strip()
        assert len(secret) >= 24
        ami_user = (asterisk / "manager.d" / "screener.conf").read_text()
        assert f"secret = {secret}" in ami_user
        assert (
            asterisk / "manager.d" / "screener.conf"
        ).stat().st_mode & 0o777 == 0o640
        assert (
            root / "etc" / "screener" / "ami-secret"
        ).stat().st_mode & 0o777 == 0o640

        wants = root / "etc/systemd/system/multi-user.target.wants/screener.service"
        assert os.readlink(wants) == "/etc/systemd/system/screener.service"
        sounds = root / "var/lib/asterisk/sounds/screener"
        assert {path.name for path in sounds.glob("*.wav")} == {
            path.name for path in (PROJECT / "sounds").glob("*.wav")
        }
        assert (root / "usr/sbin/asterisk").is_file()
        assert any((root / "usr/lib").glob("*/asterisk/modules/chan_dahdi.so"))

        check = subprocess.run(
            [
                "chroot",
                str(root),
                "setpriv",
                "--reuid=screener",
                "--regid=screener",
                "--clear-groups",
                "/usr/local/bin/screener",
                "--config",
                "/etc/screener/screener.toml",
                "check-config",
            ],
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, check.stderr
        assert "/var/lib/screener/screener.sqlite" in check.stdout

        # The installed sounds are current for the installed configuration.
        sounds_check = subprocess.run(
            ["chroot", str(root), "/usr/local/bin/screener", "sounds", "check"],
            capture_output=True,
            text=True,
            env={
                "SCREENER_CONFIG": "/etc/screener/screener.toml",
                "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            },
        )
        assert sounds_check.returncode == 0, sounds_check.stdout + sounds_check.stderr
    finally:
        remove_root(root)


def remove_root(root: Path) -> None:
    """Delete a test root, but never while something is mounted inside it.

    The installer bind-mounts the host's /dev and /proc into the root and
    unmounts them on exit. Deleting through a leftover bind mount would
    delete the host's device nodes.
    """
    for folder in ("dev", "proc"):
        subprocess.run(["umount", str(root / folder)], capture_output=True)
    mounts = Path("/proc/mounts").read_text().split("\n")
    prefix = str(root.resolve()) + "/"
    leftover = [line for line in mounts if f" {prefix}" in line]
    assert not leftover, f"mounts left in {root}, not deleting it: {leftover}"
    shutil.rmtree(root, ignore_errors=True)
