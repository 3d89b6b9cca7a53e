"""``python -m train ...`` = ``gopose train ...``; the launcher line for torchrun:

    torchrun --nproc_per_node 4 -m train --config resources/configs/coco_hourglass104.yaml
"""
import sys

from app.cli import main

if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(main(args if args[:1] == ["train"] else ["train", *args]))
