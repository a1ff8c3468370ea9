"""Where attempts run (base.py: the interface the engine drives).

- local.py: forked worker processes on this machine, shared memory, pidfds, the C++
  watchdog scan, and reaping.py (no process outlives its step);
- serial.py: init/run/shutdown in the calling process and thread (debugging, pdb).
"""
