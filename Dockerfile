# One image for the three services (gateway, edge worker, stream processor); the command picks one.
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY infra ./infra
COPY rehab ./rehab
COPY edge ./edge
COPY gateway ./gateway
COPY stream_processor ./stream_processor
RUN pip install -c infra/constraints.txt . \
 && pip uninstall -y opencv-contrib-python opencv-python \
 && pip install --force-reinstall --no-deps opencv-contrib-python-headless==4.11.0.86 \
 && python -c "import cv2, mediapipe, torch, aiortc, faust"
ENTRYPOINT ["rehab"]
