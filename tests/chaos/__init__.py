"""Real faults: processes killed, servers stopped, storage that fails, fuzzed input."""
