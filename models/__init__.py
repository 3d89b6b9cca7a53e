"""Networks (Hourglass-104, real-time), heads, losses, checkpoints, export and inference precision."""
