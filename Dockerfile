# One image for the three services (gateway, edge worker, stream processor); the command picks one.
# The services run as the unprivileged user `rehab` (uid 10001); what they write goes to
# /var/lib/rehab (the processor's Faust data: REHAB_STATE_DIR), /var/cache/rehab/numba (the scorer's
# compiled kernels, compiled here at build time) and /home/rehab/.cache/torch (model weights).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    REHAB_STATE_DIR=/var/lib/rehab NUMBA_CACHE_DIR=/var/cache/rehab/numba TORCH_HOME=/home/rehab/.cache/torch
WORKDIR /app
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/rehab rehab \
 && mkdir -p /var/lib/rehab /var/cache/rehab/numba /home/rehab/.cache/torch
COPY pyproject.toml README.md ./
COPY infra ./infra
COPY rehab ./rehab
COPY edge ./edge
COPY gateway ./gateway
COPY stream_processor ./stream_processor
RUN pip install -c infra/constraints.txt . \
 && pip uninstall -y opencv-contrib-python opencv-python \
 && pip install --force-reinstall --no-deps opencv-contrib-python-headless==4.11.0.86 \
 && python -c "import cv2, mediapipe, torch, aiortc, faust" \
 && (cd / && python -c "from rehab.scoring import kernels; kernels.warm_up()") \
 && chown -R rehab:rehab /var/lib/rehab /var/cache/rehab /home/rehab
USER 10001:10001
ENTRYPOINT ["rehab"]
