#!/usr/bin/env bash
# Install actionnet on a Jetson (JetPack 5.x or 6.x) on top of what JetPack already provides:
# TensorRT and its Python bindings, CUDA, and OpenCV built with GStreamer. pip never installs
# opencv over JetPack's (pip's wheels have no GStreamer, so CSI cameras would stop working).
#
#   sudo apt-get update && bash jetson/install.sh            # from a checkout of actionnet
#   bash jetson/install.sh --venv ~/actionnet-venv           # a venv that sees the system packages
#
# Written for JetPack 5 (L4T r35, Ubuntu 20.04, Python 3.8, TensorRT 8.5/8.6) and JetPack 6
# (L4T r36, Ubuntu 22.04, Python 3.10, TensorRT 8.6 on 6.0, 10.3 on 6.1/6.2). Not run on a device by its authors:
# see jetson/README.md.
set -euo pipefail

VENV=""
while [ $# -gt 0 ]; do
  case "$1" in
    --venv) VENV="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."

if [ ! -f /etc/nv_tegra_release ]; then
  echo "install.sh: /etc/nv_tegra_release not found: this is not a Jetson (L4T) system" >&2
  exit 1
fi
L4T_MAJOR=$(sed -n 's/^# R\([0-9]*\).*/\1/p' /etc/nv_tegra_release)
case "$L4T_MAJOR" in
  35) JETPACK=5 ;;
  36) JETPACK=6 ;;
  *) echo "install.sh: L4T R${L4T_MAJOR} is neither JetPack 5 (R35) nor 6 (R36)" >&2; exit 1 ;;
esac
echo "install.sh: JetPack ${JETPACK} (L4T R${L4T_MAJOR})"

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
# JetPack's TensorRT Python bindings, OpenCV with GStreamer, and what pycuda builds against.
$SUDO apt-get install -y --no-install-recommends \
  python3-pip python3-venv python3-dev python3-libnvinfer python3-opencv \
  gstreamer1.0-tools gstreamer1.0-plugins-good gstreamer1.0-plugins-bad v4l-utils build-essential

PY=python3
if [ -n "$VENV" ]; then
  # --system-site-packages: the venv sees tensorrt and cv2 from JetPack.
  python3 -m venv --system-site-packages "$VENV"
  PY="$VENV/bin/python"
fi
PIP="$PY -m pip"
$PIP install --upgrade pip

# Everything except opencv (JetPack's, with GStreamer) and onnxruntime (see below).
EXTRA=""
if [ "$JETPACK" = 5 ]; then
  # JetPack 5's Python is 3.8; actionnet's code runs on it (no 3.9-only syntax), its metadata
  # says >= 3.9 because 3.8 is end-of-life elsewhere.
  EXTRA="--ignore-requires-python"
fi
$PIP install $EXTRA --no-deps -e .
$PIP install "numpy<2" "av>=12" onnxruntime "pyyaml>=5.3"
# Device memory for the TensorRT backend; cuda-python works too (either is enough).
export PATH="/usr/local/cuda/bin:$PATH"
$PIP install pycuda || echo "install.sh: pycuda did not build; install cuda-python instead: $PIP install cuda-python" >&2

$PY - <<'PYEOF'
import cv2, tensorrt
gst = "GStreamer:                   YES" in cv2.getBuildInformation() or any(
    l.strip().startswith("GStreamer:") and "YES" in l for l in cv2.getBuildInformation().splitlines())
print(f"install.sh: OpenCV {cv2.__version__} (GStreamer: {'yes' if gst else 'NO'}), TensorRT {tensorrt.__version__}")
if not gst:
    raise SystemExit("install.sh: this OpenCV has no GStreamer; a pip opencv is shadowing JetPack's: "
                     "pip uninstall opencv-python opencv-python-headless")
import actionnet.engines
from actionnet.engines.trt_build import build_recipe
print("install.sh: actionnet engines:", ", ".join(actionnet.engines.ENGINES))
for p, g in (("fp16", "fp32"), ("int8", "qdq")):
    print(f"install.sh: {p}: {build_recipe(tensorrt.__version__, p, g).how}")
PYEOF
echo "install.sh: done. Build engines on this device (they are not portable), e.g.:"
echo "  actionnet-export engine model.onnx --precision fp16 --output model.engine"
