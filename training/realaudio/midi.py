"""A minimal Standard MIDI File writer (format 0), enough to render a tune with fluidsynth.

Notes are given in beats (quarter notes) and written at :data:`TICKS` per beat with one tempo; each
part has its own channel and General MIDI program.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

TICKS = 480


@dataclass(frozen=True)
class Note:
    """One note: ``pitch`` (MIDI number), ``start`` and ``length`` in beats, ``velocity`` 1..127."""

    pitch: int
    start: float
    length: float
    velocity: int = 90


@dataclass(frozen=True)
class Part:
    """A channel (0..15, not 9 which is drums) playing ``notes`` with a GM ``program`` (0..127)."""

    channel: int
    program: int
    notes: Sequence[Note]


def _varlen(value: int) -> bytes:
    """MIDI variable-length quantity."""
    if value < 0:
        raise ValueError(f"negative delta time {value}")
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def write_midi(parts: Sequence[Part], bpm: float) -> bytes:
    """The bytes of a format-0 MIDI file playing ``parts`` at ``bpm`` quarter notes per minute."""
    if not 10 <= bpm <= 400:
        raise ValueError(f"bpm must lie in 10..400, got {bpm}")
    # (tick, order, bytes): note-offs sort before note-ons at one tick, so repeated notes re-strike.
    events: list[tuple[int, int, bytes]] = [(0, 0, b"\xff\x51\x03" + struct.pack(">I", round(60e6 / bpm))[1:])]
    for part in parts:
        if not 0 <= part.channel <= 15 or part.channel == 9:
            raise ValueError(f"channel must be 0..15 and not 9 (drums), got {part.channel}")
        if not 0 <= part.program <= 127:
            raise ValueError(f"program must be 0..127, got {part.program}")
        events.append((0, 1, bytes([0xC0 | part.channel, part.program])))
        for note in part.notes:
            if not 0 <= note.pitch <= 127 or note.length <= 0 or note.start < 0:
                raise ValueError(f"bad note {note}")
            on = round(note.start * TICKS)
            off = max(on + 1, round((note.start + note.length) * TICKS))
            vel = min(127, max(1, int(note.velocity)))
            events.append((on, 3, bytes([0x90 | part.channel, note.pitch, vel])))
            events.append((off, 2, bytes([0x80 | part.channel, note.pitch, 0])))
    events.sort(key=lambda e: (e[0], e[1]))
    track = bytearray()
    now = 0
    for tick, _, data in events:
        track += _varlen(tick - now) + data
        now = tick
    track += _varlen(0) + b"\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)
