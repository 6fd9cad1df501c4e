"""A trapped call on the real Asterisk arrives as an email with its recording."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from screener.ami.calls import agi_port, override_global, place_call
from screener.lab import LabProcess
from screener.storage import open_store
from tests.audio_analysis import find_sit, read_wav
from tests.e2e.serving import screener_serve
from tests.mail_server import Handler, Received, port_of, start_server

CALLER = '"ACME Sales" <8005550199>'
# The sender wakes when a call ends; delivery takes well under a second.
MAIL_WAIT_SECONDS = 20.0


@dataclass(frozen=True)
class Reporting:
    """Screener with mail enabled, and the SMTP server's inbox."""

    inbox: Handler
    recordings: Path
    database: Path


@pytest.fixture
async def reporting(lab: LabProcess, tmp_path: Path) -> AsyncIterator[Reporting]:
    """Run Screener with mail and recordings on, against a local SMTP server."""
    inbox = Handler()
    smtp = await start_server(inbox)
    settings = lab.settings
    recordings_inside = settings.spool_dir / f"reports-{time.monotonic_ns()}"
    recordings = settings.host_path(recordings_inside)
    recordings.mkdir(parents=True)
    port = agi_port(lab)
    config = tmp_path / "screener.toml"
    config.write_text(
        f'[server]\nport = {port}\n[database]\npath = "{tmp_path / "calls.sqlite"}"\n'
        "[menu]\nwait_seconds = 3\n"
        '[mail]\nenabled = true\nto = "owner@example.org"\n'
        'from = "screener@example.org"\nhost = "127.0.0.1"\n'
        f"port = {port_of(smtp)}\nattach_recordings = true\n"
        f'recordings_dir = "{recordings}"\n'
    )
    try:
        with screener_serve(config, port, tmp_path / "serve.log"):
            async with override_global(
                lab, "SCREENER_RECORDINGS", str(recordings_inside)
            ):
                yield Reporting(inbox, recordings, tmp_path / "calls.sqlite")
    finally:
        smtp.close()
        await smtp.wait_closed()


async def first_message(inbox: Handler) -> Received:
    async with asyncio.timeout(MAIL_WAIT_SECONDS):
        while not inbox.received:
            await asyncio.sleep(0.05)
    return inbox.received[0]


async def test_decoy_call_is_emailed_with_recording(
    lab: LabProcess, reporting: Reporting
) -> None:
    result = await place_call(
        lab, keys=[(4.0, "2"), (2.0, "9")], caller_id=CALLER, max_seconds=40
    )

    received = await first_message(reporting.inbox)
    message = received.message
    assert received.recipients == ["owner@example.org"]
    assert "(800) 555-0199" in message["Subject"]
    assert "James" in message["Subject"]
    attachments = list(message.iter_attachments())
    assert [part.get_filename() for part in attachments] == [
        f"{result.line_uniqueid}.wav"
    ]
    recording = reporting.recordings / "attached.wav"
    recording.write_bytes(attachments[0].get_content())
    samples, rate = read_wav(recording)
    assert len(find_sit(samples, rate)) == 3


async def test_owner_call_is_neither_emailed_nor_recorded(
    lab: LabProcess, reporting: Reporting
) -> None:
    result = await place_call(lab, keys=[(3.0, "1")], caller_id=CALLER, max_seconds=30)

    assert [ring.handset for ring in result.rings] == ["handsets"]
    store = open_store(reporting.database)
    try:
        queued = store.query("SELECT count(*) FROM outbox")[0][0]
    finally:
        store.close()
    assert queued == 0
    assert reporting.inbox.received == []
    recorded = reporting.recordings / f"{result.line_uniqueid}.wav"
    # MixMonitor stopped before the handsets rang, so only the menu part is
    # in the file: far shorter than the call.
    samples, rate = read_wav(recorded)
    assert len(samples) / rate < result.duration_seconds
