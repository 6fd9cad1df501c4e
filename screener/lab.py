"""Run a real Asterisk 22 in a Debian chroot for tests and the demo.

The lab root is a Debian sid tree built by mmdebstrap and kept outside the
repository, by default in ``${XDG_CACHE_HOME:-~/.cache}/screener/asterisk-root``
(override with ``SCREENER_LAB_ROOT``). Each lab instance gets its own
configuration, run, log and spool folders inside the root, so a demo and a test
run can share one root on different ports. Everything listens on 127.0.0.1
only.

Usage: ``python -m screener.lab provision|install-project|start|stop|status``.
All commands need root, because chroot(2) does.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import importlib.util
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

ROOT_ENV = "SCREENER_LAB_ROOT"
AMI_HOST = "127.0.0.1"
DEBIAN_SUITE = "sid"
ROOT_PACKAGES = ("asterisk", "python3", "python3-venv")
COMPLETE_MARKER = ".screener-lab-complete"

# Paths inside the chroot. Screener's AGI code sends sound paths under
# SOUNDS_DIR, and the classic AGI wrapper is found at AGI_WRAPPER.
SOUNDS_DIR = PurePosixPath("/var/lib/asterisk/sounds/screener")
PROJECT_LIB_DIR = PurePosixPath("/opt/screener/lib")
AGI_WRAPPER = PurePosixPath("/usr/local/bin/screener-agi")
PROJECT_DIR = Path(__file__).resolve().parent.parent

# Only the modules the Screener dialplan, the lab dialplan and AGI need. Autoload
# would load all of the roughly 350 installed modules, and a channel driver
# among them could open a listener beyond loopback, so the lab loads modules by
# name.
LAB_MODULES = (
    "res_timing_timerfd.so",
    "res_speech.so",
    "res_agi.so",
    "pbx_config.so",
    "app_dial.so",
    "app_exec.so",
    "app_mixmonitor.so",
    "app_playback.so",
    "app_playtones.so",
    "app_read.so",
    "app_senddtmf.so",
    "app_stack.so",
    "app_userevent.so",
    "app_verbose.so",
    "bridge_simple.so",
    "bridge_builtin_features.so",
    "bridge_holding.so",
    "codec_ulaw.so",
    "codec_alaw.so",
    "codec_a_mu.so",
    "codec_gsm.so",
    "codec_resample.so",
    "format_wav.so",
    "format_wav_gsm.so",
    "format_pcm.so",
    "format_sln.so",
    "format_gsm.so",
    "func_callerid.so",
    "func_channel.so",
    "func_cut.so",
    "func_global.so",
    "func_logic.so",
    "func_math.so",
    "func_strings.so",
    "func_timeout.so",
)


class LabError(Exception):
    """A lab step failed; the message states the failure and the next step."""


def default_root() -> Path:
    """Return the lab root from SCREENER_LAB_ROOT or the user's cache folder."""
    configured = os.environ.get(ROOT_ENV)
    if configured:
        return Path(configured).expanduser().absolute()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser().absolute() / "screener" / "asterisk-root"


