"""Real-audio evaluation sets, built from material installable on the machine (issue 13).

Two sets, each written in the Melon layout (``shared/melon/FORMAT.md``) through the project's own mel
front end (:mod:`mugle_core.melspec`, the dataset's Essentia parameters), outside the repository:

* ``recordings`` (:mod:`training.realaudio.recordings`): the music of Debian's game-data packages. The
  catalog mel is seconds 20 to 50 of each track; the queries are 30-second WAV excerpts from later in
  the track (and their mels). Task: find the own track.
* ``melodies`` (:mod:`training.realaudio.melodies`): folk tunes of the music21 corpus, rendered with
  fluidsynth and a General MIDI soundfont as several performances each. Task: from one performance,
  find another performance of the same tune.

Build with ``mugle real-audio build`` or ``python -m training.realaudio build``; the folders, the truth
file and the ``READY`` marker are described in :mod:`training.realaudio.layout`.
"""
