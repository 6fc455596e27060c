"""MIDI keyboard input: one façade over python-rtmidi (DESIGN §5, §7).

Messages are *not* taken through rtmidi's Python callback: with JACK that callback runs in
JACK's real-time process thread and must take the GIL, and while another Python thread held
the GIL, 1,000 note on/off pairs sent in a second arrived with 150–300 messages lost or
replaced by copies of others (3 runs; none lost with an idle interpreter). Instead rtmidi
queues messages in C++ (no GIL, never blocks) with the backend's own time between them, and
a reader thread polls that queue every :data:`READ_INTERVAL_S`: each message's time is the
previous one's plus rtmidi's delta, never later than ``time.perf_counter()`` at reading, so
a late poll does not move the notes (2,000 messages in a second with a busy interpreter: no
loss; stamp − send time median 2.7 ms, p99 5.5 ms, the JACK period). The first message of a
connection is stamped when it is read.

Notes go to ``on_note(t, pitch, velocity)`` on the reader thread (velocity 0 is a note-off,
including note-on with velocity 0); controllers such as the sustain pedal, pitch bend,
program changes and channel-10 drums are ignored.

Ports are remembered by *name*, never by index. rtmidi does not notice an unplugged device,
so a watcher thread polls the port list about once a second and re-opens the remembered
name when it comes back, reporting changes through ``on_state(state, port_name)`` with
state ``"connected"``, ``"lost"`` or ``"reconnected"``.

The API is chosen at open time: CoreMIDI or Windows MM where compiled, else ALSA when its
sequencer works, else JACK when a server runs. A machine with none of them, a port name that
does not exist and a port that cannot be opened (another program holds it) each raise a
:class:`MidiError` subclass with a one-line message.
"""
from __future__ import annotations

import logging
import os
import re
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import rtmidi

from ..core.errors import MidizeroError

log = logging.getLogger(__name__)
CLIENT_NAME = "midizero"
POLL_S = 1.0  # seconds between port-list polls (hot-plug)
READ_INTERVAL_S = 0.002  # seconds between reads of rtmidi's queue when it is empty
QUEUE_LIMIT = 8192  # messages rtmidi holds for the reader
API_IDS = {"coremidi": rtmidi.API_MACOSX_CORE, "winmm": rtmidi.API_WINDOWS_MM,
           "alsa": rtmidi.API_LINUX_ALSA, "jack": rtmidi.API_UNIX_JACK}
API_LABELS = {"coremidi": "CoreMIDI", "winmm": "Windows MM", "alsa": "ALSA", "jack": "JACK"}
_DRUM_CHANNEL = 9  # MIDI channel 10, dropped like drum tracks in files (DESIGN §1.1)

NoteFn = Callable[[float, int, int], None]  # (perf_counter seconds, pitch, velocity; 0 = off)
StateFn = Callable[[str, str], None]        # (state, port name)


class MidiError(MidizeroError):
    """A MIDI problem the user can act on; ``str()`` is one line."""


class NoMidiSystem(MidiError):
    """No usable MIDI API (no ALSA sequencer, no JACK server, ...)."""


class UnknownPort(MidiError):
    """No input port with that name."""


class PortUnavailable(MidiError):
    """The port exists but cannot be opened (busy, or it vanished meanwhile)."""


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence fd 2 while probing: libasound and libjack print failures there themselves.

    This also hides other threads' stderr for the few milliseconds a probe takes. With
    ``MIDIZERO_VERBOSE=1`` (``midizero --verbose``) nothing is hidden.
    """
    if os.environ.get("MIDIZERO_VERBOSE") == "1":
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (a windowed app): nothing to hide
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# libjack crashes (SIGSEGV) when a client of a server that has gone away is freed after a
# failed attempt to open a new one; such clients are kept here, unfreed, until exit.
_failed_opens: dict[str, int] = {}
_born: dict[int, int] = {}  # id(client) → _failed_opens[api] when it was made
_orphans: list[rtmidi.MidiIn] = []


def _new_client(api: str, name: str = CLIENT_NAME) -> rtmidi.MidiIn:
    """A MidiIn on ``api``; raises :class:`NoMidiSystem` when that API does not work here."""
    with _quiet_stderr():
        try:
            client = rtmidi.MidiIn(rtapi=API_IDS[api], name=name,
                                   queue_size_limit=QUEUE_LIMIT)
        except rtmidi.RtMidiError as exc:
            _failed_opens[api] = _failed_opens.get(api, 0) + 1
            raise NoMidiSystem(_reason(api, exc)) from None
    _born[id(client)] = _failed_opens.get(api, 0)
    return client


def _free_client(client: rtmidi.MidiIn, api: str) -> None:
    """Close and free ``client``, unless its MIDI system failed since it was made."""
    if _born.pop(id(client), None) == _failed_opens.get(api, 0):
        client.delete()
    else:
        _orphans.append(client)


def compiled_apis() -> list[str]:
    """MIDI APIs built into this python-rtmidi, in order of preference."""
    have = set(rtmidi.get_compiled_api())
    return [name for name, api_id in API_IDS.items() if api_id in have]


def pick_api(api: str = "auto") -> str:
    """The API to use: ``api`` itself when named, else the first of :func:`compiled_apis`
    that works. ``MIDIZERO_MIDI_API`` overrides ``"auto"``.

    Raises :class:`NoMidiSystem` naming every API tried and why it failed.
    """
    api = os.environ.get("MIDIZERO_MIDI_API", api) if api == "auto" else api
    if api != "auto" and api not in API_IDS:
        raise MidiError(f"unknown MIDI API {api!r} (choose from {', '.join(API_IDS)})")
    tried = [api] if api != "auto" else compiled_apis()
    reasons = []
    for name in tried:
        try:
            _free_client(_new_client(name, f"{CLIENT_NAME}-probe"), name)
            return name
        except NoMidiSystem as exc:
            reasons.append(str(exc))
    raise NoMidiSystem("no MIDI system available (" + "; ".join(reasons or ["none compiled"]) + ")")


def _reason(api: str, exc: Exception) -> str:
    """A short why-not for ``api`` from rtmidi's message."""
    if api == "alsa" and not os.path.exists("/dev/snd/seq"):
        return "ALSA: no sequencer (/dev/snd/seq)"
    if api == "jack" and "not running" in str(exc):
        return "JACK: no server running"
    return f"{API_LABELS[api]}: {exc}"


