"""Unpacks what scripts/portable_synth.sh packed, with the Python standard library only (the GPU
machine may have no xz or tar with xz support).

    python3 scripts/portable_synth.py unpack build/portable /tmp/synth
"""

import lzma
import shutil
import sys
import tarfile
from pathlib import Path


def unpack(packed: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    with lzma.open(packed / "node.xz") as src, open(dest / "node", "wb") as dst:
        shutil.copyfileobj(src, dst)
    (dest / "node").chmod(0o755)
    with tarfile.open(packed / "node_modules.tar.xz") as tar:
        tar.extractall(dest, filter="tar")
    shutil.copy(packed / "synth.cjs", dest / "synth.cjs")


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "unpack":
        sys.exit(__doc__)
    unpack(Path(sys.argv[2]), Path(sys.argv[3]))