@dataclass(frozen=True)
class LabSettings:
    """Settings of one lab instance; tests vary the ports and credentials."""

    root: Path = field(default_factory=default_root)
    instance: str = "default"
    ami_port: int = 5038
    ami_user: str = "screener-lab"
    ami_secret: str = "screener-lab"
    # AGI target for SCREENER_AGI: a FastAGI URL or an absolute script path
    # inside the root, such as AGI_WRAPPER for classic AGI.
    agi: str = "agi://127.0.0.1:4573"
    # The stand-in handsets of asterisk-conf/extensions_screener_test.conf.
    handsets: str = "Local/handsets@screener-test-handsets"
    handsets_other: str = "Local/handsets-other@screener-test-handsets"
    ring_timeout_seconds: int = 20
    # Seconds the lab's handset answers for before it hangs up.
    handset_answer_seconds: float = 2.0
    sounds_source: Path = PROJECT_DIR / "sounds"
    project_source: Path = PROJECT_DIR
    start_timeout_seconds: float = 30.0
    # Privilege classes of the AMI user, as manager.conf's read and write.
    ami_read: str = "all"
    ami_write: str = "all"
    # More dialplan files, such as a benchmark's contexts: each is copied into
    # the configuration folder and included after the project's dialplan.
    extra_dialplan: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if not self.instance.replace("-", "").isalnum():
            raise LabError(
                f"invalid lab instance name {self.instance!r}: "
                "use letters, digits and hyphens"
            )
        if not 0 < self.ami_port < 65536:
            raise LabError(f"invalid AMI port {self.ami_port}: use 1-65535")

    # Folders inside the chroot.
    @property
    def conf_dir(self) -> PurePosixPath:
        return PurePosixPath("/etc/screener-lab") / self.instance

    @property
    def run_dir(self) -> PurePosixPath:
        return PurePosixPath("/run/screener-lab") / self.instance

    @property
    def log_dir(self) -> PurePosixPath:
        return PurePosixPath("/var/log/screener-lab") / self.instance

    @property
    def lib_dir(self) -> PurePosixPath:
        return PurePosixPath("/var/lib/screener-lab") / self.instance

    @property
    def spool_dir(self) -> PurePosixPath:
        return PurePosixPath("/var/spool/screener-lab") / self.instance

    @property
    def recording_dir(self) -> PurePosixPath:
        return self.spool_dir / "recordings"

    def host_path(self, inside: PurePosixPath) -> Path:
        """Return the host path of a path inside the chroot."""
        return resolve_in_root(self.root, inside)

    @property
    def console_log(self) -> Path:
        """Asterisk's standard output and error, on the host."""
        return self.host_path(self.log_dir / "console.log")

    @property
    def full_log(self) -> Path:
        return self.host_path(self.log_dir / "full")

    @property
    def pid_file(self) -> Path:
        return self.host_path(self.run_dir / "lab.pid")


def resolve_in_root(root: Path, inside: PurePosixPath) -> Path:
    """Resolve symbolic links in a chroot path as the chroot would see them.

    Debian roots contain absolute links such as /var/run -> /run, which the host
    would follow out of the root. Missing components are kept as they are.
    """
    parts = list(inside.parts[1:] if inside.is_absolute() else inside.parts)
    resolved = root
    hops = 0
    while parts:
        part = parts.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if resolved != root:
                resolved = resolved.parent
            continue
        candidate = resolved / part
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                raise LabError(f"too many symbolic links resolving {inside}")
            target = PurePosixPath(os.readlink(candidate))
            if target.is_absolute():
                resolved = root
                parts = list(target.parts[1:]) + parts
            else:
                parts = list(target.parts) + parts
            continue
        resolved = candidate
    return resolved


def free_port() -> int:
    """Return a loopback TCP port that is free now (another process may race)."""
    with socket.socket() as probe:
        probe.bind((AMI_HOST, 0))
        port: int = probe.getsockname()[1]
    return port


def require_root_user() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root because it uses chroot; run it as root")


def is_provisioned(root: Path) -> bool:
    return (root / COMPLETE_MARKER).is_file()


