"""The config tree's schema: the YAML defaults, veRL's keys and their fates here, and the command-line overrides."""
