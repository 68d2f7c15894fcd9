"""The local target: a folder as the share, a local process as the replica."""
