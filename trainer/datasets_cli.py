"""edgescope-dataset: synthetic datasets (no downloads), deterministic by seed."""
import argparse
import sys
from typing import List, Optional

from exporter.arguments import int_at_least, number_in
from trainer.errors import OneLineParser, UsageError
from trainer.progress import close_bar, terminal_bar
from trainer.synthetic import write_cifar10, write_jpeg_folder


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = OneLineParser(prog="edgescope-dataset", description=__doc__)
    kinds = parser.add_subparsers(dest="kind", metavar="{cifar10,imagefolder}")
    kinds.required = True
    cifar = kinds.add_parser("cifar10", help="CIFAR-10 python format: OUT/cifar-10-batches-py/")
    cifar.add_argument("--out", required=True, help="root folder (the trainer's --data-dir)")
    cifar.add_argument("--train-images", type=int_at_least(1), default=50000, help="default %(default)s, as CIFAR-10")
    cifar.add_argument("--test-images", type=int_at_least(1), default=10000, help="default %(default)s, as CIFAR-10")
    cifar.add_argument("--seed", type=int, default=0, help="the same seed writes the same files")
    folder = kinds.add_parser("imagefolder", help="JPEG files in OUT/class_NN/ (for storage and page-cache runs)")
    folder.add_argument("--out", required=True, help="root folder (the trainer's --data-dir)")
    folder.add_argument("--images", type=int_at_least(1), default=10000, help="how many, spread over the classes")
    folder.add_argument("--image-size", type=int_at_least(1), default=224, help="side in pixels")
    folder.add_argument("--classes", type=int_at_least(1), default=10, help="class folders")
    folder.add_argument("--quality", type=number_in(1, 95, int), default=90, help="JPEG quality 1-95")
    folder.add_argument("--seed", type=int, default=0, help="the same seed writes the same files")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = parse_args(argv)
    except UsageError as error:
        print("edgescope-dataset: {}".format(error), file=sys.stderr)
        return 2
    total = args.train_images + args.test_images if args.kind == "cifar10" else args.images
    bar = terminal_bar(total, "writing", "image")
    on_images = bar.update if bar is not None else None
    try:
        if args.kind == "cifar10":
            folder = write_cifar10(args.out, args.train_images, args.test_images, args.seed, on_images)
            done = "wrote {} training and {} test images to {}".format(args.train_images, args.test_images, folder)
        else:
            size = write_jpeg_folder(args.out, args.images, args.image_size, args.classes, args.seed, args.quality,
                                     on_images)
            done = "wrote {} JPEG images of {}x{} px ({:.1f} MB) to {}".format(
                args.images, args.image_size, args.image_size, size / 1e6, args.out)
    except OSError as error:
        print("edgescope-dataset: cannot write {}: {}; choose another --out".format(args.out, error.strerror or error),
              file=sys.stderr)
        return 1
    finally:
        close_bar(bar)
    print("edgescope-dataset: " + done)
    return 0

if __name__ == "__main__":
    sys.exit(main())