def provision(root: Path | None = None) -> Path:
    """Build the Debian sid root with Asterisk and Python unless it exists.

    The build goes to a temporary folder beside the root and is renamed on
    success, so a failed or interrupted build never leaves a partial root.
    """
    root = root or default_root()
    if is_provisioned(root):
        return root
    require_root_user()
    if root.exists():
        raise LabError(
            f"{root} exists but is not a complete lab root (no {COMPLETE_MARKER}); "
            "remove it and run provision again"
        )
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise LabError(
            "mmdebstrap not found; install it with: apt-get install mmdebstrap"
        )

    root.parent.mkdir(parents=True, exist_ok=True)
    build_dir = Path(tempfile.mkdtemp(prefix=f".{root.name}.build-", dir=root.parent))
    build_log = root.parent / f"{root.name}.provision.log"
    # mmdebstrap requires an empty or missing target folder.
    build_dir.rmdir()
    command = [
        mmdebstrap,
        "--variant=apt",
        '--aptopt=Acquire::Check-Valid-Until "false"',
        "--include=" + ",".join(ROOT_PACKAGES),
        DEBIAN_SUITE,
        str(build_dir),
    ]
    try:
        with build_log.open("wb") as log:
            result = subprocess.run(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        if result.returncode != 0:
            raise LabError(
                f"mmdebstrap failed with exit status {result.returncode}; "
                f"last lines of {build_log}:\n{tail(build_log)}"
            )
        (build_dir / COMPLETE_MARKER).write_text(" ".join(command) + "\n")
        build_dir.rename(root)
    finally:
        if build_dir.exists():
            shutil.rmtree(build_dir, ignore_errors=True)
    return root


def tail(path: Path, lines: int = 20) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"(cannot read {path}: {error})"
    return "\n".join(text.splitlines()[-lines:])


def _package_source(module: str) -> Path | None:
    """Return the file or package folder of an importable module, if any."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return None
    origin = Path(spec.origin)
    return origin.parent if origin.name == "__init__.py" else origin


def _copy_module(source: Path, target_dir: Path) -> None:
    target = target_dir / source.name
    if source.is_dir():
        shutil.copytree(
            source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    else:
        shutil.copy2(source, target)


def install_project(
    root: Path | None = None, project_source: Path = PROJECT_DIR
) -> None:
    """Install this repository's screener package, pyst2 and six into the root.

    The root's python3 runs classic AGI scripts, so it needs the code. All three
    are pure Python, so they are copied from the host's environment (pyst2 is
    the ``asterisk`` package, and it imports ``six``). The library folder is
    replaced whole on each call, so the root always has the current code.
    """
    root = root or default_root()
    if not is_provisioned(root):
        raise LabError(f"no lab root at {root}; run: python -m screener.lab provision")
    package_dir = project_source / "screener"
    if not (package_dir / "__init__.py").is_file():
        raise LabError(f"no screener package found in {project_source}")

    # Test runs in parallel share the root, so the swap below is serialized.
    with _root_lock(root):
        _install_project_locked(root, package_dir)


@contextlib.contextmanager
def _root_lock(root: Path) -> Iterator[None]:
    with (root / ".screener-lab.lock").open("a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _install_project_locked(root: Path, package_dir: Path) -> None:
    lib_dir = resolve_in_root(root, PROJECT_LIB_DIR)
    staging = lib_dir.with_name(lib_dir.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    _copy_module(package_dir, staging)

    missing = []
    for module in ("asterisk", "six"):
        source = _package_source(module)
        if source is None:
            missing.append(module)
        else:
            _copy_module(source, staging)
    if missing:
        _pip_install_into(staging, ["pyst2", "six"])

    shutil.rmtree(lib_dir, ignore_errors=True)
    staging.rename(lib_dir)
    _write_agi_wrapper(root)


def _pip_install_into(target: Path, requirements: Sequence[str]) -> None:
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet"]
    command += ["--target", str(target), *requirements]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise LabError(
            f"pip failed to install {', '.join(requirements)} into {target}:\n"
            + "\n".join(result.stderr.splitlines()[-20:])
        )


def _write_agi_wrapper(root: Path) -> None:
    wrapper = resolve_in_root(root, AGI_WRAPPER)
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(
        "#!/bin/sh\n"
        "# Classic AGI entry point of Screener, installed by screener.lab.\n"
        f'PYTHONPATH="{PROJECT_LIB_DIR}" exec python3 -m screener.agi.classic "$@"\n'
    )
    wrapper.chmod(0o755)


def _module_dir(root: Path) -> PurePosixPath:
    """Return Asterisk's module folder inside the root, whatever the machine."""
    matches = sorted(root.glob("usr/lib/*/asterisk/modules"))
    if not matches:
        raise LabError(f"no Asterisk module folder under {root}/usr/lib")
    return PurePosixPath("/") / matches[0].relative_to(root).as_posix()