def list_input_ports(api: str = "auto") -> tuple[str, list[str]]:
    """``(api used, input port names)``; raises :class:`NoMidiSystem` if none works."""
    api = pick_api(api)
    client = _new_client(api, f"{CLIENT_NAME}-probe")
    try:
        return api, list(client.get_ports())
    finally:
        _free_client(client, api)


_ALSA_ADDR = re.compile(r"\s+\d+:\d+$")    # "Keyboard:Keyboard MIDI 1 20:0"
_JACK_DUP = re.compile(r"-\d\d(?=:)")        # "keyboard-01:out", a re-registered client


def _stable(name: str) -> str:
    """A port name without the parts that change when a device is re-plugged."""
    return _JACK_DUP.sub("", _ALSA_ADDR.sub("", name))


def match_port(name: str, ports: list[str]) -> str | None:
    """The port in ``ports`` that is ``name``: exact match first, else the single port whose
    name equals it once ALSA client:port numbers and JACK duplicate suffixes are dropped."""
    if name in ports:
        return name
    same = [p for p in ports if _stable(p) == _stable(name)]
    return same[0] if len(same) == 1 else None


def find_port(name: str, ports: list[str]) -> str:
    """:func:`match_port`, raising :class:`UnknownPort` (listing the ports) when absent."""
    actual = match_port(name, ports)
    if actual is None:
        listed = ", ".join(repr(p) for p in ports) if ports else "none"
        raise UnknownPort(f"no MIDI input named {name!r} (available: {listed})")
    return actual


def note_event(status: int, data: list[int] | bytes) -> tuple[int, int] | None:
    """``(pitch, velocity)`` of a note message, velocity 0 for a note-off; None otherwise."""
    kind, channel = status & 0xF0, status & 0x0F
    if channel == _DRUM_CHANNEL or len(data) < 2 or kind not in (0x80, 0x90):
        return None
    return int(data[0]), int(data[1]) if kind == 0x90 else 0


