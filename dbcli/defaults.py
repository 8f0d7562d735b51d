"""Every default of the inference options, stated once.

``dbnet detect`` / ``visualize`` / ``eval``, the ``Detector`` API, the trainer's validation, the
exports and the help texts read these names; none of the values is written anywhere else. Plain
constants, no imports: ``dbnet --help`` stays light.
"""

SHORT_SIDE = 736  # the network input's shorter side in pixels (the paper's ICDAR 2015 fast setting)
MAX_SIDE = 4096  # the network input's longer side is capped here when no --max-side is given
MAX_MEGAPIXELS = 200.0  # images of more million pixels are refused before decoding (bombs)
DPI = 144.0  # PDF pages are rendered at this many pixels per inch
SORT = "lines"  # the order of each image's detections (dbcli.postprocess.reading_order.SORT_MODES)
DEVICE = "auto"
BACKEND = "auto"  # onnxruntime on a CPU (a .pt exported once and cached), torch where only it can run
PRECISION = "fp32"
CUDA_BATCH_SIZE = 8  # images per forward pass on CUDA when no --batch-size is given (1 on a CPU)

# Post-processing, when neither the options nor the weights file give a value (PostConfig's defaults)
THRESH = 0.3  # binarisation of P (the authors' code; the paper's text says 0.2)
BOX_THRESH = 0.6  # a region's minimum mean probability
UNCLIP_RATIO = 1.5  # r' of D' = A' r' / L'
MAX_CANDIDATES = 1000  # candidate regions post-processed per image

# dbnet eval --sweep: the grids of thresh and box_thresh (start:stop:step, stop included, or a list)
SWEEP_THRESH = "0.2,0.25,0.3,0.35"
SWEEP_BOX_THRESH = "0.3:0.8:0.05"
