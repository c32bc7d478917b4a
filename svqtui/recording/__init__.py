"""The flight recorder and replay (docs/design.md#data-flow).

- ``format``: the recording file (a versioned header, then length-prefixed,
  checksummed, zlib-compressed records: key frames and deltas of the lossless
  wire form of each snapshot, with the log events of that interval);
- ``delta``: the JSON delta between two wire-form snapshots;
- ``errors``: the recorder's and the reader's error classes;
- ``settings``: the ``record:`` section of config.yaml;
- ``recorder``: the output that subscribes to the monitor, keeps the rolling
  window and writes incident files (and continuous recordings) off the
  monitor's thread;
- ``files``: naming, atomic writing, rotation and retention of files;
- ``reader``: opening, indexing and seeking a recording;
- ``replay``: a replay monitor and target, so the console runs on a recording;
- ``app``: the replay console (the console's keys plus the timeline keys);
- ``batch``: ``--replay PATH --once/--log`` for scripts.
"""
