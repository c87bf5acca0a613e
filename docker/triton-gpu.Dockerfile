# GPU deployment: the NGC Triton image (ONNX Runtime backend, CUDA) serving model_repository/.
# The python-backend models (face_detector, face_scorer, video_aggregator) import the fakescope
# package, installed here without its client/training dependencies. boto3: with the repository
# on S3, face_detector reads its sibling models' files from the URL in
# FAKESCOPE_MODEL_REPOSITORY (set it to the --model-repository value; see README).
FROM nvcr.io/nvidia/tritonserver:24.10-py3
WORKDIR /opt/fakescope
COPY pyproject.toml README.md constraints.txt ./
COPY fakescope ./fakescope
COPY client ./client
COPY export ./export
COPY training ./training
COPY benchmarks ./benchmarks
COPY web ./web
RUN pip install --no-cache-dir -c constraints.txt "numpy<2" opencv-python-headless onnxruntime boto3 \
 && pip install --no-cache-dir --no-deps .
