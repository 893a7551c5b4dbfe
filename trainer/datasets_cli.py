"""edgescope-dataset: synthetic datasets (no downloads), deterministic by seed."""
import argparse
import sys
from typing import List, Optional

from exporter.arguments import docs_epilog
from exporter.atomicfile import cannot_write
from exporter.yamlfile import one_line
from trainer import flags
from trainer.errors import OneLineParser, UsageError
from trainer.progress import close_bar, terminal_bar
from trainer.synthetic import write_cifar10, write_jpeg_folder


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    epilog = docs_epilog("training.md")
    parser = OneLineParser(prog="edgescope-dataset", description=__doc__, epilog=epilog)
    kinds = parser.add_subparsers(dest="kind", metavar="{cifar10,imagefolder}")
    kinds.required = True
    cifar = kinds.add_parser("cifar10", help="CIFAR-10 python format: OUT/cifar-10-batches-py/", epilog=epilog)
    cifar.add_argument("--out", required=True, help="root folder (the trainer's --data-dir)")
    cifar.add_argument("--train-images", type=flags.TRAIN_IMAGES, default=50000, help="default %(default)s, as CIFAR-10")
    cifar.add_argument("--test-images", type=flags.TEST_IMAGES, default=10000, help="default %(default)s, as CIFAR-10")
    cifar.add_argument("--seed", type=flags.SEED, default=0, help="the same seed writes the same files")
    folder = kinds.add_parser("imagefolder", help="JPEG files in OUT/class_NN/ (for storage and page-cache runs)",
                              epilog=epilog)
    folder.add_argument("--out", required=True, help="root folder (the trainer's --data-dir)")
    folder.add_argument("--images", type=flags.FOLDER_IMAGES, default=10000, help="how many, spread over the classes")
    folder.add_argument("--image-size", type=flags.IMAGE_SIZE, default=224, help="side in pixels")
    folder.add_argument("--classes", type=flags.CLASSES, default=10, help="class folders")
    folder.add_argument("--quality", type=flags.QUALITY, default=90, help="JPEG quality 1-95")
    folder.add_argument("--seed", type=flags.SEED, default=0, help="the same seed writes the same files")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    try:
        args = parse_args(argv)
    except UsageError as error:
        print("edgescope-dataset: {}".format(one_line(str(error))), file=sys.stderr)
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
        message = cannot_write("dataset", error.filename or args.out, error, "choose another --out")
        print("edgescope-dataset: " + one_line(message), file=sys.stderr)
        return 1
    finally:
        close_bar(bar)
    print("edgescope-dataset: " + done)
    return 0

if __name__ == "__main__":
    sys.exit(main())
