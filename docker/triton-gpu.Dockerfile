# GPU deployment: the NGC Triton image (ONNX Runtime backend, CUDA) serving model_repository/.
# The python-backend models (face_detector, face_cropper, face_scorer, video_aggregator) import
# the fakescope package, installed here without its client/training dependencies.
FROM nvcr.io/nvidia/tritonserver:24.10-py3
WORKDIR /opt/fakescope
COPY pyproject.toml README.md constraints.txt ./
COPY fakescope ./fakescope
COPY client ./client
COPY export ./export
COPY training ./training
COPY benchmarks ./benchmarks
COPY web ./web
RUN pip install --no-cache-dir -c constraints.txt "numpy<2" opencv-python-headless onnxruntime \
 && pip install --no-cache-dir --no-deps .