class MidiInput:
    """One MIDI input port, opened by name or as a virtual port.

    Parameters
    ----------
    on_note : called on the reader thread with ``(t, pitch, velocity)``; ``t`` is on the
        ``time.perf_counter()`` clock (seconds).
    api : ``"auto"``, ``"alsa"``, ``"jack"``, ``"coremidi"`` or ``"winmm"``; resolved by
        :func:`pick_api` when a port is first listed or opened (then in ``self.api``).
    on_state : called with ``(state, port name)`` on connection changes (watcher thread).
    poll_s : seconds between port-list polls.
    """

    def __init__(self, on_note: NoteFn, api: str = "auto", on_state: StateFn | None = None,
                 poll_s: float = POLL_S, client_name: str = CLIENT_NAME):
        self.on_note, self.on_state = on_note, on_state
        self._api_choice = api
        self.api: str | None = None
        self.poll_s, self.client_name = poll_s, client_name
        self.port_name: str | None = None  # the remembered name (as asked for)
        self.connected = False
        self._client: rtmidi.MidiIn | None = None
        self._last_t: float | None = None  # time of the last message of this connection
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- reading ----------------------------------------------------------------------
    def receive(self, message: list[int], delta: float) -> None:
        """Handle one message as rtmidi queued it: ``delta`` is the backend's seconds since
        the connection's previous message. Stamps it and passes a note on."""
        now = time.perf_counter()
        t = now if self._last_t is None else min(self._last_t + delta, now)
        self._last_t = t
        note = note_event(message[0], message[1:]) if message else None
        if note is None:
            return
        try:
            self.on_note(t, note[0], note[1])
        except Exception:  # noqa: BLE001 - a broken consumer must not stop the input
            log.exception("MIDI note handler failed")

    def _read(self) -> None:
        while True:
            with self._lock:
                item = self._client.get_message() if self._client is not None else None
            if item is not None:
                self.receive(*item)
            elif self._stop.wait(READ_INTERVAL_S):
                return

    def _start(self, target, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # --- opening ----------------------------------------------------------------------
    def _resolve_api(self) -> str:
        if self.api is None:
            self.api = pick_api(self._api_choice)
        return self.api

    def open(self, port_name: str) -> str:
        """Open the input called ``port_name`` and keep re-opening it on hot-plug.

        Returns the name actually opened. Raises :class:`UnknownPort` (the message lists the
        ports there are) or :class:`PortUnavailable`.
        """
        if self.port_name is not None:
            raise RuntimeError("a MidiInput opens one port; make another for another port")
        actual = find_port(port_name, self.ports())
        self._connect(actual)
        self.port_name = port_name
        self._start(self._read, "midi-read")
        self._start(self._watch, "midi-hotplug")
        self._report("connected", actual)
        return actual

    def open_virtual(self, port_name: str = "input") -> str:
        """Open a virtual input other programs can send to; returns its full name."""
        if self.port_name is not None:
            raise RuntimeError("a MidiInput opens one port; make another for another port")
        client = _new_client(self._resolve_api(), self.client_name)
        try:
            client.open_virtual_port(port_name)
        except (rtmidi.RtMidiError, NotImplementedError) as exc:
            _free_client(client, self.api)
            raise PortUnavailable(f"cannot open a virtual MIDI port with "
                                  f"{API_LABELS[self.api]}: {exc}") from None
        with self._lock:
            self._client, self._last_t, self.connected = client, None, True
        self.port_name = f"{self.client_name}:{port_name}"
        self._start(self._read, "midi-read")
        return self.port_name

    def ports(self) -> list[str]:
        """Input port names now (for a device chooser)."""
        with self._lock:
            if self._client is not None:
                return list(self._client.get_ports())
        probe = _new_client(self._resolve_api(), f"{self.client_name}-probe")
        try:
            return list(probe.get_ports())
        finally:
            _free_client(probe, self.api)

    def _connect(self, actual: str) -> None:
        """Open port ``actual`` on a fresh client, by its index in that client's own list."""
        client = _new_client(self.api, self.client_name)
        try:
            client.open_port(list(client.get_ports()).index(actual), "input")
        except (rtmidi.RtMidiError, ValueError) as exc:
            _free_client(client, self.api)
            raise PortUnavailable(f"cannot open MIDI input {actual!r} "
                                  f"(is another program using it?): {exc}") from None
        with self._lock:
            old, self._client, self.connected = self._client, client, True
            self._last_t = None
        if old is not None:
            _free_client(old, self.api)

    def _disconnect(self) -> None:
        with self._lock:
            old, self._client, self.connected = self._client, None, False
        if old is not None:
            _free_client(old, self.api)

    # --- hot-plug ---------------------------------------------------------------------
    def _watch(self) -> None:
        probe: rtmidi.MidiIn | None = None
        while not self._stop.wait(self.poll_s):
            try:
                if probe is None:
                    probe = _new_client(self.api, f"{self.client_name}-watch")
                ports = list(probe.get_ports())
            except MidiError:  # the MIDI system itself went away (a JACK server stopped)
                ports = []
            if probe is not None and self.api == "jack":
                # A kept JACK client still lists the ports of a server that has stopped.
                _free_client(probe, self.api)
                probe = None
            actual = match_port(self.port_name, ports) if self.port_name else None
            if self.connected and actual is None:
                self._disconnect()
                self._report("lost", self.port_name)
            elif not self.connected and actual is not None:
                try:
                    self._connect(actual)
                except MidiError:
                    continue  # try again at the next poll
                self._report("reconnected", actual)
        if probe is not None:
            _free_client(probe, self.api)

    def _report(self, state: str, name: str) -> None:
        if self.on_state is None:
            return
        try:
            self.on_state(state, name)
        except Exception:  # noqa: BLE001 - a broken consumer must not stop the watcher
            log.exception("MIDI state handler failed")

    # --- closing ----------------------------------------------------------------------
    def close(self) -> None:
        """Stop the threads and close the port."""
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._disconnect()

    def __enter__(self) -> "MidiInput":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
