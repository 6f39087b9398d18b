"""What the interop tests share: where the binaries are and a free loopback port."""

import os
import shutil
import socket
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


def flexkvs_path():
    """FLEXKVS, or .build/debug/flexkvs; relative paths are from the repository root."""
    path = Path(os.environ.get("FLEXKVS", ".build/debug/flexkvs"))
    return path if path.is_absolute() else REPO_ROOT / path


def memcached_path():
    """MEMCACHED (default `memcached`) as found on PATH, or None."""
    return shutil.which(os.environ.get("MEMCACHED", "memcached"))


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]
