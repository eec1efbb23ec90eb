"""Tools for multi-turn rollouts: veRL's BaseTool shape, tool_config_path loading, Qwen's tool-call format, built-ins."""
