"""The size of a chunked temporary on a GPU, shared by the spectral product and TensorGRaD.

On a CPU the chunked computations (the dense mode product's weight temporaries,
TensorGRaD's gradient reads, finite checks and stochastic rounding) keep each
temporary to a few MiB, each with its own budget. On a GPU every chunk costs kernel
launches, a few microseconds of CPU time each, and a step of a small model is bound by
them, while a few chunks of :data:`DEVICE_CHUNK_BYTES` are small next to a GPU's memory
and a training step's activations. Measured on an H200 (docs/benchmarks.md, "GPU
campaign"): an FNO with 128 channels at 256^2 (fp16) went from 0.52x of upstream full's
speed with 8 MiB chunks to 1.14x with 256 MiB ones.
"""

#: bytes of one chunked temporary on an accelerator (any device but the CPU)
DEVICE_CHUNK_BYTES = 256 * 2**20
