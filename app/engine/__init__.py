"""The viewer's engine side, Qt-free: the session that answers requests by driving glow_engine."""