def render_config(settings: LabSettings, module_dir: PurePosixPath) -> dict[str, str]:
    """Return the lab's Asterisk configuration files by file name."""
    # "require" makes Asterisk exit at start if a module fails to load.
    modules = "\n".join(f"require => {name}" for name in LAB_MODULES)
    extra_includes = "".join(
        f'#include "{path.name}"\n' for path in settings.extra_dialplan
    )
    return {
        "asterisk.conf": f"""\
[directories]
astetcdir => {settings.conf_dir}
astmoddir => {module_dir}
astvarlibdir => /var/lib/asterisk
astdbdir => {settings.lib_dir}
astkeydir => {settings.lib_dir}
astdatadir => /usr/share/asterisk
astagidir => /usr/share/asterisk/agi-bin
astspooldir => {settings.spool_dir}
astrundir => {settings.run_dir}
astlogdir => {settings.log_dir}
astsbindir => /usr/sbin

[options]
verbose = 3
documentation_language = en_US
; The lab runs as root inside its chroot; no runuser is set.
""",
        "modules.conf": f"""\
[modules]
autoload = no
{modules}
""",
        "logger.conf": """\
[general]
dateformat = %F %T.%3q

[logfiles]
full => notice,warning,error,verbose,dtmf
""",
        "manager.conf": f"""\
[general]
enabled = yes
bindaddr = {AMI_HOST}
port = {settings.ami_port}
; Tests time the gap between AGI commands from these timestamps.
timestampevents = yes

[{settings.ami_user}]
secret = {settings.ami_secret}
deny = 0.0.0.0/0.0.0.0
permit = 127.0.0.1/255.255.255.255
read = {settings.ami_read}
write = {settings.ami_write}
""",
        "cdr.conf": "[general]\nenable = no\n",
        # Empty files stop the core from logging an error for each one.
        "acl.conf": "",
        "ccss.conf": "",
        "features.conf": "",
        "udptl.conf": "",
        "cel.conf": "[general]\nenable = no\n",
        "extensions.conf": f"""\
[general]
static = yes
writeprotect = yes
clearglobalvars = yes

; The user's own settings, as an owner would write them in /etc/asterisk.
[globals]
SCREENER_AGI = {settings.agi}
SCREENER_HANDSETS = {settings.handsets}
SCREENER_HANDSETS_OTHER = {settings.handsets_other}
SCREENER_RING_TIMEOUT = {settings.ring_timeout_seconds}
SCREENER_TEST_HANDSET_SECONDS = {settings.handset_answer_seconds}

#include "extensions_screener.conf"
#include "extensions_screener_test.conf"
{extra_includes}""",
    }


def write_config(settings: LabSettings) -> Path:
    """Write the lab's configuration and copy the project's dialplan into it."""
    root = settings.root
    conf_dir = settings.host_path(settings.conf_dir)
    conf_dir.mkdir(parents=True, exist_ok=True)
    rendered = render_config(settings, _module_dir(root))
    for name, text in rendered.items():
        (conf_dir / name).write_text(text)

    project_conf = settings.project_source / "asterisk-conf"
    project_dialplan = [
        project_conf / name
        for name in ("extensions_screener.conf", "extensions_screener_test.conf")
    ]
    reserved_names = {*rendered, *(path.name for path in project_dialplan)}
    for extra in settings.extra_dialplan:
        if extra.name in reserved_names:
            raise LabError(
                f"extra dialplan {extra} would replace the lab's own {extra.name}; "
                "rename the file"
            )
    for dialplan in [*project_dialplan, *settings.extra_dialplan]:
        if not dialplan.is_file():
            raise LabError(f"missing {dialplan}")
        shutil.copy2(dialplan, conf_dir / dialplan.name)
    # Tone zones for PlayTones and Dial's ringing come from the package's file.
    indications = root / "etc" / "asterisk" / "indications.conf"
    if indications.is_file():
        shutil.copy2(indications, conf_dir / indications.name)

    for inside in (
        settings.run_dir,
        settings.log_dir,
        settings.lib_dir,
        settings.recording_dir,
        SOUNDS_DIR,
    ):
        settings.host_path(inside).mkdir(parents=True, exist_ok=True)
    return conf_dir


def copy_sounds(settings: LabSettings) -> list[Path]:
    """Copy every WAV file of the sounds folder to SOUNDS_DIR in the root."""
    target = settings.host_path(SOUNDS_DIR)
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    if settings.sounds_source.is_dir():
        for source in sorted(settings.sounds_source.glob("*.wav")):
            shutil.copy2(source, target / source.name)
            copied.append(target / source.name)
    return copied


@dataclass
class LabProcess:
    """A running lab Asterisk; ``process`` is set only in the starting process."""

    settings: LabSettings
    pid: int
    process: subprocess.Popen[bytes] | None = None

    def stop(self, timeout_seconds: float = 10.0) -> None:
        stop(self.settings, timeout_seconds)
        if self.process is not None:
            self.process.wait(timeout=timeout_seconds)


