"""Training as data: job specs, presets, profiles, the trainer event protocol, checkpoint discovery
and external trainer installs (Qt-free)."""
