"""The ranges of edgescope-train's and edgescope-dataset's numeric flags, each with what bounds it: a value
outside is one line naming the flag and why, never a traceback from deep inside torch, numpy or PIL."""
from exporter.arguments import number_in
from trainer.data import IMAGEFOLDER_LIMITS

# numpy's RandomState takes 32 bits; the trainer seeds each epoch's order with seed x 100003 + epoch, in 64
SEED = number_in(0, 2 ** 32 - 1, int, why="numpy's seeds are 32-bit")
# SGD steps in float32: past about 1e4 every step diverges at once, and past 3.4e38 torch cannot even take it
LEARNING_RATE = number_in(0, 1e4, why="past 1e4 every SGD step diverges")
MOMENTUM = number_in(0, 1, why="momentum above 1 grows every step without bound")
POWER_INTERVAL = number_in(0, 3600, above=True, why="a power sample at least once an hour; an epoch's energy "
                                                    "bound is the power times this at each edge")
# a crop of N x N x 3 float32 values: 4096 px is 200 MB per image of a batch; ImageNet models train at 224
IMAGE_SIZE = number_in(1, 4096, int, why="a 4096 px image is 200 MB per batch image as float32")
# one CIFAR batch file is built in memory: 200,000 images are 614 MB (3,072 bytes each); five make the training set
TRAIN_IMAGES = number_in(1, 1000000, int, why="each of 5 batch files is built in memory, 3,072 bytes an image")
TEST_IMAGES = number_in(1, 200000, int, why="the test batch file is built in memory, 3,072 bytes an image")
FOLDER_IMAGES = number_in(1, IMAGEFOLDER_LIMITS.files, int,
                          why="edgescope-train scans at most {:,} files".format(IMAGEFOLDER_LIMITS.files))
CLASSES = number_in(1, 100000, int, why="one folder a class; ImageNet-21k has 21,841")
QUALITY = number_in(1, 95, int, why="PIL's JPEG quality scale; above 95 only grows the file")