def start(settings: LabSettings) -> LabProcess:
    """Start the lab Asterisk and return once AMI accepts a login.

    Raises LabError if the root is missing, the instance is already running, or
    Asterisk exits or does not accept the AMI login before the start timeout.
    """
    require_root_user()
    if not is_provisioned(settings.root):
        raise LabError(
            f"no lab root at {settings.root}; run: python -m screener.lab provision"
        )
    running = running_pid(settings)
    if running is not None:
        raise LabError(
            f"lab instance {settings.instance!r} is already running (pid {running}); "
            "run: python -m screener.lab stop"
        )
    install_project(settings.root, settings.project_source)
    write_config(settings)
    with _root_lock(settings.root):
        copy_sounds(settings)

    console_log = settings.console_log
    full_log_offset = (
        settings.full_log.stat().st_size if settings.full_log.exists() else 0
    )
    conf_file = settings.conf_dir / "asterisk.conf"
    command = ["chroot", str(settings.root), "asterisk", "-C", str(conf_file)]
    # -f keeps Asterisk in the foreground as our child, -n turns colors off.
    command += ["-f", "-n", "-g"]
    with console_log.open("ab") as log:
        # chroot execs asterisk, so the child's pid is Asterisk's pid. A new
        # session keeps the lab running after the starting command exits and
        # makes Asterisk a process group leader, so stop() also ends AGI scripts.
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    settings.pid_file.write_text(f"{process.pid}\n")
    lab = LabProcess(settings=settings, pid=process.pid, process=process)
    try:
        wait_for_ami(settings, process, full_log_offset)
    except BaseException:
        lab.stop()
        raise
    return lab


def wait_for_ami(
    settings: LabSettings,
    process: subprocess.Popen[bytes] | None = None,
    full_log_offset: int = 0,
) -> None:
    """Poll until AMI accepts a login and Asterisk is fully booted.

    Fails early when the part of the full log after full_log_offset shows that
    AMI could not bind its port, which Asterisk logs but survives.
    """
    deadline = time.monotonic() + settings.start_timeout_seconds
    last_error = "no attempt made"
    while time.monotonic() < deadline:
        bind_error = _find_log_line(
            settings.full_log, full_log_offset, "Unable to bind AMI server"
        )
        if bind_error is not None:
            raise LabError(
                f"AMI port {settings.ami_port} is not available: {bind_error}; "
                "choose another port with --ami-port"
            )
        if process is not None and process.poll() is not None:
            raise LabError(
                f"Asterisk exited with status {process.returncode} during start; "
                f"see {settings.console_log} and {settings.full_log}:\n"
                f"{tail(settings.console_log)}"
            )
        try:
            if ami_login_succeeds(settings, deadline):
                return
            last_error = "AMI login was rejected"
        except OSError as error:
            last_error = str(error)
        time.sleep(0.1)
    raise LabError(
        f"Asterisk did not accept an AMI login on {AMI_HOST}:{settings.ami_port} "
        f"within {settings.start_timeout_seconds:g} s ({last_error}); "
        f"see {settings.console_log} and {settings.full_log}"
    )


def _find_log_line(path: Path, offset: int, needle: str) -> str | None:
    try:
        with path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        if needle in line:
            return line.strip()
    return None


def ami_login_succeeds(settings: LabSettings, deadline: float) -> bool:
    """Log in to AMI once; True when the login succeeds and Asterisk has booted.

    Asterisk sends a FullyBooted event right after a successful login once all
    modules are loaded, so waiting for it avoids racing the module loader.
    """
    timeout = max(0.1, deadline - time.monotonic())
    with socket.create_connection((AMI_HOST, settings.ami_port), timeout) as sock:
        stream = sock.makefile("rwb")
        stream.readline()  # banner: "Asterisk Call Manager/x.y.z"
        login = (
            "Action: Login\r\n"
            f"Username: {settings.ami_user}\r\n"
            f"Secret: {settings.ami_secret}\r\n"
            "Events: system\r\n\r\n"
        )
        stream.write(login.encode())
        stream.flush()
        logged_in = False
        for message in _ami_messages(stream):
            if message.get("Response") == "Success":
                logged_in = True
            elif message.get("Response") == "Error":
                return False
            elif logged_in and message.get("Event") == "FullyBooted":
                stream.write(b"Action: Logoff\r\n\r\n")
                stream.flush()
                return True
        return False


