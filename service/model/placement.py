"""Where each part of the model runs: `-ngl N | auto | all` resolved against the devices present.

Layers 0 .. n_gpu-1 run on the GPU with their weights and KV cache there; the rest, the
token embedding lookup and (unless every layer is offloaded and -ngl asks for more than the
layer count, or 'all') the output head run on the CPU. Activations cross once each way.
'auto' offloads everything when a real CUDA device is present and nothing otherwise; the
CUDA simulator is never chosen by 'auto' (it is a test tool), only by an explicit count.
Note: llama.cpp offloads the *last* N layers; llamajit offloads the first N, so that the
activations cross after the embedding lookup and the cross-over point is one place.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    requested: str  # the -ngl value: "N", "auto" or "all"
    n_layer: int
    n_gpu: int  # layers 0 .. n_gpu-1 on the device
    output_on_gpu: bool  # output norm and head on the device
    device: str  # the device in words; "" when everything runs on the CPU
    warning: str = ""  # why a request for the GPU was not honoured

    @property
    def on_gpu(self) -> bool:
        return self.n_gpu > 0

    def describe(self) -> dict:
        """What /props reports: where every part runs."""
        where = lambda gpu: "GPU" if gpu else "CPU"  # noqa: E731
        return {
            "n_gpu_layers": self.n_gpu,
            "requested": self.requested,
            "device": self.device or None,
            "token_embd": "CPU",
            "layers": [where(i < self.n_gpu) for i in range(self.n_layer)],
            "kv_cache": {"gpu_layers": self.n_gpu, "cpu_layers": self.n_layer - self.n_gpu},
            "output": where(self.output_on_gpu),
        }


def place(requested: str, n_layer: int, device: str | None = None) -> Placement:
    """Resolve -ngl (and -dev: 'none', or CUDA<i>,... of which the first is used) for a model
    of n_layer layers on this machine. Selects the device for the calling thread."""
    from kernels.cuda import launch

    req = requested or "auto"
    names = device.split(",") if device else []
    if "none" in names:  # offloading turned off, as llama.cpp's -dev none
        return Placement(req, n_layer, 0, False, "")
    if req == "auto":
        if not launch.has_gpu():
            return Placement(req, n_layer, 0, False, "")
        if err := launch.toolchain_error():
            return Placement(req, n_layer, 0, False, "", warning=_no_toolchain(err))
        return Placement(req, n_layer, n_layer, True, _select(names), _one_device(names))
    want = n_layer + 1 if req == "all" else int(req)
    if want <= 0:
        return Placement(req, n_layer, 0, False, "")
    if not launch.usable():
        return Placement(req, n_layer, 0, False, "",
                         warning=f"-ngl {req}: no CUDA device found (numba.cuda sees none); every layer runs on the CPU")
    if err := launch.toolchain_error():
        return Placement(req, n_layer, 0, False, "", warning=_no_toolchain(err))
    return Placement(req, n_layer, min(want, n_layer), want > n_layer, _select(names), _one_device(names))


def _no_toolchain(err: str) -> str:
    return (f"a CUDA device is present but numba-cuda cannot compile for it ({err}); install the CUDA "
            "toolkit wheels (pip install 'llamajit[cuda]'); every layer runs on the CPU")


def _select(names: list[str]) -> str:
    from kernels.cuda import launch

    return launch.select(int(names[0][4:]) if names else 0)


def _one_device(names: list[str]) -> str:
    if len(names) > 1:
        return f"-dev {','.join(names)}: llamajit offloads to one device; using {names[0]}"
    return ""
