"""`python -m bnexp.nn.norm.kernels`: build the compiled operators for this machine (if not
cached yet) and print the library's path (`make install` runs it)."""
from bnexp.nn.norm.kernels import KernelUnavailable, library

try:
    print(library())
except KernelUnavailable as err:
    raise SystemExit(f"error: {err}") from None