def _ami_messages(stream: io.BufferedIOBase) -> Iterator[dict[str, str]]:
    message: dict[str, str] = {}
    while True:
        line = stream.readline()
        if not line:
            return
        text = line.decode(errors="replace").rstrip("\r\n")
        if not text:
            if message:
                yield message
            message = {}
            continue
        key, _, value = text.partition(":")
        message[key.strip()] = value.strip()


def running_pid(settings: LabSettings) -> int | None:
    """Return the pid of this instance's Asterisk if it is running."""
    try:
        pid = int(settings.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _is_lab_asterisk(pid, settings.root) else None


def _is_lab_asterisk(pid: int, root: Path) -> bool:
    """Check that pid is a live Asterisk chrooted into root, not a reused pid."""
    proc = Path("/proc") / str(pid)
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        name = (proc / "comm").read_text().strip()
        proc_root = Path(os.readlink(proc / "root"))
    except (OSError, IndexError):
        return False
    return state != "Z" and name == "asterisk" and proc_root == root.resolve()


def stop(settings: LabSettings, timeout_seconds: float = 10.0) -> bool:
    """Stop this instance's Asterisk with SIGTERM, then SIGKILL after a timeout.

    Returns False if it was not running. AMI is not needed, so this works
    when Asterisk hangs.
    """
    pid = running_pid(settings)
    if pid is None:
        with contextlib.suppress(FileNotFoundError):
            settings.pid_file.unlink()
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline and _is_lab_asterisk(pid, settings.root):
            time.sleep(0.05)
        if not _is_lab_asterisk(pid, settings.root):
            break
    with contextlib.suppress(FileNotFoundError):
        settings.pid_file.unlink()
    return True


def _settings_from_args(args: argparse.Namespace) -> LabSettings:
    return LabSettings(
        root=args.root,
        instance=args.instance,
        ami_port=args.ami_port,
        ami_user=args.ami_user,
        ami_secret=args.ami_secret,
        agi=args.agi,
        handsets=args.handsets,
        handsets_other=args.handsets_other,
    )


def build_parser() -> argparse.ArgumentParser:
    defaults = LabSettings(root=Path("."))
    parser = argparse.ArgumentParser(
        prog="python -m screener.lab",
        description="Provision, start and stop the lab Asterisk in a chroot.",
    )
    parser.add_argument(
        "command",
        choices=["provision", "install-project", "start", "stop", "status"],
    )
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help=f"lab root folder (default: ${ROOT_ENV} or the user's cache folder)",
    )
    parser.add_argument(
        "--instance", default=defaults.instance, help="name of the lab instance"
    )
    parser.add_argument("--ami-port", type=int, default=defaults.ami_port)
    parser.add_argument("--ami-user", default=defaults.ami_user)
    parser.add_argument("--ami-secret", default=defaults.ami_secret)
    parser.add_argument(
        "--agi",
        default=defaults.agi,
        help=f"value of SCREENER_AGI: a FastAGI URL, or {AGI_WRAPPER} for classic AGI",
    )
    parser.add_argument("--handsets", default=defaults.handsets)
    parser.add_argument("--handsets-other", default=defaults.handsets_other)
    return parser


def run(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.root = (args.root or default_root()).absolute()
    settings = _settings_from_args(args)
    if args.command == "provision":
        started = time.monotonic()
        was_ready = is_provisioned(settings.root)
        provision(settings.root)
        action = "reused" if was_ready else "built"
        print(
            f"lab root {action}: {settings.root} ({time.monotonic() - started:.1f} s)"
        )
    elif args.command == "install-project":
        require_root_user()
        install_project(settings.root, settings.project_source)
        print(f"installed screener, pyst2 and six into {settings.root}")
    elif args.command == "start":
        provision(settings.root)
        started = time.monotonic()
        lab = start(settings)
        print(
            f"lab Asterisk running: pid {lab.pid}, AMI {AMI_HOST}:{settings.ami_port}, "
            f"started in {time.monotonic() - started:.1f} s; log {settings.full_log}"
        )
    elif args.command == "stop":
        require_root_user()
        if stop(settings):
            print(f"lab instance {settings.instance!r} stopped")
        else:
            print(f"lab instance {settings.instance!r} was not running")
    else:
        pid = running_pid(settings)
        if pid is None:
            print(f"lab instance {settings.instance!r} is not running")
            return 3
        print(f"lab instance {settings.instance!r} running: pid {pid}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(argv)
    except LabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
